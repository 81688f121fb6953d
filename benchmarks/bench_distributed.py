"""Benchmark: W1 relevance and an XGBoost fit on a local Dask cluster against one process.

A synthetic Ψ (``--rows`` x 9,088 float32, Gaussian with per-column scales and a few planted
columns, 45 % positives) is written to a zarr store in row blocks (never whole in memory), then

- W1: :func:`img2tab.distributed.wasserstein_relevance_dask` on a ``LocalCluster`` of
  ``--workers`` processes x 1 thread, against :func:`img2tab.tabular.wasserstein_relevance` on
  the matrix loaded into this process (``--single-w1``: it needs the matrix in RAM);
- XGBoost: ``ConceptClassifier.fit(..., client=client)`` (``--rounds`` trees of depth
  ``--depth``, hist, early stopping after ``--early-stopping`` rounds on the classifier's
  stratified 10 % validation split), by default with the bounded-memory streaming engine
  (``--engine xgboost.dask`` for the old one), against the same fit in this process
  (``--single-fit``: it needs the matrix and XGBoost's sketch in RAM).

Peak memory per worker is the largest resident set size (RSS) of each worker process,
sampled every 0.2 s; CPU seconds are the workers' user + system time for each step (the
machine is shared, so wall times are inflated by other jobs). Results go to ``--json``.

Usage::

    python benchmarks/bench_distributed.py --rows 20000 --single --json benchmarks/results/dask_20k.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench_distributed")


def write_store(path: Path, n: int, d: int, chunk_rows: int, seed: int = 0,
                labels_only: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Write the synthetic Ψ to ``path`` (zarr) block by block; return the labels and planted columns."""
    import zarr

    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(np.int64)
    scales = rng.uniform(0.05, 3.0, size=d).astype(np.float32)
    planted = rng.choice(d, size=8, replace=False)
    if labels_only:
        return y, planted
    if path.exists():
        shutil.rmtree(path)
    g = zarr.open_group(os.fspath(path), mode="w", zarr_format=2)
    arr = g.create_array("psi", shape=(n, d), chunks=(chunk_rows, 256), dtype="float32", compressors=None)
    for r0 in range(0, n, chunk_rows):
        r1 = min(n, r0 + chunk_rows)
        block = rng.normal(size=(r1 - r0, d)).astype(np.float32) * scales
        block[:, planted] += y[r0:r1, None]
        arr[r0:r1] = block
    g.create_array("labels", data=y)
    g.attrs.update({"format": "img2tab.psi.zarr", "layout": None, "label_names": None, "meta": {}})
    (path / "complete").write_text("")
    return y, planted


def _local_dir_bytes(dask_worker) -> int:
    """Bytes of the files under a worker's local directory (XGBoost's page files live there)."""
    total = 0
    for root, _, files in os.walk(dask_worker.local_directory):
        for f in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.path.getsize(os.path.join(root, f))
    return total


class RssSampler:
    """Largest RSS of every worker process of ``client``, sampled in a thread, and the largest
    size of each worker's local directory (sampled every 10th time)."""

    def __init__(self, client, every: float = 0.2) -> None:
        self.client, self.every, self.peak, self.disk = client, every, {}, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        tick = 0
        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
                if tick % 10 == 0:
                    for addr, size in self.client.run(_local_dir_bytes).items():
                        self.disk[addr] = max(self.disk.get(addr, 0), size)
            except Exception:  # a worker restarting
                pass
            tick += 1
            self._stop.wait(self.every)

    def disk_gib(self) -> list[float]:
        return [round(v / 2**30, 3) for v in self.disk.values()]

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()

    def gib(self) -> list[float]:
        return [round(v / 2**30, 3) for v in self.peak.values()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--d", type=int, default=9088)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--memory-limit", default="2GB", help="per-worker limit of the local cluster")
    p.add_argument("--rounds", type=int, default=10, help="XGBoost trees")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--early-stopping", type=int, default=3, help="early_stopping_rounds (0: none)")
    p.add_argument("--engine", choices=("streaming", "xgboost.dask"), default="streaming")
    p.add_argument("--fit-rows", type=int, default=2048, help="rows per partition (xgboost.dask engine)")
    p.add_argument("--external-memory", choices=("auto", "true", "false"), default="auto",
                   help="streaming engine: page the workers' quantile matrices to disk")
    p.add_argument("--max-cached-hist-node", type=int, default=8,
                   help="XGBoost max_cached_hist_node (bounds the histogram cache)")
    p.add_argument("--single", action="store_true", help="--single-w1 and --single-fit")
    p.add_argument("--single-w1", action="store_true", help="also time W1 in this process")
    p.add_argument("--single-fit", action="store_true", help="also time the XGBoost fit in this process")
    p.add_argument("--skip-w1", action="store_true", help="skip the Dask W1 step")
    p.add_argument("--dir", type=Path, default=Path("runs/bench_distributed"))
    p.add_argument("--keep", action="store_true", help="keep the zarr store")
    p.add_argument("--reuse", action="store_true", help="reuse a complete store from an earlier --keep run")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import dask
    import psutil
    from distributed import Client, LocalCluster

    # a loaded machine starts worker processes slowly
    dask.config.set({"distributed.comm.timeouts.connect": "300s", "distributed.comm.timeouts.tcp": "600s"})

    from img2tab.distributed import fit_classifier_dask, open_zarr, wasserstein_relevance_dask
    from img2tab.distributed._xgboost import _use_external_memory
    from img2tab.tabular import ConceptClassifier, wasserstein_relevance

    single_w1, single_fit = args.single or args.single_w1, args.single or args.single_fit
    args.dir.mkdir(parents=True, exist_ok=True)
    store = args.dir / f"psi_{args.rows}.zarr"
    res: dict = {"rows": args.rows, "cols": args.d, "workers": args.workers, "rounds": args.rounds,
                 "depth": args.depth, "early_stopping_rounds": args.early_stopping or None,
                 "engine": args.engine, "memory_limit": args.memory_limit,
                 "external_memory": args.external_memory,
                 "gb_on_disk": args.rows * args.d * 4 / 1e9, "load_before": os.getloadavg(),
                 "command": "python benchmarks/bench_distributed.py " + " ".join(argv if argv is not None
                                                                               else sys.argv[1:])}
    t0 = time.perf_counter()
    if args.reuse and (store / "complete").exists():  # the same seed writes the same store
        y, planted = write_store(store, args.rows, args.d, chunk_rows=min(args.rows, 8192), labels_only=True)
    else:
        y, planted = write_store(store, args.rows, args.d, chunk_rows=min(args.rows, 8192))
        res["write_s"] = time.perf_counter() - t0
        logger.info("wrote %s in %.1f s", store, res["write_s"])
    dz = open_zarr(store)
    xgb_params = {"n_estimators": args.rounds, "max_depth": args.depth, "n_jobs": 1,
                  "max_cached_hist_node": args.max_cached_hist_node}
    esr = args.early_stopping or None

    def worker_cpu(client) -> list[float]:
        return [round(v, 1) for v in client.run(lambda: sum(psutil.Process().cpu_times()[:2])).values()]

    def cluster() -> tuple:
        """A fresh local cluster per step (restarting workers times out on a loaded machine)."""
        c = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                         memory_limit=args.memory_limit, dashboard_address=None, death_timeout=600)
        return c, Client(c, timeout=600)

    def step_fit() -> None:
        cl, client = cluster()
        try:
            cpu0 = worker_cpu(client)
            with RssSampler(client) as s:
                t0 = time.perf_counter()
                clf = ConceptClassifier(params=xgb_params, random_state=0, device="cpu",
                                        early_stopping_rounds=esr)
                if args.engine == "streaming":
                    ext = {"auto": "auto", "true": True, "false": False}[args.external_memory]
                    res["paged"] = _use_external_memory(ext, client, args.rows, args.d)
                    fit_classifier_dask(clf, dz.psi, y, client=client, external_memory=ext)
                else:
                    x_rows = dz.psi.rechunk({0: min(args.rows, args.fit_rows), 1: -1})
                    fit_classifier_dask(clf, x_rows, y, client=client, streaming=False)
                res["fit_dask_s"] = time.perf_counter() - t0
            res["fit_dask_peak_rss_gib"] = s.gib()
            res["fit_dask_peak_local_dir_gib"] = s.disk_gib()
            res["fit_dask_worker_cpu_s"] = [b - a for a, b in zip(cpu0, worker_cpu(client), strict=True)]
        finally:
            client.close()
            cl.close()
        res["fit_dask_best_iteration"] = clf.best_iteration_
        res["fit_dask_top_features"] = np.argsort(-clf.feature_importances_)[:4].tolist()
        logger.info("fit dask %.1f s, peak RSS %s GiB", res["fit_dask_s"], res["fit_dask_peak_rss_gib"])
        fitted["clf"] = clf

    def step_w1() -> None:
        cl, client = cluster()
        try:
            cpu0 = worker_cpu(client)
            with RssSampler(client) as s:
                t0 = time.perf_counter()
                w = wasserstein_relevance_dask(dz.psi, y, client=client)
                res["w1_dask_s"] = time.perf_counter() - t0
            res["w1_dask_peak_rss_gib"] = s.gib()
            res["w1_dask_worker_cpu_s"] = [b - a for a, b in zip(cpu0, worker_cpu(client), strict=True)]
        finally:
            client.close()
            cl.close()
        res["top_w1_planted"] = np.argsort(-w)[:8].tolist()
        logger.info("W1 dask %.1f s, peak RSS %s GiB", res["w1_dask_s"], res["w1_dask_peak_rss_gib"])
        fitted["w1"] = w

    fitted: dict = {}
    step_fit()  # the step with the memory target first
    if args.json:  # partial results survive a later failure
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if not args.skip_w1:
        step_w1()
    clf, w_dask = fitted["clf"], fitted.get("w1")
    res["planted"] = sorted(planted.tolist())
    if single_w1 or single_fit:
        t0 = time.perf_counter()
        x = np.asarray(dz.psi.compute(scheduler="sync"))
        res["single_load_s"] = time.perf_counter() - t0
    if single_w1:
        for nj in (1, None):
            t0, c0 = time.perf_counter(), time.process_time()
            w_one = wasserstein_relevance(x, y, n_jobs=nj)
            key = "1thread" if nj == 1 else "allthreads"
            res[f"w1_single_s_{key}"] = time.perf_counter() - t0
            res[f"w1_single_cpu_s_{key}"] = time.process_time() - c0
        if w_dask is not None:
            res["w1_max_abs_diff"] = float(np.max(np.abs(w_one - w_dask)))
    if single_fit:
        t0, c0 = time.perf_counter(), time.process_time()
        one = ConceptClassifier(params=xgb_params, random_state=0, device="cpu",
                                early_stopping_rounds=esr).fit(x, y)
        res["fit_single_s"] = time.perf_counter() - t0
        res["fit_single_cpu_s"] = time.process_time() - c0
        res["fit_single_best_iteration"] = one.best_iteration_
        res["fit_single_top_features"] = np.argsort(-one.feature_importances_)[:4].tolist()
        rows = np.arange(0, args.rows, max(1, args.rows // 2000))
        res["fit_max_abs_proba_diff_single_vs_dask"] = float(
            np.max(np.abs(one.predict_proba(x[rows]) - clf.predict_proba(x[rows]))))
    res["single_process_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    res["load_after"] = os.getloadavg()
    logger.info("%s", json.dumps(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2) + "\n")
    if not args.keep:
        shutil.rmtree(store)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
