"""Serving latency of the sequential transformer: one shopper's top-10 from a live event sequence, in-process.

Builds a ``sasrec`` model over a synthetic catalogue of ``--items`` items (default 100,000) with the
params.yaml ``train.sasrec`` architecture, fits it for one quick epoch (the weights' values do not change the
cost of scoring), then times ``recommend([history], k=10)`` for ``--requests`` single requests whose history
is ``--history`` events long (default 50, the model's ``max_len``), the path the scorer takes. Prints p50,
p90, p99 and max in milliseconds, and the same for ``score`` alone (the encoder plus the dot products).

    .venv/bin/python bench/bench_sasrec_latency.py
    .venv/bin/python bench/bench_sasrec_latency.py --items 10000 --torch-threads 1

Target (issue 13): p99 <= 5 ms for 100k items on the 2-core CPU machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from models import create_model
from models.base import FitContext, Interactions
from pipelines.params import load_params

REPO = Path(__file__).resolve().parents[1]


def synthetic_sequences(n_users: int, n_items: int, length: int, seed: int) -> Interactions:
    """``n_users`` users with ``length`` random events each over ``n_items`` items (Zipf-skewed)."""
    rng = np.random.default_rng(seed)
    n = n_users * length
    items = (rng.zipf(1.2, n) - 1) % n_items
    users = np.repeat(np.arange(n_users), length)
    ts = 1_767_225_600 + np.tile(np.arange(length), n_users) * 60 + users
    order = np.argsort(ts, kind="stable")
    return Interactions(
        users[order].astype(np.int64), items[order].astype(np.int64), np.ones(n, np.float32),
        ts[order].astype(np.int64), users[order].astype(np.int64), n_users, n_items,
    )  # fmt: skip


def percentiles(samples: list[float]) -> str:
    ms = 1000 * np.asarray(samples)
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return f"p50={p50:.2f} ms p90={p90:.2f} ms p99={p99:.2f} ms max={ms.max():.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2_000)
    parser.add_argument("--torch-threads", type=int, default=0, help="0: torch's default")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import torch

    params = load_params(REPO / "params.yaml")
    hyper = {**params.train.family_params("sasrec"), "max_epochs": 1, "loss": "sampled_ce"}
    data = synthetic_sequences(200, args.items, args.history + 1, args.seed)
    t0 = time.perf_counter()
    model = create_model("sasrec", hyper).fit(data, ctx=FitContext(seed=args.seed, threads=1))
    fit_s = time.perf_counter() - t0
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    rng = np.random.default_rng(args.seed + 1)
    histories = [rng.integers(0, args.items, args.history) for _ in range(args.requests)]
    for history in histories[:20]:  # warm-up: first calls allocate and cache the item vectors
        model.recommend([history], k=10)
    recommend_s, score_s = [], []
    cpu0 = time.process_time()
    for history in histories:
        t1 = time.perf_counter()
        model.recommend([history], k=10)
        recommend_s.append(time.perf_counter() - t1)
    recommend_cpu_ms = 1000 * (time.process_time() - cpu0) / len(histories)
    cpu0 = time.process_time()
    for history in histories:
        t1 = time.perf_counter()
        model.score([history])
        score_s.append(time.perf_counter() - t1)
    score_cpu_ms = 1000 * (time.process_time() - cpu0) / len(histories)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    print(f"items={args.items:,} history={args.history} requests={args.requests:,} "
          f"torch_threads={torch.get_num_threads()} nproc={os.cpu_count()} cpu={cpu!r} "
          f"load_avg={os.getloadavg()[0]:.1f} date={time.strftime('%Y-%m-%d')}")  # fmt: skip
    print(f"model: hidden={hyper['hidden_size']} blocks={hyper['num_blocks']} heads={hyper['num_heads']} "
          f"max_len={hyper['max_len']} (one quick epoch, {fit_s:.1f} s)")  # fmt: skip
    # CPU ms per request (all threads): what a quiet machine's wall time would be with one thread.
    print(f"recommend([history], k=10): {percentiles(recommend_s)} cpu={recommend_cpu_ms:.2f} ms/request")
    print(f"score([history]):           {percentiles(score_s)} cpu={score_cpu_ms:.2f} ms/request")


if __name__ == "__main__":
    main()
