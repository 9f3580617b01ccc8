"""Thread limits: set once per process, BLAS to one thread, idempotent."""

from __future__ import annotations

import pytest
from threadpoolctl import threadpool_info

from models.base import FitContext
from models.threads import available_cpus, current_limits, limit_threads


def test_limit_threads_sets_blas_to_one_thread_and_reports_the_budget() -> None:
    budget = limit_threads(2)
    assert budget == 2
    assert current_limits() == {"openmp": 2, "blas": 1}
    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and set(blas) == {1}
    assert limit_threads(2) == 2, "a second call with the same values is a no-op"
    assert limit_threads() == available_cpus()
    assert current_limits()["openmp"] == available_cpus()


def test_limit_threads_refuses_negative_counts() -> None:
    with pytest.raises(ValueError, match="threads"):
        limit_threads(-1)
    with pytest.raises(ValueError, match="blas_threads"):
        limit_threads(1, blas_threads=0)


def test_fit_context_validates_and_resolves_threads() -> None:
    assert FitContext(threads=0).resolved_threads() == available_cpus()
    assert FitContext(threads=3).resolved_threads() == 3
    with pytest.raises(ValueError, match="device"):
        FitContext(device="tpu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="threads"):
        FitContext(threads=-1)
