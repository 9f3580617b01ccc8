"""Scores of one event-loop turn computed together: each request its own row, equal to scoring it alone;
failures confined to the failing history; batches per serving version; concurrent requests answer exactly
what they answer one at a time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import service.batch_scoring as batch_scoring
from core.settings import Settings
from models.package import ModelPackage
from service.app import create_app
from service.batch_scoring import CoalescedScores
from service.identity import CHAMPION, pseudonym
from service.online_store import OnlineEvent
from service.routes import recommend
from service.schemas import RecommendationRequest
from service.serving import Serving
from tests.service.conftest import make_package, serving_of


class Counting:
    """A serving version's scoring, counted (and able to fail for one history or for whole batches)."""

    def __init__(self, serving: Serving, fail_item: int | None = None, fail_batches: bool = False) -> None:
        self.serving = serving
        self.n_items = serving.n_items
        self.batches: list[int] = []
        self.fail_item = fail_item
        self.fail_batches = fail_batches

    def score_many(self, histories: list[Any]) -> Any:
        self.batches.append(len(histories))
        if self.fail_batches:
            raise RuntimeError("batch scoring broke")
        return self.serving.score_many(histories)

    def score(self, history: Any) -> Any:
        if self.fail_item is not None and self.fail_item in history.tolist():
            raise ValueError("this history breaks the model")
        return self.serving.score(history)


@pytest.fixture(params=["als", "itemknn"])
def serving(request: pytest.FixtureRequest, tmp_path: Path) -> Serving:
    return serving_of(make_package(request.param), 1, tmp_path)


T0 = datetime(2026, 3, 1, tzinfo=UTC)
HISTORIES = [np.array(h, dtype=np.int64) for h in ([0, 5, 10], [3], [7, 7, 8, 20], [1, 2], [0, 5, 10])]


def test_one_turn_is_one_product_and_rows_equal_scoring_alone(serving: Serving) -> None:
    counting = Counting(serving)
    scores = CoalescedScores()

    async def main() -> list[Any]:
        return await asyncio.gather(*(scores.score(counting, h) for h in HISTORIES))  # type: ignore[arg-type]

    rows = asyncio.run(main())
    assert counting.batches == [len(HISTORIES)]
    for history, row in zip(HISTORIES, rows, strict=True):
        np.testing.assert_allclose(row, serving.score(history), rtol=1e-5, atol=1e-6)
    rows[0][:] = -np.inf  # a request may overwrite its row: nobody else's changes
    np.testing.assert_allclose(rows[4], serving.score(HISTORIES[4]), rtol=1e-5, atol=1e-6)


def test_a_failed_batch_is_scored_one_by_one_and_fails_only_the_bad_history(serving: Serving) -> None:
    counting = Counting(serving, fail_item=20, fail_batches=True)
    scores = CoalescedScores()

    async def main() -> list[Any]:
        return await asyncio.gather(
            *(scores.score(counting, h) for h in HISTORIES),
            return_exceptions=True,  # type: ignore[arg-type]
        )

    rows = asyncio.run(main())
    assert isinstance(rows[2], ValueError)
    for i in (0, 1, 3, 4):
        np.testing.assert_allclose(rows[i], serving.score(HISTORIES[i]), rtol=1e-5, atol=1e-6)


def test_versions_are_batched_apart_long_turns_split_cancelled_skipped(
    serving: Serving, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Counting(serving_of(make_package("popularity"), 2, tmp_path / "v2"))
    counting = Counting(serving)
    monkeypatch.setattr(batch_scoring, "MAX_BATCH", 2)
    scores = CoalescedScores()

    async def main() -> None:
        tasks = [asyncio.ensure_future(scores.score(counting, h)) for h in HISTORIES]  # type: ignore[arg-type]
        tasks.append(asyncio.ensure_future(scores.score(other, HISTORIES[0])))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        tasks[1].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(done[1], asyncio.CancelledError)
        assert all(isinstance(d, np.ndarray) for i, d in enumerate(done) if i != 1)

    asyncio.run(main())
    assert counting.batches == [2, 2] and other.batches == [1]  # 4 live histories in batches of 2


def test_concurrent_requests_answer_what_they_answer_one_at_a_time(
    service_settings: Settings, tmp_path: Path
) -> None:
    """The whole route: 40 shoppers asked at once (one turn: shared reads and scores) get exactly the
    lists they get one by one."""
    package: ModelPackage = make_package("als")
    app = create_app(service_settings, watch=False)
    st = app.state.recops
    st.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    items = st.holder.get(CHAMPION).item_ids
    rng = np.random.default_rng(3)
    users = [f"shopper-{n}" for n in range(40)]
    st.store.add_events(
        [
            OnlineEvent(pseudonym(u, service_settings), items[int(i)], "view", T0)
            for u in users[:30]
            for i in rng.integers(0, len(items), 6)
        ]
    )
    bodies = [RecommendationRequest(user_id=u, k=8) for u in users]

    async def main() -> tuple[list[bytes], list[bytes]]:
        together = await asyncio.gather(*(recommend(st, b, {}) for b in bodies))
        alone = [await recommend(st, b, {}) for b in bodies]
        return together, alone

    together, alone = asyncio.run(main())

    def lists(answers: list[bytes]) -> list[list[str]]:
        return [[i["item_id"] for i in orjson.loads(a)["items"]] for a in answers]

    assert lists(together) == lists(alone)
    assert sum(not orjson.loads(a)["cold_start"] for a in together) == 30
