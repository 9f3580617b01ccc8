"""Fixtures of the loader tests: the public raw data, read in place (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.pipelines.datasets.loaders.helpers import raw_data_dir


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    path = raw_data_dir()
    # Like a service: skipped on a laptop without the data, a failure in CI (CI=true).
    require_service("public raw data", path.is_dir(), f"not found at {path} (set RECOPS_SHARED_DATA)")
    return path
