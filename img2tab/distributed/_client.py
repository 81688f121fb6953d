"""Getting a :class:`distributed.Client`: an existing scheduler or a local cluster."""

from __future__ import annotations

import logging
from typing import Any

from img2tab.errors import Img2TabInputError

__all__ = ["get_client", "require_dask"]

logger = logging.getLogger(__name__)


def require_dask() -> None:
    """Raise a one-line error when the ``img2tab[distributed]`` extra is missing."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise Img2TabInputError(
            f"the distributed path needs dask and distributed ({exc.name} is missing); "
            "pip install 'img2tab[distributed]'"
        ) from None


def get_client(scheduler: str | None = None, workers: int | None = None, *,
               threads_per_worker: int = 1, processes: bool = True,
               memory_limit: str | int = "auto") -> Any:
    """A Dask client on ``scheduler`` (an address such as ``tcp://host:8786``) or on a new
    local cluster of ``workers`` processes.

    Args:
        scheduler: address of a running Dask scheduler; exclusive with ``workers``.
        workers: number of local worker processes (threads when ``processes=False``).
        threads_per_worker: threads of each local worker.
        processes: local workers as processes (True) or threads of this process.
        memory_limit: per-worker memory limit of a local cluster (Dask's syntax, e.g. ``"2GB"``).

    Returns:
        A :class:`distributed.Client`; close it (and its local cluster) with ``client.close()``
        and ``client.cluster.close()``, or use it as a context manager.
    """
    require_dask()
    from distributed import Client, LocalCluster

    if (scheduler is None) == (workers is None):
        raise Img2TabInputError("give exactly one of scheduler (an address) and workers (a count)")
    if scheduler is not None:
        logger.info("connecting to the Dask scheduler at %s", scheduler)
        try:
            return Client(scheduler, timeout=30)
        except OSError as exc:
            raise Img2TabInputError(f"cannot reach the Dask scheduler at {scheduler!r}: {exc}") from None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise Img2TabInputError(f"workers must be a positive int, got {workers!r}")
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=processes,
                           memory_limit=memory_limit, dashboard_address=None)
    logger.info("started a local Dask cluster of %d worker(s)", workers)
    return Client(cluster)
