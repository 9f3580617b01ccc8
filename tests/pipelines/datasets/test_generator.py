"""The synthetic shop generator: determinism, schema, and the shop-like structure models rely on."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from core.errors import RecopsError
from core.privacy import is_pseudonymized, pseudonymize_id
from core.schema import CATALOG_COLUMNS, EVENT_COLUMNS, EVENT_TYPES
from pipelines.datasets import GeneratorConfig, build_world, generate_batches, generate_dataset

KEY = "test-generator-key"
CONFIG = GeneratorConfig(days=21, users=1200, items=500, seed=7, start=date(2026, 3, 2))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): _sha256(p) for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate_dataset(CONFIG, out, KEY)
    return out


@pytest.fixture(scope="module")
def days(dataset: Path) -> list[tuple[date, pd.DataFrame, pd.DataFrame]]:
    out = []
    for folder in sorted(dataset.iterdir()):
        out.append(
            (
                date.fromisoformat(folder.name),
                pd.read_parquet(folder / "events.parquet"),
                pd.read_parquet(folder / "catalog.parquet"),
            )
        )
    return out


@pytest.fixture(scope="module")
def events(days: list[tuple[date, pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    return pd.concat([ev.assign(batch=day) for day, ev, _ in days], ignore_index=True)


def test_writes_one_folder_per_day_with_both_files(dataset: Path) -> None:
    expected = [(CONFIG.start + timedelta(days=d)).isoformat() for d in range(CONFIG.days)]
    assert sorted(p.name for p in dataset.iterdir()) == expected
    for name in expected:
        assert sorted(p.name for p in (dataset / name).iterdir()) == [
            "catalog.parquet",
            "events.parquet",
            "manifest.json",
        ]


def test_same_arguments_give_byte_identical_files(dataset: Path, tmp_path: Path) -> None:
    generate_dataset(CONFIG, tmp_path, KEY)
    assert _hashes(tmp_path) == _hashes(dataset)


def test_other_seed_gives_other_data(dataset: Path, tmp_path: Path) -> None:
    config = replace(CONFIG, days=2, seed=CONFIG.seed + 1)
    generate_dataset(config, tmp_path, KEY)
    first = CONFIG.start.isoformat()
    assert _sha256(tmp_path / first / "events.parquet") != _sha256(dataset / first / "events.parquet")
    a = pd.read_parquet(tmp_path / first / "events.parquet")
    b = pd.read_parquet(dataset / first / "events.parquet")
    assert len(a) != len(b) or not a["item_id"].equals(b["item_id"])


def test_written_batch_reads_back_identical(dataset: Path) -> None:
    batch = next(iter(generate_batches(CONFIG, KEY)))
    on_disk = pd.read_parquet(dataset / batch.batch_id / "events.parquet")
    pd.testing.assert_frame_equal(batch.events, on_disk)


def test_columns_and_dtypes_follow_the_schema(days: list[tuple[date, pd.DataFrame, pd.DataFrame]]) -> None:
    for _, ev, cat in days:
        assert [(c, str(t)) for c, t in ev.dtypes.items()] == [(c.name, c.dtype) for c in EVENT_COLUMNS]
        assert [(c, str(t)) for c, t in cat.dtypes.items()] == [(c.name, c.dtype) for c in CATALOG_COLUMNS]
        for col in EVENT_COLUMNS:
            if not col.nullable:
                assert ev[col.name].notna().all(), col.name
        assert cat.notna().all().all()
        assert cat["item_id"].is_unique


def test_event_values_are_well_formed(events: pd.DataFrame) -> None:
    assert events["event_id"].is_unique
    assert set(events["event_type"].unique()) == set(EVENT_TYPES)
    assert (events["price"] > 0).all()
    browsing = events["event_type"].isin(["view", "click"])
    assert events.loc[browsing, "quantity"].isna().all()
    assert (events.loc[~browsing, "quantity"] >= 1).all()
    # A cart and the purchase that follows it carry the same quantity; more than one unit happens.
    assert (events.loc[~browsing, "quantity"] > 1).any()


def test_event_items_are_in_that_days_catalogue_at_its_price(
    days: list[tuple[date, pd.DataFrame, pd.DataFrame]],
) -> None:
    for day, ev, cat in days:
        merged = ev.merge(
            cat[["item_id", "price", "created_at"]], on="item_id", how="left", suffixes=("", "_cat")
        )
        assert merged["price_cat"].notna().all(), f"{day}: event item missing from the catalogue"
        assert np.allclose(merged["price"], merged["price_cat"]), (
            f"{day}: event price is not the item's price"
        )
        assert (merged["ts"] >= merged["created_at"]).all(), f"{day}: event before its item was created"


def test_timestamps_lie_inside_the_batch_day(days: list[tuple[date, pd.DataFrame, pd.DataFrame]]) -> None:
    for day, ev, cat in days:
        start = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
        assert (ev["ts"] >= start).all() and (ev["ts"] < start + pd.Timedelta(days=1)).all()
        assert ev["ts"].is_monotonic_increasing
        assert (cat["created_at"] < start + pd.Timedelta(days=1)).all()


def test_sessions_are_separated_by_silence(events: pd.DataFrame) -> None:
    ev = events.sort_values(["user_id", "ts"])
    same_user = ev["user_id"].eq(ev["user_id"].shift())
    gap = ev["ts"].diff()
    new_session = ev["session_id"].ne(ev["session_id"].shift())
    within = same_user & ~new_session
    between = same_user & new_session
    assert (gap[within] < pd.Timedelta(minutes=30)).all()
    assert (gap[between] >= pd.Timedelta(minutes=30)).all()
    assert between.any()


def test_funnel_rates_look_like_a_shop(events: pd.DataFrame) -> None:
    counts = events["event_type"].value_counts()
    assert 0.25 <= counts["click"] / counts["view"] <= 0.5
    assert 0.05 <= counts["add_to_cart"] / counts["click"] <= 0.2
    assert 0.25 <= counts["purchase"] / counts["add_to_cart"] <= 0.65
    assert 0.005 <= counts["purchase"] / len(events) <= 0.04


def test_item_popularity_is_heavy_tailed(events: pd.DataFrame) -> None:
    per_item = events["item_id"].value_counts().to_numpy()
    top = per_item[: max(1, CONFIG.items // 10)].sum()
    assert top / per_item.sum() > 0.4
    assert per_item.max() > 20 * np.median(per_item)


def test_user_activity_is_heavy_tailed(events: pd.DataFrame) -> None:
    per_user = events["user_id"].value_counts().to_numpy()
    assert per_user.max() > 10 * np.median(per_user)


def test_new_items_and_users_arrive_on_later_days(
    days: list[tuple[date, pd.DataFrame, pd.DataFrame]],
) -> None:
    seen_users: set[str] = set(days[0][1]["user_id"])
    sizes = [len(days[0][2])]
    for day, ev, cat in days[1:]:
        users = set(ev["user_id"])
        assert users - seen_users, f"{day}: no new users"
        seen_users |= users
        sizes.append(len(cat))
        start = pd.Timestamp(datetime(day.year, day.month, day.day, tzinfo=UTC))
        launched = cat[cat["created_at"] >= start]
        assert len(launched) == sizes[-1] - sizes[-2]
    assert sizes[-1] > sizes[0]
    assert sizes[-1] <= CONFIG.items


def test_new_items_get_attention_soon_after_launch(
    days: list[tuple[date, pd.DataFrame, pd.DataFrame]],
) -> None:
    first_ids = set(days[0][2]["item_id"])
    new_items = set(days[-1][2]["item_id"]) - first_ids
    touched = set().union(*(set(ev["item_id"]) for _, ev, _ in days))
    assert len(new_items & touched) > 0.5 * len(new_items)


def test_out_of_stock_items_are_not_bought(days: list[tuple[date, pd.DataFrame, pd.DataFrame]]) -> None:
    out_any = 0
    back_in = False
    previous_out: set[str] = set()
    for _, ev, cat in days:
        out = set(cat.loc[~cat["in_stock"], "item_id"])
        out_any += len(out)
        bought = ev[ev["event_type"].isin(["add_to_cart", "purchase"])]
        assert not (set(bought["item_id"]) & out)
        viewed_out = ev[ev["item_id"].isin(out)]
        assert viewed_out["event_type"].isin(["view", "click"]).all()
        back_in = back_in or bool(previous_out - out)
        previous_out = out
    assert out_any > 0
    assert back_in, "out-of-stock items never come back"


def test_user_ids_are_pseudonymised_with_the_key(events: pd.DataFrame, tmp_path: Path) -> None:
    assert is_pseudonymized(events["user_id"])
    raw = [f"u{i:07d}" for i in range(CONFIG.users)]
    assert set(events["user_id"]) <= {pseudonymize_id(r, KEY) for r in raw}
    generate_dataset(replace(CONFIG, days=1), tmp_path, "another-key")
    other = pd.read_parquet(tmp_path / CONFIG.start.isoformat() / "events.parquet")
    assert not set(other["user_id"]) & set(events["user_id"])


def test_consumables_are_bought_again(events: pd.DataFrame) -> None:
    buys = events[events["event_type"] == "purchase"]
    repeat = buys.groupby(["user_id", "item_id"])["batch"].nunique()
    assert (repeat >= 2).sum() >= 3


def test_complementary_items_co_occur_far_above_chance(events: pd.DataFrame) -> None:
    catalogue = build_world(CONFIG).catalogue
    ids = catalogue.item_ids
    pairs = [
        (ids[a], ids[b])
        for a in range(catalogue.n_items)
        for b in catalogue.complements[a, : catalogue.n_complements[a]]
    ]
    rng = np.random.default_rng(0)
    random_pairs = [
        (ids[a], ids[b]) for a, b in rng.integers(0, catalogue.n_items, (len(pairs), 2)) if a != b
    ]
    baskets = events.groupby("session_id")["item_id"].agg(lambda s: frozenset(s))
    n_sessions = len(baskets)
    item_sessions: dict[str, int] = {}
    pair_sessions: dict[tuple[str, str], int] = {}
    wanted = set(pairs) | set(random_pairs)
    for basket in baskets:
        for item in basket:
            item_sessions[item] = item_sessions.get(item, 0) + 1
        for pair in wanted:
            if pair[0] in basket and pair[1] in basket:
                pair_sessions[pair] = pair_sessions.get(pair, 0) + 1

    def lift(candidates: list[tuple[str, str]]) -> float:
        observed = sum(pair_sessions.get(p, 0) for p in candidates)
        expected = sum(item_sessions.get(a, 0) * item_sessions.get(b, 0) for a, b in candidates) / n_sessions
        return observed / max(expected, 1e-9)

    assert lift(pairs) > 4.0
    assert lift(pairs) > 3 * lift(random_pairs)


def test_mission_chains_follow_the_templates_and_depend_on_the_root_item() -> None:
    from pipelines.datasets.synthetic_catalog import MISSION_TEMPLATES

    catalogue = build_world(CONFIG).catalogue
    names = list(catalogue.category_names)
    roots = np.flatnonzero(catalogue.n_mission_steps > 0)
    assert len(roots) > 0.1 * catalogue.n_items
    chains = {t[0]: [names.index(c) for c in t if c in names][1:] for t in reversed(MISSION_TEMPLATES)}
    for root in roots[:200]:
        steps = catalogue.mission_items[root, : catalogue.n_mission_steps[root]]
        expected = chains[names[catalogue.item_category[root]]]
        assert catalogue.item_category[steps].tolist() == expected[: len(steps)]
        assert (catalogue.mission_items[root, len(steps) :] == -1).all()
    # the step item depends on the root: roots of one category ask for different items
    first_steps = {int(catalogue.mission_items[r, 0]) for r in roots}
    assert len(first_steps) > 0.2 * len(roots)


def test_missions_unfold_step_by_step_over_later_days(events: pd.DataFrame) -> None:
    """After clicking a root item, a shopper clicks *its* first step item on a later day, then the second."""
    catalogue = build_world(CONFIG).catalogue
    index = {item_id: i for i, item_id in enumerate(catalogue.item_ids)}
    clicks = events[events["event_type"] == "click"]
    first_click = clicks.groupby(["user_id", "item_id"])["ts"].min()
    per_user: dict[str, dict[int, pd.Timestamp]] = {}
    for user, item, ts in first_click.reset_index().itertuples(index=False):
        per_user.setdefault(str(user), {})[index[str(item)]] = ts
    roots = np.flatnonzero(catalogue.n_mission_steps >= 2)
    # control: the first step of another root of the same category (same category, wrong root)
    control: dict[int, int] = {}
    for candidate in roots:
        others = roots[(catalogue.item_category[roots] == catalogue.item_category[candidate])]
        other = others[(np.searchsorted(others, candidate) + 1) % len(others)]
        control[int(candidate)] = int(catalogue.mission_items[other, 0])
    started = followed = in_order = by_chance = 0
    for items in per_user.values():
        for root in [i for i in items if catalogue.n_mission_steps[i] >= 2]:
            step1, step2 = (int(x) for x in catalogue.mission_items[root, :2])
            started += 1
            later = items[root].date()
            by_chance += (
                control[root] != step1 and control[root] in items and items[control[root]].date() > later
            )
            if step1 in items and items[step1].date() > later:
                followed += 1
                in_order += step2 in items and items[step2].date() > items[step1].date()
    assert started > 100
    assert followed > 0.2 * started and followed > 4 * by_chance, (started, followed, by_chance)
    assert in_order > 0.3 * followed, (followed, in_order)


def test_the_next_item_depends_on_the_previous_one(
    events: pd.DataFrame, days: list[tuple[date, pd.DataFrame, pd.DataFrame]]
) -> None:
    """An order-aware signal: "next given last item" beats "popular in the last item's category"."""
    from pipelines.datasets.sequence_signal import next_item_baselines
    from pipelines.features import build_features
    from pipelines.params import FeatureParams

    fs = build_features(events.drop(columns="batch"), days[-1][2], FeatureParams(protocol="loo"))
    scores = next_item_baselines(fs)
    assert scores["markov"].n_users > 500
    assert scores["markov"].ndcg > 1.2 * scores["category_popular"].ndcg  # 0.247 vs 0.192 on this data
    assert scores["category_popular"].ndcg > scores["popular"].ndcg


def test_daily_and_weekly_seasonality(events: pd.DataFrame) -> None:
    hours = events["ts"].dt.hour.value_counts()
    assert hours.loc[[19, 20, 21]].mean() > 3 * hours.loc[[2, 3, 4]].mean()
    per_day = events.groupby("batch").size()
    weekend = [d.weekday() >= 5 for d in per_day.index]
    assert per_day[weekend].mean() > per_day[[not w for w in weekend]].mean()


def test_bad_config_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecopsError, match="users"):
        generate_dataset(replace(CONFIG, users=0), tmp_path, KEY)
    with pytest.raises(RecopsError, match="seed"):
        generate_dataset(replace(CONFIG, seed=-1), tmp_path, KEY)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RecopsError, match="not a folder"):
        generate_dataset(CONFIG, blocker, KEY)


def test_tiny_shop_still_works(tmp_path: Path) -> None:
    summary = generate_dataset(
        GeneratorConfig(days=3, users=5, items=3, seed=1, start=date(2026, 1, 1)), tmp_path, KEY
    )
    assert summary.days == 3
    assert summary.items <= 3
    for folder in tmp_path.iterdir():
        ev = pd.read_parquet(folder / "events.parquet")
        cat = pd.read_parquet(folder / "catalog.parquet")
        assert set(ev["item_id"]) <= set(cat["item_id"])


def test_cli_writes_daily_folders_and_summary(tmp_path: Path) -> None:
    from pipelines.cli import app

    out = tmp_path / "landing"
    args = ["data", "generate", "--out", str(out), "--days", "2", "--users", "150", "--items", "80"]
    result = CliRunner().invoke(app, [*args, "--seed", "3", "--start", "2026-05-01"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["2026-05-01", "2026-05-02"]
    assert "generated 2 day(s)" in result.output and str(out) in result.output
    assert (out / "2026-05-02" / "events.parquet").is_file()


def test_cli_rejects_bad_options(tmp_path: Path) -> None:
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["data", "generate", "--out", str(tmp_path), "--days", "0"])
    assert isinstance(result.exception, RecopsError)
    assert "days" in str(result.exception)
    result = CliRunner().invoke(app, ["data", "generate", "--out", str(tmp_path), "--start", "2026-13-01"])
    assert isinstance(result.exception, RecopsError)
    assert not any(tmp_path.iterdir())
