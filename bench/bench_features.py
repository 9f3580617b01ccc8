"""Benchmark the features step on a large synthetic event table.

Builds a schema-typed events frame with numpy (popularity-skewed items, repeats and bursts so deduplication
and sessions have work to do), then times ``build_features`` and ``write_features`` and prints wall times
and the process's peak resident memory.

    .venv/bin/python bench/bench_features.py                 # 10M events
    .venv/bin/python bench/bench_features.py --events 500000
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core.schema import EVENT_TYPES
from pipelines.features import build_features, write_features
from pipelines.params import FeatureParams


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_catalog(n_items: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = pd.array([f"item{i:07d}" for i in range(n_items)], dtype="string")
    return pd.DataFrame(
        {
            "item_id": ids,
            "category": pd.array([f"cat{c}" for c in rng.integers(0, 50, n_items)], dtype="string"),
            "brand": pd.array([f"brand{b}" for b in rng.integers(0, 400, n_items)], dtype="string"),
            "price": np.round(rng.lognormal(3, 1, n_items), 2),
            "in_stock": rng.random(n_items) > 0.05,
            "created_at": pd.Series(pd.Timestamp("2025-01-01", tz="UTC"), index=range(n_items)).astype(
                "datetime64[us, UTC]"
            ),
        }
    )


def synthetic_events(n: int, n_users: int, n_items: int, days: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` events over ``days`` days; a few percent point at unknown items or repeat the previous row."""
    start_us = int(pd.Timestamp("2026-01-01", tz="UTC").value // 1000)
    ts = start_us + np.sort(rng.integers(0, days * 86_400 * 1_000_000, n))
    users = rng.zipf(1.3, n) % n_users
    items = rng.zipf(1.2, n) % (n_items + n_items // 50)  # about 2% unknown item ids
    types = rng.choice(len(EVENT_TYPES), n, p=[0.7, 0.2, 0.07, 0.03])
    repeat = rng.random(n) < 0.03  # copy the previous row one second later: a repeat to merge
    idx = np.arange(n)
    src = np.where(repeat, np.maximum(idx - 1, 0), idx)
    users, items, types = users[src], items[src], types[src]
    ts = np.where(repeat, ts[src] + 1_000_000, ts)

    def labels(prefix: str, codes: np.ndarray, width: int, count: int) -> pd.Series:
        pool = pd.Index([f"{prefix}{i:0{width}d}" for i in range(count)], dtype="string")
        return pd.Series(pool.take(codes), dtype="string")

    return pd.DataFrame(
        {
            "event_id": pd.Series(np.arange(n)).astype(str).astype("string"),
            "user_id": labels("user", users, 8, n_users),
            "item_id": labels("item", items, 7, n_items + n_items // 50),
            "event_type": pd.Series(pd.Categorical.from_codes(types, list(EVENT_TYPES))).astype("string"),
            "ts": pd.Series(pd.to_datetime(ts, unit="us", utc=True)).astype("datetime64[us, UTC]"),
            "session_id": pd.Series(pd.NA, index=range(n), dtype="string"),
            "price": np.full(n, np.nan),
            "quantity": pd.Series(pd.NA, index=range(n), dtype="Int64"),
            "batch_id": pd.Series("bench", index=range(n), dtype="string"),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=300_000)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="skip timing write_features")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    catalog = synthetic_catalog(args.items, rng)
    events = synthetic_events(args.events, args.users, args.items, args.days, rng)
    print(f"input: {len(events):,} events, {args.items:,} items in {time.perf_counter() - t0:.1f} s; "
          f"RSS so far {peak_rss_mb():,.0f} MiB")  # fmt: skip
    t0 = time.perf_counter()
    fs = build_features(events, catalog, FeatureParams())
    build_s = time.perf_counter() - t0
    print(f"build_features: {build_s:.1f} s; peak RSS {peak_rss_mb():,.0f} MiB")
    s = fs.summary
    print(
        f"  events out {s['events_out']:,} (repeats merged {s['dropped_repeat']:,}, unknown items "
        f"{s['dropped_unknown_item']:,}); users {s['users']:,}; sessions {s['sessions']:,}; "
        f"train/valid/test {s['temporal']['train']:,}/{s['temporal']['valid']:,}/{s['temporal']['test']:,}"
    )
    if not args.no_write:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            write_features(fs, Path(tmp))
            size = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
            print(f"write_features: {time.perf_counter() - t0:.1f} s, {size:,.0f} MiB on disk; "
                  f"peak RSS {peak_rss_mb():,.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
