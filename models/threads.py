"""Thread limits, set once per process by whoever starts it (the train step, a CLI command, the scorer).

Model code never changes thread pools itself: fitting and scoring run inside whatever limits the process
set. Two reasons to set them at all:

* speed: the hot paths are many small dense products (ALS user vectors, one shopper per request). A threaded
  BLAS only adds overhead there (about 10x slower on a busy 2-core machine), and under ``implicit``'s own
  worker threads it oversubscribes the cores (implicit warns about it);
* reproducibility: a threaded BLAS may sum in a different order with a different thread count, so the same
  fit on another machine could differ in the last bits. With one BLAS thread, a fit is a function of data,
  code, params and seed (``implicit``'s own ``num_threads`` does not change its result: each user and item
  is solved on one thread).

Families that start their own workers (implicit's ``num_threads``, torch's intra-op threads) take their
count from :class:`models.base.FitContext.threads`.
"""

from __future__ import annotations

import os
from typing import Any

#: The limits this process runs under, once :func:`limit_threads` has set them.
_applied: dict[str, int] = {}
#: threadpoolctl's handle, kept so the limits stay set for the life of the process.
_limiter: list[Any] = []


def available_cpus() -> int:
    """Cores this process may run on (its CPU affinity; ``os.cpu_count()`` where affinity is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def limit_threads(threads: int = 0, blas_threads: int = 1) -> int:
    """Limit the process's BLAS and OpenMP pools once; later calls with the same values cost nothing.

    Args:
        threads: the process's thread budget for OpenMP pools (0: every available core).
        blas_threads: threads each BLAS library (OpenBLAS, MKL) may use; 1 by default (see the module
            docstring).
    Returns:
        The thread budget in effect (``threads`` resolved against the available cores).
    Raises:
        ValueError: a negative count.
    """
    if threads < 0 or blas_threads < 1:
        raise ValueError(f"threads must be >= 0 and blas_threads >= 1, got {threads} and {blas_threads}")
    budget = threads or available_cpus()
    wanted = {"openmp": budget, "blas": blas_threads}
    if _applied == wanted:
        return budget
    import scipy.linalg  # noqa: F401  (load scipy's BLAS so the limit reaches it too)
    from threadpoolctl import threadpool_limits

    _limiter[:] = [threadpool_limits(limits=wanted)]
    _applied.clear()
    _applied.update(wanted)
    return budget


def current_limits() -> dict[str, int]:
    """The limits :func:`limit_threads` set in this process (empty when it was never called)."""
    return dict(_applied)
