"""Runner: our SASRec (``models.sasrec``), in the project's venv, on the comparison's split.

    .venv/bin/python bench/compare_sasrec/run_recops.py --split S.npz --out DIR [--windows-per-user 1]

Trains ``SASRecRecommender`` exactly as the project does (``fit``), without its own validation (so its
internal early stopping is off): after each epoch a callback scores the validation users with the shared
:func:`common.ndcg_at_10`, keeps the best epoch's weights and stops after ``--patience`` epochs without a
better one, the same rule every runner follows. Epoch time is the model's own per-epoch ``seconds`` (the
training loop only; validation is outside it). ``--windows-per-user 1`` trains on each user's last
``max_len + 1`` items only, the sequences RecTools and the original SASRec train on. ``--window-stride N``
overlaps the windows (one ends every N items), so every target sees at least ``max_len - N`` items before
it, as RecBole's prefixes do; each target is still trained on once per epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # the comparison's shared module, next to this file

from models.base import FitContext, Interactions
from models.sasrec import SASRecConfig, SASRecRecommender
from models.threads import limit_threads


class _Stop(Exception):
    """Raised by the epoch callback to end training (early stopping from outside the model)."""


def interactions(split: common.Split) -> Interactions:
    """The training sequences as project ``Interactions`` (time = position in the sequence)."""
    users = np.repeat(np.arange(split.n_users, dtype=np.int64), [len(s) for s in split.train])
    items = np.concatenate(split.train).astype(np.int64)
    ts = np.concatenate([np.arange(len(s), dtype=np.int64) for s in split.train])
    return Interactions(
        user_idx=users,
        item_idx=items,
        weight=np.ones(len(items), dtype=np.float32),
        ts=ts,
        session_idx=users.copy(),
        n_users=split.n_users,
        n_items=split.n_items,
    )


def scores_of(model: SASRecRecommender, histories: list[common.IntArray]) -> common.FloatArray:
    """Scores from the network as it is now, in eval mode (dropout off), then back in train mode."""
    import torch

    net = model.network
    assert net is not None
    net.eval()
    try:
        with torch.inference_mode():
            return model._score_with(net, net.item_vectors(), histories)
    finally:
        net.train()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--name", default="recops")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--windows-per-user", type=int, default=0)
    parser.add_argument("--window-stride", type=int, default=0,
                        help="overlapping windows, one ending every N items (0: max_len)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu-bf16", action="store_true", help="bf16 autocast on the CPU (cpu_bf16)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the training step (the `compile` option)")  # fmt: skip
    parser.add_argument("--learning-rate", type=float, default=None,
                        help="off-protocol probe (default: the shared 1e-3)")  # fmt: skip
    args = parser.parse_args()

    import torch

    limit_threads(args.threads)
    torch.set_num_threads(args.threads)
    split = common.load_split(args.split)
    arch = common.ARCHITECTURE
    config = SASRecConfig(
        hidden_size=arch["hidden_size"],
        num_blocks=arch["num_blocks"],
        num_heads=arch["num_heads"],
        ffn_multiplier=arch["ffn_size"] // arch["hidden_size"],
        max_len=arch["max_len"],
        dropout=arch["dropout"],
        batch_size=arch["batch_size"],
        learning_rate=args.learning_rate or arch["learning_rate"],
        weight_decay=0.0,
        loss="full_ce",
        windows_per_user=args.windows_per_user,
        window_stride=args.window_stride,
        cpu_bf16=args.cpu_bf16,
        compile=args.compile,
        max_epochs=args.max_epochs,
        use_item_features=False,
        collapse_repeats=False,
    )
    scheme = "last_window" if args.windows_per_user == 1 else "all"
    targets = common.training_targets(split, scheme, config.max_len)
    valid_histories = split.valid_histories()
    valid_target = split.valid_item[split.valid_users]
    stopper = common.EarlyStopping(args.patience)
    epochs: list[dict[str, float]] = []
    best_state: dict[str, Any] = {}
    model = SASRecRecommender(config)

    cpu_mark = [0.0]  # process CPU seconds when the current epoch began (validation excluded)

    def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
        cpu_s = time.process_time() - cpu_mark[0]
        top = common.top_k_unseen(scores_of(model, valid_histories), valid_histories)
        ndcg = float(common.ndcg_at_10(top, valid_target).mean())
        sequences = round(metrics["sequences_per_s"] * metrics["seconds"])
        epochs.append(common.epoch_record(epoch, metrics["seconds"], cpu_s, sequences, targets, ndcg))
        print(f"{args.name} epoch {epoch}: {metrics['seconds']:.2f} s ({cpu_s:.2f} CPU s), "
              f"{sequences} sequences, loss {metrics['loss']:.4f}, valid NDCG@10 {ndcg:.4f}",
              flush=True)  # fmt: skip
        if stopper.update(epoch, ndcg):
            assert model.network is not None
            best_state.clear()
            best_state.update({k: v.detach().clone() for k, v in model.network.state_dict().items()})
        if stopper.should_stop:
            raise _Stop
        cpu_mark[0] = time.process_time()

    started = time.perf_counter()
    cpu_mark[0] = time.process_time()
    with contextlib.suppress(_Stop):
        model.fit(interactions(split), None, FitContext(seed=args.seed, threads=args.threads), on_epoch)
    fit_s = time.perf_counter() - started
    assert model.network is not None
    model.network.load_state_dict(best_state)
    model._finish(model.network)  # eval mode, cached item vectors reset
    test_histories = split.test_histories()
    test_top = common.top_k_unseen(model.score(test_histories), test_histories)
    info = {
        "library_version": "recops (this repository)",
        "torch": torch.__version__,
        "threads": args.threads,
        "scheme": scheme,
        "targets_per_epoch": targets,
        "fit_wall_s": fit_s,
        "config": config.model_dump(),
    }
    common.write_result(args.out, args.name, info, epochs, stopper, split.test_users, test_top)


if __name__ == "__main__":
    main()
