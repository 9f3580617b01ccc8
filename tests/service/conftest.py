"""Small model versions and apps for the scorer tests (no MLflow unless a test asks for the server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from models import create_model
from models.base import Interactions
from models.package import ModelPackage
from registry.loader import LoadedModel
from service.app import create_app
from service.holder import ModelHolder
from service.identity import CHAMPION
from service.serving import Serving, build_serving
from tests.factories import make_catalog

N_ITEMS = 40
N_CATEGORIES = 5  # make_catalog: item i is in category cat{i % 5}


def clustered_interactions(n_items: int = N_ITEMS, n_users: int = 60, seed: int = 0) -> Interactions:
    """User ``u`` views items of category ``u % 5`` in sessions of four, so item-kNN links a category."""
    rng = np.random.default_rng(seed)
    users, items, sessions, ts = [], [], [], []
    for u in range(n_users):
        favourite = np.arange(u % N_CATEGORIES, n_items, N_CATEGORIES)
        for s in range(3):
            for n in range(4):
                users.append(u)
                items.append(int(rng.choice(favourite)))
                sessions.append(u * 3 + s)
                ts.append(1_767_225_600 + u * 1000 + s * 100 + n)
    return Interactions(
        user_idx=np.asarray(users, dtype=np.int64),
        item_idx=np.asarray(items, dtype=np.int64),
        weight=np.ones(len(users), dtype=np.float32),
        ts=np.asarray(ts, dtype=np.int64),
        session_idx=np.asarray(sessions, dtype=np.int64),
        n_users=n_users,
        n_items=n_items,
    )


def make_package(family: str = "itemknn", n_items: int = N_ITEMS, all_in_stock: bool = True) -> ModelPackage:
    config = {"neighbours": 20, "shrinkage": 1.0} if family == "itemknn" else {}
    model = create_model(family, config).fit(clustered_interactions(n_items))
    items = make_catalog(n_items).loc[:, ["item_id", "category", "brand", "price", "in_stock"]]
    if all_in_stock:
        items["in_stock"] = True
    return ModelPackage(model=model, items=items.reset_index(drop=True))


def loaded(package: ModelPackage, version: int, tmp: Path) -> LoadedModel:
    return LoadedModel(
        name="recops-test", version=version, alias=CHAMPION, package=package, source_run_id="run",
        path=tmp, checksum=f"sum{version}",
    )  # fmt: skip


def serving_of(package: ModelPackage, version: int, tmp: Path) -> Serving:
    return build_serving(loaded(package, version, tmp), CHAMPION)


def events_frame(rows: list[tuple[str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


@pytest.fixture
def package() -> ModelPackage:
    return make_package()


@pytest.fixture
def service_settings(recops_settings: Settings) -> Settings:
    """No rate limit surprises in functional tests (the limit tests set their own)."""
    return recops_settings.model_copy(update={"serve_rate_limit_per_s": 0.0})


@pytest.fixture
def client(service_settings: Settings, package: ModelPackage, tmp_path: Path) -> Iterator[TestClient]:
    """An app serving ``package`` as champion v1 (no watcher), in-memory online store, SQLite feedback."""
    app = create_app(service_settings, watch=False)
    holder: ModelHolder = app.state.recops.holder
    holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    with TestClient(app) as test_client:
        yield test_client
