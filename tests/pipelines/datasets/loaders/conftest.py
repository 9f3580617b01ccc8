"""Fixtures of the loader tests: the public raw data, read in place (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.pipelines.datasets.loaders.helpers import raw_data_dir


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    path = raw_data_dir()
    # Outside CI a checkout without the public data folder skips these tests loudly; in CI (CI=true) the
    # data must be there, so its absence fails them instead of hiding them.
    if not path.is_dir():
        message = f"public raw data not found at {path} (set RECOPS_SHARED_DATA)"
        if in_ci():
            pytest.fail(f"{message} (CI=true: the real-data tests must run)", pytrace=False)
        pytest.skip(message)
    return path
