"""Encoding many images to a Ψ dataset, in shards, resumable after interruption.

Images are listed once in a fixed order and cut into shards of ``shard_size`` positions. Each shard
is encoded in batches and written atomically as its own :class:`~img2tab.tabular.PsiDataset` under
``<out>.shards/``; a manifest records the ordered ids and the model. A rerun skips finished shards
(an interrupted shard is redone from its start), so rows are never lost or duplicated. When every
shard exists they are concatenated into ``<out>`` (atomically) and the shard folder is removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ._atomic import atomic_write_text
from ._device import resolve_device
from .errors import Img2TabInputError
from .io import LoadReport, _expand, iter_image_batches
from .networks.inverter import Inverter
from .tabular import PsiDataset

__all__ = ["EncodingRun", "encode_shard", "encode_to_dataset", "finish_encoding", "plan_encoding"]

logger = logging.getLogger(__name__)

_MANIFEST = "manifest.json"


def _ids_digest(ids: list[str]) -> str:
    h = hashlib.sha256()
    for i in ids:
        h.update(i.encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_json(path: Path, obj: dict) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2))


def encode_to_dataset(
    sources: Any,
    inverter: Inverter,
    out: str | os.PathLike,
    *,
    batch_size: int = 32,
    shard_size: int = 1024,
    labels: Callable[[list[str]], np.ndarray] | None = None,
    protected: Callable[[list[str]], np.ndarray] | None = None,
    label_names: Iterable[str] | None = None,
    skip_errors: bool = False,
    crop: str | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
    meta: dict | None = None,
    precision: str = "float32",
) -> PsiDataset:
    """Encode images to a Ψ dataset at ``out`` (resuming a previous interrupted run).

    Args:
        sources: a folder, file paths, or anything :func:`img2tab.io.iter_image_batches` takes.
        inverter: the e4e inverter.
        out: output dataset directory (convention ``name.psi``).
        batch_size: images per encoder call.
        shard_size: images per shard (the unit of resumption).
        labels: maps a list of image ids to their labels ``(n,)`` (e.g. a CSV lookup).
        protected: same for a protected attribute.
        label_names: names of the classes.
        skip_errors: skip unreadable images (recorded in the dataset's ``meta["skipped"]``).
        crop: ``"center"`` to centre-crop before resizing.
        device: torch device for the inverter.
        progress: show a progress bar.
        meta: extra metadata stored with the dataset.
        precision: ``"float32"`` (exact) or ``"bfloat16"`` (the encoder under bfloat16
            autocast: faster on some CPUs and batch sizes, Ψ off by up to ~2e-2; see
            :meth:`Inverter.encode_psi`). Recorded in the manifest (a resumed run must use the
            same) and in the dataset's ``meta["encoder"]``.

    Returns:
        The finished dataset (memory-mapped).
    """
    device = resolve_device(device)
    run = plan_encoding(sources, inverter, out, batch_size=batch_size, shard_size=shard_size, crop=crop,
                        precision=precision)
    inv = inverter.to(device).eval()
    done = run.finished()
    if done:
        logger.info("resuming: %d of %d shards already encoded", len(done), run.n_shards)
    bar = tqdm(total=len(run.ids), desc="encode", unit="img", disable=not progress)
    bar.update(sum(len(run.shard_items(s)) for s in done))
    for s in range(run.n_shards):
        if s not in done:
            encode_shard(run.shard_items(s), inv, run.shard_path(s), batch_size=batch_size, crop=crop,
                         skip_errors=skip_errors, on_images=bar.update, precision=precision)
    bar.close()
    return finish_encoding(run, inv.layout, labels=labels, protected=protected, label_names=label_names,
                           meta=meta)


@dataclass(frozen=True)
class EncodingRun:
    """A planned sharded encoding: the ordered images, their shards and where they go.

    Attributes:
        out: the final dataset folder.
        items: ``(id, source)`` pairs in dataset order.
        shard_size: images per shard.
        model: description of the encoder (stored in the manifest and the dataset meta).
    """

    out: Path
    items: list
    shard_size: int
    model: dict

    @property
    def ids(self) -> list[str]:
        return [ident for ident, _ in self.items]

    @property
    def shard_dir(self) -> Path:
        return self.out.with_name(self.out.name + ".shards")

    @property
    def n_shards(self) -> int:
        return (len(self.items) + self.shard_size - 1) // self.shard_size

    def shard_path(self, s: int) -> Path:
        return self.shard_dir / f"shard-{s:05d}.psi"

    def shard_items(self, s: int) -> list:
        return self.items[s * self.shard_size:(s + 1) * self.shard_size]

    def finished(self) -> list[int]:
        """Shards already written completely (their ``meta.json`` exists)."""
        return [s for s in range(self.n_shards) if (self.shard_path(s) / "meta.json").exists()]


def plan_encoding(sources: Any, inverter: Inverter, out: str | os.PathLike, *, batch_size: int = 32,
                  shard_size: int = 1024, crop: str | None = None,
                  precision: str = "float32") -> EncodingRun:
    """List the images, cut them into shards and write (or check) the run's manifest.

    A manifest left by an unfinished run must describe the same images, shard size and model
    (its encoding precision included), so that a resumed run never mixes rows of two runs.
    """
    out = Path(out)
    if batch_size < 1 or shard_size < 1:
        raise Img2TabInputError("batch_size and shard_size must be positive")
    if precision not in ("float32", "bfloat16"):
        raise Img2TabInputError(f"precision must be 'float32' or 'bfloat16', got {precision!r}")
    items = _expand(sources)
    ids = [ident for ident, _ in items]
    if len(set(ids)) != len(ids):
        raise Img2TabInputError("the same image is listed twice; ids must be unique")
    model_desc = {
        "source_path": getattr(inverter, "source_path", None),
        "input_size": inverter.input_size,
        "n_features": inverter.layout.total,
        "precision": precision,
    }
    run = EncodingRun(out, items, int(shard_size), model_desc)
    shard_dir = run.shard_dir
    manifest = {"n_images": len(ids), "ids_sha256": _ids_digest(ids), "shard_size": shard_size,
                "n_shards": run.n_shards, "model": model_desc, "crop": crop}
    shard_dir.mkdir(parents=True, exist_ok=True)
    mpath = shard_dir / _MANIFEST
    if mpath.exists():
        try:
            old = json.loads(mpath.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise Img2TabInputError(f"{mpath} is not valid JSON ({exc.__class__.__name__}); remove "
                                    f"{shard_dir} to start the encoding afresh") from None
        if not isinstance(old, dict):
            raise Img2TabInputError(f"{mpath} is not an img2tab encoding manifest; remove {shard_dir}")
        if isinstance(old.get("model"), dict):  # manifests from before precision was recorded
            old["model"].setdefault("precision", "float32")
        if {k: old.get(k) for k in manifest} != manifest:
            raise Img2TabInputError(
                f"{shard_dir} holds an unfinished run with different images, shard size or model; "
                "remove that folder or choose another --out"
            )
    else:
        _write_json(mpath, manifest)
    return run


def encode_shard(chunk: list, inverter: Inverter, target: str | os.PathLike, *, batch_size: int = 32,
                 crop: str | None = None, skip_errors: bool = False,
                 on_images: Callable[[int], Any] | None = None, precision: str = "float32") -> Path:
    """Encode one shard's ``(id, source)`` items and save them atomically as a Ψ dataset.

    ``inverter`` must already be on its device and in eval mode. ``on_images(n)`` is called as
    images are read (progress). Rerunning a shard rewrites the same rows (atomically), so a
    shard encoded twice is never duplicated. ``precision``: see :func:`encode_to_dataset`.
    """
    report = LoadReport()
    got_ids: list[str] = []
    tick = on_images or (lambda n: None)

    def batches():
        for bids, x in iter_image_batches([it for _, it in chunk], inverter.input_size, batch_size,
                                          crop=crop, skip_errors=skip_errors, report=report):
            got_ids.extend(bids)
            tick(len(bids))
            yield x

    psi, _ = inverter.encode_psi(batches(), batch_size=batch_size, with_w=False, precision=precision)
    tick(len(report.skipped))
    # iter_image_batches names in-memory items by position within the chunk: map back
    by_pos = {f"input[{j}]": chunk[j][0] for j in range(len(chunk))}
    got_ids = [by_pos.get(i, i) for i in got_ids]
    return PsiDataset(psi, ids=np.asarray(got_ids, dtype=str), layout=inverter.layout,
                      meta={"skipped": [list(t) for t in report.skipped]}).save(target)


def finish_encoding(run: EncodingRun, layout: Any, *, labels: Callable[[list[str]], np.ndarray] | None = None,
                    protected: Callable[[list[str]], np.ndarray] | None = None,
                    label_names: Iterable[str] | None = None, meta: dict | None = None) -> PsiDataset:
    """Concatenate the finished shards, in order, into the dataset at ``run.out``; remove the shards."""
    missing = [s for s in range(run.n_shards) if not (run.shard_path(s) / "meta.json").exists()]
    if missing:
        raise Img2TabInputError(f"{len(missing)} shard(s) of {run.out} are not encoded yet (first: "
                                f"{missing[0]}); rerun the encoding to resume")
    parts = [PsiDataset.load(run.shard_path(s)) for s in range(run.n_shards)]
    all_ids = np.concatenate([p.ids for p in parts if len(p)]) if parts else np.zeros(0, str)
    skipped = [t for p in parts for t in p.meta.get("skipped", [])]
    y = labels(list(all_ids)) if labels is not None else None
    prot = protected(list(all_ids)) if protected is not None else None
    info = {"encoder": run.model, "skipped": skipped, **(meta or {})}
    # Stream the shards into a memory-mapped file so the whole Ψ is never in this process's memory.
    n_rows = sum(len(p) for p in parts)
    with tempfile.TemporaryDirectory(dir=run.shard_dir, prefix=".concat-") as tmp:
        n_cols = layout.total if layout is not None else parts[0].n_features
        psi = np.lib.format.open_memmap(Path(tmp) / "psi.npy", mode="w+", dtype=np.float32,
                                        shape=(n_rows, n_cols))
        r0 = 0
        for p in parts:
            psi[r0:r0 + len(p)] = p.psi
            r0 += len(p)
        psi.flush()
        ds = PsiDataset(psi, y, prot, all_ids, layout=layout,
                        label_names=tuple(label_names) if label_names else None, meta=info)
        ds.save(run.out)
        del ds, psi
    shutil.rmtree(run.shard_dir)
    if skipped:
        logger.warning("skipped %d unreadable image(s); see meta['skipped']", len(skipped))
    return PsiDataset.load(run.out)
