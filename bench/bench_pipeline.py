"""Benchmark the orchestration overheads that tests do not assert: the gate per batch and a no-op repro.

1. The validation gate: generates ``--days`` synthetic daily batches into a scratch folder and times
   ``validate_batch`` on each (the first call pays the Great Expectations import; the median is the warm
   per-batch cost).
2. A no-op ``dvc repro`` in the project (after ``make demo``, when everything is up to date): the fixed cost a
   scheduler pays to learn there is nothing to do.

    .venv/bin/python bench/bench_pipeline.py               # 7 batches of the default shop, 3 no-op repros
    .venv/bin/python bench/bench_pipeline.py --days 3 --repros 0
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def bench_gate(days: int) -> None:
    from core.settings import get_settings
    from pipelines.datasets import GeneratorConfig, generate_dataset
    from pipelines.params import GenerateParams, load_params
    from pipelines.validate import validate_batch

    settings = get_settings()
    params = load_params(settings.params_file)
    config = GeneratorConfig.from_params(
        GenerateParams.model_validate({**params.generate.model_dump(), "days": days})
    )
    with tempfile.TemporaryDirectory(prefix="bench-gate-") as scratch:
        root = Path(scratch)
        generate_dataset(config, root / "landing", settings.pseudonymization_key.get_secret_value())
        batches = sorted(p for p in (root / "landing").iterdir() if p.is_dir())
        times: list[float] = []
        for batch in batches:
            now = datetime.fromisoformat(batch.name).replace(tzinfo=UTC) + timedelta(days=1)
            started = time.perf_counter()
            report = validate_batch(
                batch,
                data_dir=root / "data",
                quarantine_dir=root / "quarantine",
                params=params.validation,
                now=now,
            )
            times.append(time.perf_counter() - started)
            if not report.success:
                sys.exit(f"batch {batch.name} failed the gate: {report.failures}")
    warm = times[1:] or times
    print(
        f"gate: {len(times)} batches, first {times[0]:.2f} s (GX import), "
        f"median warm {statistics.median(warm):.2f} s, max warm {max(warm):.2f} s"
    )


def bench_noop_repro(repros: int) -> None:
    dvc = Path(sys.executable).parent / "dvc"
    status = subprocess.run([str(dvc), "status"], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if "up to date" not in status.stdout:
        print("no-op repro: skipped (the pipeline is not up to date here; run `make demo` first)")
        return
    times = []
    for _ in range(repros):
        started = time.perf_counter()
        subprocess.run([str(dvc), "repro"], cwd=REPO_ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    print(f"no-op dvc repro: {repros} runs, median {statistics.median(times):.2f} s, max {max(times):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=7, help="synthetic daily batches to validate")
    parser.add_argument("--repros", type=int, default=3, help="no-op `dvc repro` runs (0: skip)")
    args = parser.parse_args()
    if args.days > 0:
        bench_gate(args.days)
    if args.repros > 0:
        bench_noop_repro(args.repros)


if __name__ == "__main__":
    main()
