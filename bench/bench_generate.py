"""Scale benchmark of the synthetic generator: about 10M events written as daily parquet batches.

Usage::

    .venv/bin/python bench/bench_generate.py                      # ~10M events, 60 days, 50k items
    .venv/bin/python bench/bench_generate.py --target-events 2e6  # smaller
    .venv/bin/python bench/bench_generate.py --users 150000       # skip the pilot, fix the user count

A short in-process pilot (no files) measures events per user for the chosen days and items, then the real
run happens in a child process writing into a temporary folder; the figures are its wall time, events per
second and peak RSS (``ru_maxrss`` of the child). Targets: <= 120 s and <= 4 GB on 2 cores.

``--sequence-signal`` instead generates the default dataset of params.yaml ``generate:`` in memory, builds
its leave-one-out features and prints the next-item baselines of
:mod:`pipelines.datasets.sequence_signal` (is there an order-aware signal for a sequence model?)::

    .venv/bin/python bench/bench_generate.py --sequence-signal
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipelines.datasets import GeneratorConfig, generate_batches, generate_dataset  # noqa: E402

PILOT_USERS = 10_000
KEY = "bench-generate-key"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def pilot_events_per_user(days: int, items: int, seed: int) -> float:
    config = GeneratorConfig(days=days, users=PILOT_USERS, items=items, seed=seed, start=date(2026, 1, 1))
    events = sum(len(batch.events) for batch in generate_batches(config, KEY))
    return events / PILOT_USERS


def child(args: argparse.Namespace) -> None:
    config = GeneratorConfig(
        days=args.days, users=args.users, items=args.items, seed=args.seed, start=date(2026, 1, 1)
    )
    summary = generate_dataset(config, Path(args.out), KEY)
    print(json.dumps({"events": summary.events, "users": summary.users, "items": summary.items}))


def sequence_signal() -> None:
    """Print the next-item baselines on the default generated data under leave-one-out."""
    import pandas as pd

    from pipelines.datasets.sequence_signal import next_item_baselines
    from pipelines.features import build_features
    from pipelines.params import load_params

    params = load_params(REPO / "params.yaml")
    config = GeneratorConfig.from_params(params.generate)
    started = time.perf_counter()
    batches = list(generate_batches(config, KEY))
    events = pd.concat([b.events for b in batches], ignore_index=True)
    features = params.features.model_copy(update={"protocol": "loo"})
    fs = build_features(events, batches[-1].catalog, features)
    print(
        f"default data: {config.days} days, {config.users:,} users, {config.items:,} items, "
        f"seed={config.seed} -> {len(fs.events):,} events after cleaning "
        f"({time.perf_counter() - started:.1f} s); "
        f"leave-one-out test targets = each user's last interaction item"
    )
    for score in next_item_baselines(fs).values():
        print(score.line())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-events", type=float, default=10e6)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=0, help="fix the user count (skips the pilot)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="", help="write here (kept) instead of a temporary folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sequence-signal", action="store_true", help="print next-item baselines on the default data instead"
    )
    args = parser.parse_args()
    if args.sequence_signal:
        sequence_signal()
        return
    if args.child:
        child(args)
        return

    if not args.users:
        per_user = pilot_events_per_user(args.days, args.items, args.seed)
        args.users = max(1, round(args.target_events / per_user))
        print(f"pilot: {per_user:.1f} events per user over {args.days} days -> {args.users:,} users")
    with tempfile.TemporaryDirectory(prefix="bench-generate-") as tmp:
        out = args.out or tmp
        command = [
            sys.executable, __file__, "--child", "--out", out, "--days", str(args.days),
            "--users", str(args.users), "--items", str(args.items), "--seed", str(args.seed),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
        wall = time.perf_counter() - started
        size = sum(p.stat().st_size for p in Path(out).rglob("*.parquet"))
    result = json.loads(done.stdout.strip().splitlines()[-1])
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kb = usage.ru_maxrss  # KiB on Linux
    cpu_s = usage.ru_utime + usage.ru_stime  # the child's CPU time: what the wall time is on an idle core
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), python {platform.python_version()}")
    print(
        f"config: days={args.days} users={args.users:,} items={args.items:,} seed={args.seed} "
        f"-> events={result['events']:,} active_users={result['users']:,} catalogue={result['items']:,}"
    )
    print(
        f"wall={wall:.1f}s cpu={cpu_s:.1f}s events/s={result['events'] / wall:,.0f} "
        f"peak_rss={peak_kb / 1024:,.0f} MiB "
        f"parquet={size / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
