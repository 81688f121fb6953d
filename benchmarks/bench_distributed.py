"""Benchmark: W1 relevance and an XGBoost fit on a local Dask cluster against one process.

A synthetic Ψ (``--rows`` x 9,088 float32, Gaussian with per-column scales and a few planted
columns, 45 % positives) is written to a zarr store in row blocks (never whole in memory), then

- W1: :func:`img2tab.distributed.wasserstein_relevance_dask` on a ``LocalCluster`` of
  ``--workers`` processes x 1 thread, against :func:`img2tab.tabular.wasserstein_relevance` on
  the memory-mapped matrix in this process (``--single`` only: it needs the matrix in RAM);
- XGBoost: ``ConceptClassifier.fit`` through ``xgboost.dask`` (``--rounds`` trees of depth
  ``--depth``, hist), against the same fit in this process (``--single``).

Peak memory per worker is the largest resident set size (RSS) of each worker process,
sampled every 0.2 s. Results go to a JSON file (``--json``).

Usage::

    python benchmarks/bench_distributed.py --rows 20000 --single --json runs/bench_dist_20k.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger("bench_distributed")


def write_store(path: Path, n: int, d: int, chunk_rows: int, seed: int = 0) -> np.ndarray:
    """Write the synthetic Ψ to ``path`` (zarr) block by block; return the labels."""
    import zarr

    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.45).astype(np.int64)
    scales = rng.uniform(0.05, 3.0, size=d).astype(np.float32)
    planted = rng.choice(d, size=8, replace=False)
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
    return y


class RssSampler:
    """Largest RSS of every worker process of ``client``, sampled in a thread."""

    def __init__(self, client, every: float = 0.2) -> None:
        self.client, self.every, self.peak = client, every, {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                for addr, rss in self.client.run(lambda: psutil.Process().memory_info().rss).items():
                    self.peak[addr] = max(self.peak.get(addr, 0), rss)
            except Exception:  # a worker restarting
                pass
            self._stop.wait(self.every)

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
    p.add_argument("--rounds", type=int, default=5, help="XGBoost trees")
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--fit-rows", type=int, default=2048, help="rows per XGBoost partition")
    p.add_argument("--max-cached-hist-node", type=int, default=8,
                   help="XGBoost max_cached_hist_node (bounds the histogram cache)")
    p.add_argument("--single", action="store_true", help="also time the single-process path")
    p.add_argument("--dir", type=Path, default=Path("runs/bench_distributed"))
    p.add_argument("--keep", action="store_true", help="keep the zarr store")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    import psutil
    from distributed import Client, LocalCluster

    from img2tab.distributed import open_zarr, wasserstein_relevance_dask
    from img2tab.tabular import ConceptClassifier, wasserstein_relevance

    args.dir.mkdir(parents=True, exist_ok=True)
    store = args.dir / f"psi_{args.rows}.zarr"
    res: dict = {"rows": args.rows, "cols": args.d, "workers": args.workers, "rounds": args.rounds,
                 "depth": args.depth, "gb_on_disk": args.rows * args.d * 4 / 1e9,
                 "load_before": os.getloadavg()}
    t0 = time.perf_counter()
    y = write_store(store, args.rows, args.d, chunk_rows=min(args.rows, 8192))
    res["write_s"] = time.perf_counter() - t0
    logger.info("wrote %s in %.1f s", store, res["write_s"])
    dz = open_zarr(store)
    xgb_params = {"n_estimators": args.rounds, "max_depth": args.depth, "n_jobs": 1,
                  "max_cached_hist_node": args.max_cached_hist_node}

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                           memory_limit=args.memory_limit, dashboard_address=None)
    client = Client(cluster)
    try:
        with RssSampler(client) as s:
            t0 = time.perf_counter()
            w_dask = wasserstein_relevance_dask(dz.psi, y, client=client)
            res["w1_dask_s"] = time.perf_counter() - t0
        res["w1_dask_peak_rss_gib"] = s.gib()
        logger.info("W1 dask %.1f s, peak RSS %s GiB", res["w1_dask_s"], s.gib())
        client.restart()
        with RssSampler(client) as s:
            t0 = time.perf_counter()
            x_rows = dz.psi.rechunk({0: min(args.rows, args.fit_rows), 1: -1})
            clf = ConceptClassifier(params=xgb_params, random_state=0, device="cpu")
            clf.fit(x_rows, y, client=client)
            res["fit_dask_s"] = time.perf_counter() - t0
        res["fit_dask_peak_rss_gib"] = s.gib()
        logger.info("fit dask %.1f s, peak RSS %s GiB", res["fit_dask_s"], s.gib())
    finally:
        client.close()
        cluster.close()
    if args.single:
        x = np.asarray(dz.psi.compute(scheduler="sync"))
        for nj in (1, None):
            t0 = time.perf_counter()
            w_one = wasserstein_relevance(x, y, n_jobs=nj)
            res[f"w1_single_s_{'1thread' if nj == 1 else 'allthreads'}"] = time.perf_counter() - t0
        res["w1_max_abs_diff"] = float(np.max(np.abs(w_one - w_dask)))
        t0 = time.perf_counter()
        one = ConceptClassifier(params=xgb_params, random_state=0, device="cpu").fit(x, y)
        res["fit_single_s"] = time.perf_counter() - t0
        res["single_process_peak_rss_gib"] = psutil.Process().memory_info().rss / 2**30
        res["top8_equal"] = bool(set(np.argsort(-one.feature_importances_)[:4])
                                 <= set(np.argsort(-w_one)[:8]))
    res["top_w1_planted"] = np.argsort(-w_dask)[:8].tolist()
    res["fit_dask_top_features"] = np.argsort(-clf.feature_importances_)[:4].tolist()
    res["load_after"] = os.getloadavg()
    logger.info("%s", json.dumps(res))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))
    if not args.keep:
        shutil.rmtree(store)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
