"""Fixtures of the loader tests: the public raw data, read in place (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipelines.datasets.loaders.helpers import raw_data_dir


@pytest.fixture(scope="session")
def raw_dir() -> Path:
    path = raw_data_dir()
    # Test input, not a service: a checkout without the public data folder skips these tests loudly.
    if not path.is_dir():
        pytest.skip(f"public raw data not found at {path} (set RECOPS_SHARED_DATA)")
    return path
