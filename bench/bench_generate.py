"""Scale benchmark of the synthetic generator: about 10M events written as daily parquet batches.

Usage::

    .venv/bin/python bench/bench_generate.py                      # ~10M events, 60 days, 50k items
    .venv/bin/python bench/bench_generate.py --target-events 2e6  # smaller
    .venv/bin/python bench/bench_generate.py --users 150000       # skip the pilot, fix the user count

A short in-process pilot (no files) measures events per user for the chosen days and items, then the real
run happens in a child process writing into a temporary folder; the figures are its wall time, events per
second and peak RSS (``ru_maxrss`` of the child). Targets: <= 120 s and <= 4 GB on 2 cores.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-events", type=float, default=10e6)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--items", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=0, help="fix the user count (skips the pilot)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default="", help="write here (kept) instead of a temporary folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
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
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    print(f"machine: {os.cpu_count()} CPUs ({cpu_model()}), python {platform.python_version()}")
    print(
        f"config: days={args.days} users={args.users:,} items={args.items:,} seed={args.seed} "
        f"-> events={result['events']:,} active_users={result['users']:,} catalogue={result['items']:,}"
    )
    print(
        f"wall={wall:.1f}s events/s={result['events'] / wall:,.0f} peak_rss={peak_kb / 1024:,.0f} MiB "
        f"parquet={size / 2**20:,.0f} MiB"
    )


if __name__ == "__main__":
    main()
