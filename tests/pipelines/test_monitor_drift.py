"""The monitor's pure drift functions: divergences, the four signals, the assessment and the verdict."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from pipelines.monitor.drift import (
    OTHER,
    SIGNALS,
    UNKNOWN_CATEGORY,
    DriftSignal,
    align,
    assess,
    bin_label,
    category_mix,
    divergence,
    events_per_user_day,
    item_popularity,
    jensen_shannon,
    new_item_rate,
    psi,
    shares,
    unavailable,
    verdict,
)
from pipelines.params import MonitorParams, ParamsError, load_params

THRESHOLDS = {"category_mix": 0.1, "item_popularity": 0.35, "events_per_user": 0.1, "new_item_rate": 0.2}


def s(**values: float) -> pd.Series:
    return pd.Series(values, dtype=float)


def events(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(user, item, 'YYYY-MM-DD HH:MM') rows as an events frame with the columns the signals read."""
    return pd.DataFrame(
        {
            "user_id": [u for u, _, _ in rows],
            "item_id": [i for _, i, _ in rows],
            "ts": pd.to_datetime([t for _, _, t in rows], utc=True),
        }
    )


# ------------------------------------------------------------------------------------------ divergences


def test_psi_is_zero_for_identical_and_matches_the_formula() -> None:
    p = s(a=0.5, b=0.3, c=0.2)
    assert psi(p, p) == pytest.approx(0.0, abs=1e-12)
    q = s(a=0.2, b=0.3, c=0.5)
    expected = (0.2 - 0.5) * math.log(0.2 / 0.5) + 0 + (0.5 - 0.2) * math.log(0.5 / 0.2)
    assert psi(p, q) == pytest.approx(expected, rel=1e-3)
    assert psi(p, q) == pytest.approx(psi(q, p), rel=1e-9), "PSI is symmetric"


def test_psi_of_a_missing_bucket_is_finite_and_large() -> None:
    value = psi(s(a=1.0), s(a=0.5, b=0.5))
    assert math.isfinite(value) and value > 1.0


def test_jensen_shannon_is_bounded_in_bits() -> None:
    p = s(a=0.5, b=0.5)
    assert jensen_shannon(p, p) == pytest.approx(0.0, abs=1e-12)
    assert jensen_shannon(s(a=1.0), s(b=1.0)) == pytest.approx(1.0, abs=2e-3)  # disjoint: 1 bit
    mid = jensen_shannon(s(a=0.9, b=0.1), s(a=0.1, b=0.9))
    assert 0.0 < mid < 1.0
    assert divergence("jensen_shannon", s(a=0.9, b=0.1), s(a=0.1, b=0.9), 1e-4) == pytest.approx(mid)


def test_align_takes_the_union_and_normalises() -> None:
    p, q, labels = align(s(a=2.0, b=2.0), s(b=1.0, c=3.0))
    assert labels == ["a", "b", "c"]
    assert p.tolist() == [0.5, 0.5, 0.0] and q.tolist() == [0.0, 0.25, 0.75]
    with pytest.raises(ValueError, match="no mass"):
        align(s(a=0.0), s(a=1.0))
    with pytest.raises(ValueError, match="unknown drift metric"):
        divergence("kl", s(a=1.0), s(a=1.0), 1e-4)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ signals


def test_shares_sum_to_one_largest_first() -> None:
    out = shares(["x", "y", "x", "x"])
    assert out.to_dict() == {"x": 0.75, "y": 0.25}
    assert shares([]).empty


def test_category_mix_maps_items_and_marks_unknown_ones() -> None:
    catalog = pd.DataFrame({"item_id": ["i1", "i2", "i2"], "category": ["shoes", "hats", "bags"]})
    ev = events([("u", "i1", "2026-01-01"), ("u", "i2", "2026-01-01"), ("u", "i9", "2026-01-01")])
    mix = category_mix(ev, catalog)
    assert mix.to_dict() == pytest.approx({"shoes": 1 / 3, "bags": 1 / 3, UNKNOWN_CATEGORY: 1 / 3})


def test_item_popularity_buckets_the_reference_top_items_plus_other() -> None:
    reference = events([("u", i, "2026-01-01") for i in ["a", "a", "a", "b", "b", "c", "d"]])
    current = events([("u", i, "2026-01-08") for i in ["a", "new", "new", "c"]])
    ref, cur = item_popularity(reference, current, top_items=2)
    assert set(ref.index) == {"a", "b", OTHER} and ref[OTHER] == pytest.approx(2 / 7)
    assert cur.to_dict() == pytest.approx({"a": 0.25, OTHER: 0.75})
    # ties in popularity are broken by item id, not by row order
    tied = events([("u", i, "2026-01-01") for i in ["z", "y", "y", "z"]])
    assert set(item_popularity(tied, tied, top_items=1)[0].index) == {"y", OTHER}
    with pytest.raises(ValueError):
        item_popularity(reference, current, top_items=0)


def test_bin_labels() -> None:
    assert [bin_label(n) for n in (1, 2, 3, 4, 5, 8, 9, 32, 33, 500)] == [
        "1", "2", "3-4", "3-4", "5-8", "5-8", "9-16", "17-32", "33+", "33+",
    ]  # fmt: skip
    with pytest.raises(ValueError):
        bin_label(0)


def test_events_per_user_counts_per_shopper_and_utc_day() -> None:
    ev = events(
        [("u1", "a", "2026-01-01 10:00"), ("u1", "b", "2026-01-01 23:59"), ("u1", "a", "2026-01-02 00:01"),
         ("u2", "a", "2026-01-01 12:00")]
    )  # fmt: skip
    # (u1, Jan 1): 2 events; (u1, Jan 2): 1; (u2, Jan 1): 1
    assert events_per_user_day(ev).to_dict() == pytest.approx({"1": 2 / 3, "2": 1 / 3})
    assert events_per_user_day(ev.iloc[:0]).empty


def test_new_item_rate_is_the_share_of_events_on_unknown_items() -> None:
    ev = events([("u", i, "2026-01-01") for i in ["a", "b", "new", "new"]])
    assert new_item_rate(ev, {"a", "b"}) == 0.5
    assert new_item_rate(ev, []) == 1.0
    assert new_item_rate(ev.iloc[:0], {"a"}) == 0.0


# ------------------------------------------------------------------------------------------ assessment


def shop(items: list[str], users: int, day: str) -> pd.DataFrame:
    rows = [(f"u{k % users}", item, f"{day} {k % 24:02d}:00") for k, item in enumerate(items)]
    return events(rows)


CATALOG = pd.DataFrame({"item_id": list("abcdxyz"), "category": ["c1", "c1", "c2", "c2", "c3", "c3", "c3"]})


def test_assess_same_traffic_is_stable() -> None:
    reference = shop(list("aabbccdd") * 20, users=10, day="2026-01-01")
    current = shop(list("abcdabcd") * 20, users=10, day="2026-01-08")
    result = assess(
        reference, current, CATALOG, set("abcd"), metric="psi", thresholds=THRESHOLDS, top_items=4
    )
    assert [sig.name for sig in result.signals] == list(SIGNALS)
    assert result.drifted == [] and result.reasons() == []
    assert result.metrics()["drift.new_item_rate"] == 0.0
    assert result.reference_events == 160 and result.current_events == 160
    assert verdict(result, data_changed=True).status == "stable"


def test_assess_finds_a_shift_to_new_items() -> None:
    reference = shop(list("aabbccdd") * 20, users=10, day="2026-01-01")
    current = shop(list("xyzxyza") * 20, users=10, day="2026-01-08")
    result = assess(
        reference, current, CATALOG, set("abcd"), metric="psi", thresholds=THRESHOLDS, top_items=4
    )
    drifted = {sig.name for sig in result.drifted}
    assert {"category_mix", "item_popularity", "new_item_rate"} <= drifted
    assert "events_per_user" not in drifted
    assert any(r.startswith("new_item_rate rate 0.857") for r in result.reasons())

    retrain = verdict(result, data_changed=True)
    assert (retrain.status, retrain.retrain) == ("drift", True) and len(retrain.reasons) == len(drifted)
    same_data = verdict(result, data_changed=False)
    assert (same_data.status, same_data.retrain) == ("drift_no_new_data", False)
    assert "nothing was published" in same_data.reasons[-1]


def test_assess_refuses_empty_windows_and_missing_thresholds() -> None:
    ref = shop(list("ab"), users=1, day="2026-01-01")
    with pytest.raises(ValueError, match="need events"):
        assess(ref, ref.iloc[:0], CATALOG, set(), metric="psi", thresholds=THRESHOLDS, top_items=2)
    with pytest.raises(ValueError, match="no threshold for new_item_rate"):
        partial = {k: v for k, v in THRESHOLDS.items() if k != "new_item_rate"}
        assess(ref, ref, CATALOG, set(), metric="psi", thresholds=partial, top_items=2)


def test_signal_and_unavailable_verdicts() -> None:
    signal = DriftSignal("category_mix", 0.3, 0.1, "psi")
    assert signal.drifted and signal.reason() == "category_mix psi 0.3000 > 0.1"
    assert signal.to_dict()["drifted"] is True
    assert not DriftSignal("category_mix", 0.1, 0.1, "psi").drifted, "at the threshold is not past it"
    assert not DriftSignal("category_mix", math.nan, 0.1, "psi").drifted
    none = unavailable("no_champion", "no champion yet")
    assert (none.status, none.retrain, none.reasons) == ("no_champion", False, ("no champion yet",))


# ------------------------------------------------------------------------------------------ params


def test_monitor_params_name_the_same_signals_and_validate(tmp_path: Path) -> None:
    assert MonitorParams.SIGNALS == SIGNALS
    assert set(MonitorParams().thresholds) == set(SIGNALS)
    with pytest.raises(ValueError, match="missing=\\['new_item_rate'\\]"):
        MonitorParams(thresholds={k: v for k, v in THRESHOLDS.items() if k != "new_item_rate"})
    with pytest.raises(ValueError, match=">= 0"):
        MonitorParams(thresholds={**THRESHOLDS, "category_mix": -1.0})
    path = tmp_path / "params.yaml"
    path.write_text("monitor:\n  metric: kl\n", encoding="utf-8")
    with pytest.raises(ParamsError, match=r"monitor\.metric"):
        load_params(path)
