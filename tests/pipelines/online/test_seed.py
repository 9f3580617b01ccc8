"""The ``online seed`` step on published batches: per-shopper recent items and bought set, deterministic."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest

from core.errors import RecopsError
from core.online_seed import read_manifest, read_seed, seed_paths
from core.privacy import forgotten_path, pseudonymize
from core.settings import Settings
from pipelines.online.seed import build_seed, run_online_seed
from pipelines.params import load_params
from pipelines.steps import StepContext
from tests.factories import make_catalog, make_events, write_batch

KEY = "test-key"
DAYS = (date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3))


def publish_days(settings: Settings) -> pd.DataFrame:
    """Write three pseudonymised daily batches into data/ and return all their events."""
    frames = []
    for n, day in enumerate(DAYS):
        events = make_events(day, n=300, n_users=20, seed=n)
        events["user_id"] = pseudonymize(events["user_id"], KEY)
        write_batch(settings.data_dir, day, events=events, catalog=make_catalog())
        frames.append(events)
    return pd.concat(frames, ignore_index=True)


def context(settings: Settings, max_length: int = 5) -> StepContext:
    params = load_params(settings.params_file)
    features = params.features.model_copy(update={"max_sequence_length": max_length})
    return StepContext(settings, params.model_copy(update={"features": features}), actor="test")


def test_seed_holds_each_shoppers_last_items_and_bought_set(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    result = run_online_seed(context(recops_settings, max_length=5))
    seed = read_seed(recops_settings.project_dir / result.outputs["seed"], max_length=5)
    assert result.metrics == {"users": float(events["user_id"].nunique()), "events": float(len(events))}
    assert len(seed) == events["user_id"].nunique()
    for user, row in seed.set_index("user_id").iterrows():
        mine = events[events["user_id"] == user].sort_values(["ts", "event_id"])
        assert row["recent_items"] == mine["item_id"].astype(str).tolist()[-5:]
        assert row["bought_items"] == sorted(set(mine.loc[mine["event_type"] == "purchase", "item_id"]))
        assert row["last_ts"] == mine["ts"].max()
    manifest = read_manifest(seed_paths(recops_settings)[1])
    assert manifest["digest"] == result.info["digest"] and manifest["rows"] == len(seed)


def test_same_data_gives_the_same_digest_and_no_rewrite(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    first = run_online_seed(context(recops_settings))
    parquet_path, manifest_path = seed_paths(recops_settings)
    written = manifest_path.read_text(encoding="utf-8")
    again = run_online_seed(context(recops_settings))
    assert first.info["changed"] is True and again.info["changed"] is False
    assert again.info["digest"] == first.info["digest"]
    assert manifest_path.read_text(encoding="utf-8") == written
    shuffled = build_seed(events.sample(frac=1.0, random_state=3), 5)
    assert shuffled.equals(read_seed(parquet_path))
    parquet_path.write_bytes(b"damaged")  # a damaged seed on disk is rewritten, not trusted
    repaired = run_online_seed(context(recops_settings))
    assert repaired.info["changed"] is True and len(read_seed(parquet_path)) == len(shuffled)


def test_forgotten_shoppers_are_left_out(recops_settings: Settings) -> None:
    events = publish_days(recops_settings)
    gone = str(events["user_id"].iloc[0])
    forgotten_path(recops_settings.data_dir).write_text(gone + "\n", encoding="utf-8")
    result = run_online_seed(context(recops_settings))
    seed = read_seed(recops_settings.project_dir / result.outputs["seed"])
    assert gone not in set(seed["user_id"]) and len(seed) == events["user_id"].nunique() - 1


def test_without_published_data_the_step_says_what_to_run(recops_settings: Settings) -> None:
    with pytest.raises(RecopsError, match=r"no published batches .* `recops publish`"):
        run_online_seed(context(recops_settings))
    assert not seed_paths(recops_settings)[0].exists()


def test_build_seed_refuses_a_zero_length() -> None:
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        build_seed(make_events(n=5), 0)
