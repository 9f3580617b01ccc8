"""The writer process's batch handling: kinds written or dropped whole, times decoded, errors reported."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from service.feedback_process import decode_rows, encode_batch, write_batch

T0 = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)


def test_times_survive_the_round_trip_with_their_zone() -> None:
    batch = {"feedback": [{"ts": T0, "kind": "click"}], "recommendation": [{"created_at": T0}]}
    decoded = orjson.loads(encode_batch(batch))
    assert decode_rows(decoded["feedback"])[0]["ts"] == T0
    assert decode_rows(decoded["recommendation"])[0]["created_at"].tzinfo is not None


def test_each_kind_is_written_or_dropped_whole_and_errors_are_reported() -> None:
    seen: dict[str, list[dict[str, Any]]] = {}

    def ok(rows: list[dict[str, Any]]) -> None:
        seen["feedback"] = rows

    def broken(rows: list[dict[str, Any]]) -> None:
        raise RuntimeError("database is locked")

    batch = {"feedback": [{"a": 1}, {"a": 2}], "recommendation": [{"b": 1}], "other": [{"c": 1}]}
    answer = write_batch(batch, {"feedback": ok, "recommendation": broken})
    assert answer["written"] == 2 and answer["dropped"] == 2
    assert seen["feedback"] == [{"a": 1}, {"a": 2}]
    assert any("database is locked" in e for e in answer["errors"])
    assert any("unknown kind 'other'" in e for e in answer["errors"])
