"""Benchmark the baseline model families: fit time, batch scoring time, peak memory, next-item hit rate.

Every family is fitted with its ``params.yaml`` defaults on the interactions minus each user's last event,
then scores the histories of up to ``--users`` users (``recommend(k=20)``) and checks whether the held-out
last item is in the list (HR@20: a sanity figure, not the evaluation stage). Timings depend on the machine
and on what else runs on it; peak RSS is the whole process's so far. ``1-user ms`` is the median latency of
``recommend`` for a single history (the serving path).

    .venv/bin/python bench/bench_models.py          # synthetic: 500k events, 6k users, 2.5k items
    .venv/bin/python bench/bench_models.py --items 50000 --users-total 40000
    .venv/bin/python bench/bench_models.py --dataset completejourney   # 1.47M real purchases, 68k products
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from models import create_model
from models.base import FitContext, IntArray, Interactions
from models.threads import limit_threads
from pipelines.params import load_params

SHARED_DATA = Path(
    os.environ.get(
        "RECOPS_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "raw"
    )
)
DAY = 86_400


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic(n: int, n_users: int, n_items: int, days: int, seed: int) -> Interactions:
    """Users with a taste for one of 50 item clusters, Zipf-skewed items, sessions of a few events."""
    rng = np.random.default_rng(seed)
    n_clusters = 50
    user_cluster = rng.integers(0, n_clusters, n_users)
    users = (rng.zipf(1.5, n) - 1) % n_users
    in_taste = rng.random(n) < 0.7
    rank = (rng.zipf(1.3, n) - 1) % max(n_items // n_clusters, 1)
    taste_items = (user_cluster[users] + rank * n_clusters) % n_items
    items = np.where(in_taste, taste_items, (rng.zipf(1.2, n) - 1) % n_items)
    ts = np.sort(rng.integers(0, days * DAY, n)) + 1_767_225_600
    weights = rng.choice(np.array([1.0, 2.0, 4.0, 8.0], dtype=np.float32), n, p=[0.7, 0.2, 0.07, 0.03])
    _, sessions = np.unique(users * (days * 6) + (ts // (DAY // 6)), return_inverse=True)
    return Interactions(users, items, weights, ts, sessions.astype(np.int64), n_users, n_items)


def completejourney(root: Path) -> Interactions:
    """Grocery purchases: household = user, basket = session, product = item, weight 1."""
    import pandas as pd

    path = root / "completejourney" / "transactions.parquet"
    table = pd.read_parquet(
        path, columns=["household_id", "basket_id", "product_id", "transaction_timestamp"]
    )
    table = table.sort_values("transaction_timestamp", kind="stable")
    users, _ = pd.factorize(table["household_id"])
    items, item_ids = pd.factorize(table["product_id"])
    sessions, _ = pd.factorize(table["basket_id"])
    ts = table["transaction_timestamp"].astype("datetime64[s]").astype(np.int64).to_numpy()
    return Interactions(
        users.astype(np.int64),
        items.astype(np.int64),
        np.ones(len(table), dtype=np.float32),
        np.asarray(ts, dtype=np.int64),
        sessions.astype(np.int64),
        int(users.max()) + 1,
        len(item_ids),
    )


def hold_out_last(data: Interactions) -> tuple[Interactions, IntArray]:
    """Training data without each user's last event, and that last item per user (-1: none held out)."""
    last = np.full(data.n_users, -1, dtype=np.int64)
    last[data.user_idx] = np.arange(len(data))  # ts-sorted, so the last write per user wins
    held = last[last >= 0]
    keep = np.ones(len(data), dtype=bool)
    # Only hold out for users with at least two events, so every tested user keeps a history.
    counts = np.bincount(data.user_idx, minlength=data.n_users)
    held = held[counts[data.user_idx[held]] >= 2]
    keep[held] = False
    target = np.full(data.n_users, -1, dtype=np.int64)
    target[data.user_idx[held]] = data.item_idx[held]
    train = Interactions(
        data.user_idx[keep], data.item_idx[keep], data.weight[keep], data.ts[keep], data.session_idx[keep],
        data.n_users, data.n_items,
    )  # fmt: skip
    return train, target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["synthetic", "completejourney"], default="synthetic")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users-total", type=int, default=6_000)
    parser.add_argument("--items", type=int, default=2_500)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--users", type=int, default=2_000, help="users scored per family")
    parser.add_argument("--families", nargs="*", default=None, help="default: train.families of params.yaml")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    t0 = time.perf_counter()
    if args.dataset == "completejourney":
        data = completejourney(SHARED_DATA)
    else:
        data = synthetic(args.events, args.users_total, args.items, args.days, args.seed)
    train, target = hold_out_last(data)
    histories = train.histories()
    test_users = np.flatnonzero(target >= 0)
    test_users = np.random.default_rng(args.seed).permutation(test_users)[: args.users]
    batch = [histories[u] for u in test_users]
    print(f"{args.dataset}: {len(data):,} events, {data.n_users:,} users, {data.n_items:,} items "
          f"(prepared in {time.perf_counter() - t0:.1f} s); scoring {len(batch):,} users")  # fmt: skip

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml").train  # sasrec included
    families = args.families or list(params.families)
    threads = limit_threads()  # once per process, as the train step does (BLAS: one thread)
    ctx = FitContext(seed=args.seed, threads=threads)
    header = f"{'family':<18}{'fit s':>8}{'score s':>9}{'ms/user':>9}{'1-user ms':>11}{'HR@20':>8}"
    print(f"{header}{'peak RSS MiB':>14}")
    for family in families:
        model = create_model(family, params.config(family))
        t0 = time.perf_counter()
        model.fit(train, ctx=ctx)
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ids, _ = model.recommend(batch, k=20)
        score_s = time.perf_counter() - t0
        single = []
        for history in batch[:50]:  # the serving path: one user per call
            t1 = time.perf_counter()
            model.recommend([history], k=20)
            single.append(time.perf_counter() - t1)
        hits = float(np.mean([target[u] in row for u, row in zip(test_users, ids, strict=True)]))
        print(f"{family:<18}{fit_s:>8.2f}{score_s:>9.2f}{1000 * score_s / max(len(batch), 1):>9.2f}"
              f"{1000 * float(np.median(single)):>11.2f}{hits:>8.3f}{peak_rss_mb():>14,.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
