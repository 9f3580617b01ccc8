"""Toy datasets with known answers and fitted models for the model contract suite.

``block_interactions``: items 0-4 (group A) are only ever used together, items 5-9 (group B) too, and
items 10-11 never occur. Group B is the more popular group and item 7 the single most popular item, so a
personalised family must overrule popularity to rank A items for a user whose history is in group A.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from models import FAMILIES, Recommender, create_model
from models.base import FitContext, Interactions
from models.threads import limit_threads

DAY = 86_400
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
GROUP_A = np.arange(0, 5)
GROUP_B = np.arange(5, 10)
N_ITEMS = 12
MOST_POPULAR = 7
#: Families whose list is the same for every user (they must still honour the contract at the edges).
NON_PERSONALISED = frozenset({"popularity", "recent_popularity"})
#: Small, fast settings for the toy data; families not listed use their defaults.
TEST_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    # Two factors match the two blocks of the toy data (more would overfit 12 items; any seed passes).
    "als": {"factors": 2, "iterations": 15, "regularization": 0.5, "alpha": 2.0},
    "itemknn": {"shrinkage": 1.0},
    # A tiny transformer: 12 items, histories of about 9 events (fits in about a second).
    "sasrec": {"hidden_size": 16, "max_len": 10, "batch_size": 16, "max_epochs": 30, "learning_rate": 0.01},
}
#: How the suite fits: fixed seed, one worker thread.
FIT_CONTEXT = FitContext(seed=0, threads=1)


@pytest.fixture(scope="session", autouse=True)
def _thread_limits() -> None:
    """Like the train step: BLAS limited once per process, before any fit."""
    limit_threads()


def make_interactions(
    rows: Sequence[tuple[int, int, float, int, int]], n_users: int | None = None, n_items: int | None = None
) -> Interactions:
    """``Interactions`` from ``(user, item, weight, ts, session)`` tuples (sorted by ``ts`` here)."""
    table = np.array(rows, dtype=np.float64).reshape(-1, 5)
    table = table[np.argsort(table[:, 3], kind="stable")]
    users, items = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    return Interactions(
        user_idx=users,
        item_idx=items,
        weight=table[:, 2].astype(np.float32),
        ts=table[:, 3].astype(np.int64),
        session_idx=table[:, 4].astype(np.int64),
        n_users=n_users if n_users is not None else int(users.max()) + 1,
        n_items=n_items if n_items is not None else int(items.max()) + 1,
    )


def random_interactions(
    n: int, n_users: int, n_items: int, seed: int = 0, days: int = 30, skew: float = 1.1
) -> Interactions:
    """Random sparse interactions with Zipf-like item popularity and a few events per session."""
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_items + 1) ** skew
    items = rng.choice(n_items, size=n, p=popularity / popularity.sum())
    users = rng.integers(0, n_users, n)
    ts = np.sort(rng.integers(T0, T0 + days * DAY, n))
    sessions = users * (days * 4) + (ts - T0) // (DAY // 4)
    weights = rng.choice(np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32), size=n, p=[0.6, 0.25, 0.1, 0.05])
    _, session_idx = np.unique(sessions, return_inverse=True)
    return Interactions(
        user_idx=users.astype(np.int64),
        item_idx=items.astype(np.int64),
        weight=weights.astype(np.float32),
        ts=ts.astype(np.int64),
        session_idx=session_idx.astype(np.int64),
        n_users=n_users,
        n_items=n_items,
    )


def block_rows(seed: int = 0) -> list[tuple[int, int, float, int, int]]:
    """Users 0-19 use group A, users 20-49 group B; item 7 gets purchases on top (the clear winner)."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[int, int, float, int, int]] = []
    session = 0
    for user in range(50):
        group = GROUP_A if user < 20 else GROUP_B
        for day in range(3):
            for item in rng.choice(group, size=3, replace=False):
                rows.append((user, int(item), 1.0, T0 + (day * 7 + user % 7) * DAY + len(rows), session))
            session += 1
        if user >= 20 and user % 2 == 0:
            rows.append((user, MOST_POPULAR, 8.0, T0 + 25 * DAY + user, session - 1))
    return rows


def old_hit_and_new_hit() -> list[tuple[int, int, float, int, int]]:
    """Item 0: ten events 60 days before the end; item 1: four events in the last day."""
    old = [(u, 0, 1.0, T0 + u, u) for u in range(10)]
    new = [(10 + u, 1, 1.0, T0 + 60 * DAY + u * 3600, 10 + u) for u in range(4)]
    return old + new


@pytest.fixture(scope="session")
def block_interactions() -> Interactions:
    return make_interactions(block_rows(), n_users=50, n_items=N_ITEMS)


def new_model(family: str) -> Recommender:
    return create_model(family, TEST_HYPERPARAMETERS.get(family, {}))


@pytest.fixture(scope="session")
def _fitted_cache(block_interactions: Interactions) -> Iterator[dict[str, Recommender]]:
    yield {}


@pytest.fixture(params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fitted(
    family: str, block_interactions: Interactions, _fitted_cache: dict[str, Recommender]
) -> Recommender:
    """A model of ``family`` fitted on the block data (fitted once per session; do not mutate it)."""
    if family not in _fitted_cache:
        _fitted_cache[family] = new_model(family).fit(block_interactions, ctx=FIT_CONTEXT)
    return _fitted_cache[family]
