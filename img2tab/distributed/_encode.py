"""Distributed encoding: one Dask task per image shard, resumable, equal to the local run."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from img2tab.encode import encode_shard, finish_encoding, plan_encoding
from img2tab.errors import Img2TabInputError
from img2tab.tabular import PsiDataset

from ._client import require_dask

__all__ = ["encode_distributed"]

logger = logging.getLogger(__name__)


def _shard_task(chunk: list, inverter: Any, target: str, batch_size: int, crop: str | None,
                skip_errors: bool, precision: str = "float32") -> str:
    """Runs on a worker: encode one shard on the CPU and write it (atomically)."""
    inv = inverter.eval()
    return os.fspath(encode_shard(chunk, inv, target, batch_size=batch_size, crop=crop,
                                  skip_errors=skip_errors, precision=precision))


def encode_distributed(
    sources: Any,
    inverter: Any,
    out: str | os.PathLike,
    client: Any,
    *,
    batch_size: int = 32,
    shard_size: int = 1024,
    labels: Callable[[list[str]], np.ndarray] | None = None,
    protected: Callable[[list[str]], np.ndarray] | None = None,
    label_names: Iterable[str] | None = None,
    skip_errors: bool = False,
    crop: str | None = None,
    retries: int = 2,
    progress: bool = True,
    meta: dict | None = None,
    precision: str = "float32",
) -> PsiDataset:
    """:func:`img2tab.encode.encode_to_dataset` with one task per shard on a Dask cluster.

    The run is planned here (same shards, same manifest as the local encode); each unfinished
    shard becomes a task that encodes its images on a worker and writes ``shard-XXXXX.psi``
    atomically. A worker that dies loses only its running shard: Dask reruns the task elsewhere
    (``retries`` more times for tasks that raise), and a shard written twice is replaced, not
    appended. If shards still fail, the finished ones stay on disk and rerunning the same call
    (or the local encode) resumes with the rest. The finished dataset is row-for-row the one
    the local encode writes.

    Args:
        sources: images, as for :func:`~img2tab.encode.encode_to_dataset`. File paths must be
            readable by every worker (a shared file system).
        inverter: the inverter, sent once to every worker (``client.scatter(broadcast=True)``);
            it runs on the device it is on (the CPU unless moved).
        out: output dataset folder; the shards go to ``<out>.shards/`` (shared by the workers).
        client: a :class:`distributed.Client`.
        retries: extra rounds for shards that failed or were lost with a worker.
        batch_size, shard_size, labels, protected, label_names, skip_errors, crop, progress,
            meta, precision: as for :func:`~img2tab.encode.encode_to_dataset`.

    Returns:
        The finished dataset (memory-mapped).

    Raises:
        Img2TabInputError: shards that failed after their retries (rerun to resume).
    """
    require_dask()
    from distributed import as_completed
    from tqdm.auto import tqdm

    run = plan_encoding(sources, inverter, out, batch_size=batch_size, shard_size=shard_size, crop=crop,
                        precision=precision)
    n_done = len(run.finished())
    logger.info("encoding %d of %d shards on the cluster", run.n_shards - n_done, run.n_shards)
    failed: list[tuple[int, str]] = []
    bar = tqdm(total=run.n_shards, initial=n_done, desc="encode shards", unit="shard", disable=not progress)
    with bar:
        # Each round submits the shards not yet on disk; the disk is the truth, so a shard lost
        # with a killed worker (its task cancelled or errored) is simply submitted again.
        for _ in range(int(retries) + 1):
            done = set(run.finished())
            todo = [s for s in range(run.n_shards) if s not in done]
            if not todo:
                break
            inv_ref = client.scatter(inverter, broadcast=True, hash=False)
            futures = {
                client.submit(_shard_task, run.shard_items(s), inv_ref, os.fspath(run.shard_path(s)),
                              batch_size, crop, skip_errors, precision, pure=False): s
                for s in todo
            }
            failed = []
            for fut in as_completed(futures):
                if fut.status == "finished":
                    bar.update(1)
                else:
                    exc = fut.exception() if fut.status == "error" else fut.status
                    failed.append((futures[fut], f"{type(exc).__name__}: {exc}"))
            del inv_ref
    missing = sorted(set(range(run.n_shards)) - set(run.finished()))
    if missing:
        why = dict(failed).get(missing[0], "not run")
        raise Img2TabInputError(
            f"{len(missing)} shard(s) failed (shard {missing[0]}: {why}); the finished ones are kept in "
            f"{run.shard_dir}, rerun to resume"
        )
    return finish_encoding(run, inverter.layout, labels=labels, protected=protected, label_names=label_names,
                           meta=meta)
