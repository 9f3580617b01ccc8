"""Side by side: our SASRec against RecTools' and RecBole's, on one split, one machine, one metric.

    .venv/bin/python bench/compare_sasrec/driver.py --dataset movielens100k
    .venv/bin/python bench/compare_sasrec/driver.py --dataset beauty --max-epochs 3 --patience 3

1. **Split, once**: the dataset is loaded with the project's loader and split by the project's
   leave-one-out (``build_features``, ``protocol: loo``); the split is written to ``--work`` as
   ``split.npz`` (numpy only, read by every runner through :mod:`common`) and, for RecBole, as an atomic
   ``.inter`` file whose timestamps are the positions in each user's sequence (RecBole's own leave-one-out,
   ``LS: valid_and_test`` on time order, then cuts exactly the same train / valid / test).
2. **One runner per library, each in its own interpreter** (``run_recops.py`` in this venv,
   ``run_rectools.py`` and ``run_recbole.py`` in theirs, ``--python-rectools`` / ``--python-recbole``):
   the same architecture (:data:`common.ARCHITECTURE`: hidden 64, 2 blocks, 1 head, feed-forward 64,
   max_len 50, dropout 0.2, batch 128, Adam lr 1e-3, full softmax cross-entropy), the same torch thread
   count, and the same early stopping (validation NDCG@10 on the same seeded validation users, seen items
   filtered, best epoch's weights kept, ``--patience`` epochs without progress end it). Each library
   trains the way it does natively: ours on every item as a target once per epoch (windows of
   ``max_len + 1``), RecBole on every prefix as one sample (the same targets, one forward pass each),
   RecTools on each user's last ``max_len + 1`` items; ``recops-last`` is ours on RecTools' sequences.
   ``recops-stride`` is ours with overlapping windows (one ends every ``STRIDE`` items, so every target
   sees at least ``max_len - STRIDE`` items before it, like RecBole's prefixes; each target still once).
3. **One metric**: each runner hands back its test top-10 (seen filtered); this driver scores all of them
   with :func:`common.ndcg_at_10` and prints one table, with the load average before and after each run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # the comparison's shared module, next to this file

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LIBRARIES = ("recops", "recops-last", "recops-stride", "rectools", "recbole")
#: ``recops-stride``: ours with overlapping windows ending every this many items (every target sees at least
#: ``max_len - STRIDE`` items before it, as RecBole's prefixes do, each target still once per epoch).
STRIDE = 10


def prepare(
    dataset: str, work: Path, valid_max_users: int, seed: int, max_users: int | None = None
) -> common.Split:
    """Write ``split.npz`` and RecBole's atomic file under ``work`` (kept when they exist).

    ``max_users``: keep a seeded sample of that many users, and only the items they have (re-indexed), so
    every library's softmax spans the same items (the catalogue of the sample).
    """
    path = work / "split.npz"
    if path.exists():
        return common.load_split(path)
    sys.path.insert(0, str(REPO))
    from bench.bench_quality import load_dataset
    from pipelines.features import build_features
    from pipelines.params import load_params

    params = load_params(REPO / "params.yaml")
    events, catalog = load_dataset(dataset, params)
    fs = build_features(events, catalog, params.features.model_copy(update={"protocol": "loo"}))
    train = [np.asarray(h, dtype=np.int64) for h in fs.histories("train", "loo")]
    valid_item = np.full(fs.n_users, -1, dtype=np.int64)
    test_item = np.full(fs.n_users, -1, dtype=np.int64)
    held_out: tuple[tuple[common.IntArray, Literal["valid", "test"]], ...]
    held_out = ((valid_item, "valid"), (test_item, "test"))
    for target, split in held_out:
        for user, items in enumerate(fs.histories(split, "loo")):
            if len(items):
                target[user] = items[-1]  # one interaction: all of its events are on one item
    n_items = fs.n_items
    if max_users is not None and max_users < fs.n_users:
        users = np.sort(np.random.default_rng(seed).choice(fs.n_users, max_users, replace=False))
        train = [train[u] for u in users]
        valid_item, test_item = valid_item[users], test_item[users]
        used = np.unique(np.concatenate([*train, valid_item[valid_item >= 0], test_item[test_item >= 0]]))
        new_index = np.full(n_items, -1, dtype=np.int64)
        new_index[used] = np.arange(len(used))
        train = [new_index[s] for s in train]
        valid_item = np.where(valid_item >= 0, new_index[np.maximum(valid_item, 0)], -1)
        test_item = np.where(test_item >= 0, new_index[np.maximum(test_item, 0)], -1)
        n_items = len(used)
    split_data = common.save_split(path, n_items, train, valid_item, test_item, valid_max_users, seed)
    write_recbole_atomic(split_data, work / "recbole" / "cmp" / "cmp.inter")
    return split_data


def write_recbole_atomic(split: common.Split, path: Path) -> None:
    """Every interaction of the split, timestamp = position in the user's sequence (train, valid, test)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for user, train in enumerate(split.train):
        sequence = [int(i) for i in train]
        sequence += [int(i) for i in (split.valid_item[user], split.test_item[user]) if i >= 0]
        lines += [f"{user}\t{item}\t{pos}" for pos, item in enumerate(sequence)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def runner_command(library: str, args: argparse.Namespace, split: Path, out: Path) -> list[str]:
    """The command line of one library's runner."""
    common_args = ["--split", str(split), "--out", str(out), "--threads", str(args.threads)]
    common_args += ["--max-epochs", str(args.max_epochs), "--patience", str(args.patience)]
    common_args += ["--seed", str(args.seed)]
    if library in ("recops", "recops-last", "recops-stride"):
        windows = "1" if library == "recops-last" else "0"
        stride = str(STRIDE) if library == "recops-stride" else "0"
        options = (["--cpu-bf16"] if args.cpu_bf16 else []) + (["--compile"] if args.compile else [])
        return [sys.executable, str(HERE / "run_recops.py"), *common_args, "--name", library,
                "--windows-per-user", windows, "--window-stride", stride, *options]  # fmt: skip
    if library == "rectools":
        bf16 = ["--cpu-bf16"] if args.cpu_bf16 else []
        return [args.python_rectools, str(HERE / "run_rectools.py"), *common_args, *bf16]
    return [args.python_recbole, str(HERE / "run_recbole.py"), *common_args,
            "--atomic-dir", str(split.parent / "recbole")]  # fmt: skip


def summarise(library: str, split: common.Split, out: Path) -> dict[str, Any]:
    """One table row: the runner's epoch figures and the test metrics of its top-10 (shared function)."""
    info = json.loads((out / f"{library}.json").read_text(encoding="utf-8"))
    with np.load(out / f"{library}.npz") as data:
        users, top = data["test_users"], data["test_top"]
    if not np.array_equal(users, split.test_users):
        raise SystemExit(f"{library}: its test users are not the split's")
    target = split.test_item[users]
    ndcg = common.ndcg_at_10(top, target)
    epochs = info["epochs"]
    train_s = np.array([e["train_s"] for e in epochs])
    cpu_s = np.array([e["train_cpu_s"] for e in epochs])
    return {
        "library": library,
        "version": info["library_version"],
        "sequences": int(np.median([e["sequences"] for e in epochs])),
        "targets": info["targets_per_epoch"],
        "epoch_s": float(np.median(train_s)),
        "epoch_cpu_s": float(np.median(cpu_s)),
        "epochs": len(epochs),
        "best_epoch": info["best_epoch"],
        "to_best_s": float(train_s[: info["best_epoch"]].sum()),
        "to_best_cpu_s": float(cpu_s[: info["best_epoch"]].sum()),
        "load": float(np.mean([e["load_1min"] for e in epochs])),
        "valid_ndcg": info["best_valid_ndcg_at_10"],
        "ndcg": float(ndcg.mean()),
        "ndcg_ci": common.bootstrap_ci(ndcg),
        "hr": float(common.hit_rate_at_10(top, target).mean()),
        "fit_wall_s": info["fit_wall_s"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    """The rows as markdown."""
    head = ["library", "sequences / epoch", "targets / epoch", "wall s / epoch", "CPU s / epoch",
            "sequences / CPU s", "targets / CPU s", "epochs (best)", "CPU s to best", "load (1 min)",
            "valid NDCG@10", "test NDCG@10 [95% CI]", "HR@10"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([
            f"{r['library']} ({r['version']})", f"{r['sequences']:,}", f"{r['targets']:,}",
            f"{r['epoch_s']:.2f}", f"{r['epoch_cpu_s']:.2f}", f"{r['sequences'] / r['epoch_cpu_s']:,.0f}",
            f"{r['targets'] / r['epoch_cpu_s']:,.0f}", f"{r['epochs']} ({r['best_epoch']})",
            f"{r['to_best_cpu_s']:.0f}", f"{r['load']:.1f}", f"{r['valid_ndcg']:.4f}",
            f"{r['ndcg']:.4f} [{r['ndcg_ci'][0]:.4f}, {r['ndcg_ci'][1]:.4f}]", f"{r['hr']:.4f}",
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]]) -> list[str]:
    """Ours against each other library: epoch time (CPU and wall), time to the best epoch, test NDCG."""
    by = {r["library"]: r for r in rows}
    out: list[str] = []
    for ours in ("recops", "recops-last", "recops-stride"):
        for other in ("rectools", "recbole"):
            if ours in by and other in by:
                a, b = by[ours], by[other]
                out.append(
                    f"{ours} vs {other}: per epoch {b['epoch_cpu_s'] / a['epoch_cpu_s']:.2f}x less CPU "
                    f"({b['epoch_s'] / a['epoch_s']:.2f}x less wall), targets per CPU s "
                    f"{a['targets'] / a['epoch_cpu_s'] / (b['targets'] / b['epoch_cpu_s']):.2f}x, CPU to the "
                    f"best epoch {b['to_best_cpu_s'] / max(a['to_best_cpu_s'], 1e-9):.2f}x less, "
                    f"test NDCG@10 {a['ndcg']:.4f} vs {b['ndcg']:.4f} ({a['ndcg'] / b['ndcg']:.2f}x)"
                )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--dataset", default="movielens100k", help="a bench_quality.py dataset name")
    parser.add_argument("--work", type=Path, default=None,
                        help="default: /tmp/compare-sasrec/<dataset>[-u<max users>]")  # fmt: skip
    parser.add_argument("--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES))
    parser.add_argument("--threads", type=int, default=1, help="torch threads of every library")
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--valid-max-users", type=int, default=2000)
    parser.add_argument("--max-users", type=int, default=None,
                        help="a seeded sample of users (and their items only), for speed runs")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--taskset", default=None, help="pin every runner to these CPUs, e.g. 0")
    parser.add_argument("--python-rectools", default="/tmp/venv-rectools/bin/python")
    parser.add_argument("--python-recbole", default="/tmp/venv-recbole/bin/python")
    parser.add_argument("--summary-only", action="store_true", help="only print the table of earlier runs")
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="ours and RecTools: bf16 autocast on the CPU (give another --work)")  # fmt: skip
    parser.add_argument("--compile", action="store_true",
                        help="ours: torch.compile the training step (give another --work)")  # fmt: skip
    args = parser.parse_args()

    default_work = args.dataset + (f"-u{args.max_users}" if args.max_users else "")
    work: Path = args.work or Path("/tmp/compare-sasrec") / default_work
    started = time.perf_counter()
    split = prepare(args.dataset, work, args.valid_max_users, args.seed, args.max_users)
    lengths = np.array([len(s) for s in split.train])
    print(f"dataset={args.dataset} users={split.n_users:,} items={split.n_items:,} "
          f"train_items={int(lengths.sum()):,} valid_users={len(split.valid_users):,} "
          f"test_users={len(split.test_users):,} (split {time.perf_counter() - started:.1f} s) "
          f"threads={args.threads} nproc={os.cpu_count()}", flush=True)  # fmt: skip
    out = work / "results"
    for library in [] if args.summary_only else args.libraries:
        command = runner_command(library, args, work / "split.npz", out)
        if args.taskset:
            command = ["taskset", "-c", args.taskset, *command]
        load = os.getloadavg()
        print(
            f"\n== {library}: load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n$ {' '.join(command)}",
            flush=True,
        )
        t0 = time.perf_counter()
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        subprocess.run(command, check=True, cwd=REPO, env=env)
        load = os.getloadavg()
        print(f"== {library}: {time.perf_counter() - t0:.0f} s wall, load after {load[0]:.2f} {load[1]:.2f} "
              f"{load[2]:.2f}", flush=True)  # fmt: skip
    rows = [summarise(lib, split, out) for lib in args.libraries if (out / f"{lib}.json").exists()]
    print()
    print(table(rows))
    print()
    print("\n".join(ratios(rows)))


if __name__ == "__main__":
    main()
