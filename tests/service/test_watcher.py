"""The watcher's install step without a registry: a version whose smoke prediction fails is refused and the
old one keeps serving; a good one is swapped in atomically (readers keep the reference they took)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from core.settings import Settings
from models.package import ModelPackage
from service.holder import ModelHolder
from service.identity import CHAMPION
from service.metrics import ServiceMetrics
from service.serving import SmokeTestError, build_serving, smoke_test
from service.watcher import ModelWatcher
from tests.service.conftest import loaded, make_package


def _watcher(settings: Settings) -> tuple[ModelWatcher, ModelHolder, ServiceMetrics]:
    holder, metrics = ModelHolder(), ServiceMetrics()
    return ModelWatcher(settings, holder, metrics, {CHAMPION: "champion"}), holder, metrics


def _broken(package: ModelPackage) -> ModelPackage:
    """A package that loads but cannot score: its similarity matrix has the wrong shape."""
    broken = make_package()
    n = broken.model.n_items
    broken.model.similarity = sp.csr_matrix((n + 3, n + 3), dtype=np.float32)  # type: ignore[attr-defined]
    return broken


def test_smoke_failure_refuses_the_version_and_the_old_one_keeps_serving(
    recops_settings: Settings, package: ModelPackage, tmp_path: Path
) -> None:
    watcher, holder, metrics = _watcher(recops_settings)
    assert watcher.install(CHAMPION, loaded(package, 1, tmp_path))
    in_flight = holder.get(CHAMPION)  # a request that started before the next swap
    assert not watcher.install(CHAMPION, loaded(_broken(package), 2, tmp_path))
    assert holder.get(CHAMPION) is in_flight and in_flight is not None and in_flight.version == 1
    assert metrics.refused.labels(alias=CHAMPION)._value.get() == 1.0
    assert (CHAMPION, 2) in watcher.refused
    assert watcher.install(CHAMPION, loaded(package, 3, tmp_path))
    current = holder.get(CHAMPION)
    assert current is not None and current.version == 3 and in_flight.version == 1  # the old object is intact
    assert metrics.swaps.labels(alias=CHAMPION)._value.get() == 1.0
    assert metrics.model_version.labels(alias=CHAMPION)._value.get() == 3.0


def test_smoke_test_rejects_nan_scores(package: ModelPackage, tmp_path: Path) -> None:
    serving = build_serving(loaded(package, 1, tmp_path), CHAMPION)
    smoke_test(serving)
    nan = make_package("popularity")
    nan.model.item_popularity[:] = np.nan
    with pytest.raises(SmokeTestError, match="NaN"):
        smoke_test(build_serving(loaded(nan, 2, tmp_path), CHAMPION))


def test_start_up_without_registry_or_cache_leaves_nothing_served(recops_settings: Settings) -> None:
    down = recops_settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9", "mlflow_registry_uri": "http://127.0.0.1:9"}
    )
    watcher, holder, metrics = _watcher(down)
    watcher.start_up()
    assert holder.get(CHAMPION) is None
    watcher.poll_once()
    assert metrics.poll_errors._value.get() == 1.0 and holder.get(CHAMPION) is None
