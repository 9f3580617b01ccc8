"""Runner: RecTools' ``SASRecModel`` (PyTorch Lightning), in its own venv, on the comparison's split.

    /tmp/venv-rectools/bin/python bench/compare_sasrec/run_rectools.py --split S.npz --out DIR

RecTools trains on each user's last ``session_max_len + 1`` items (one sequence per user per epoch, every
position a target) with full softmax (``loss="softmax"``). One ``fit_partial`` call per epoch continues the
same Lightning trainer; a Lightning callback times the training epoch itself (RecTools' per-call dataset
preparation and the validation are outside it; their cost is in ``fit_wall_s``). Validation and test use
RecTools' own ``recommend(filter_viewed=True)``; the ranked lists are scored by the shared
:func:`common.ndcg_at_10`. Items that never occur in training are unknown to RecTools and never ranked.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # the comparison's shared module, next to this file


def interactions_frame(split: common.Split, with_valid: bool) -> Any:
    """Training sequences (+ each user's validation item) as RecTools' interactions frame."""
    import pandas as pd

    users: list[common.IntArray] = []
    items: list[common.IntArray] = []
    positions: list[common.IntArray] = []
    for user, train in enumerate(split.train):
        sequence = train
        if with_valid and split.valid_item[user] >= 0:
            sequence = np.append(train, split.valid_item[user]).astype(np.int64)
        users.append(np.full(len(sequence), user, dtype=np.int64))
        items.append(sequence)
        positions.append(np.arange(len(sequence), dtype=np.int64))
    return pd.DataFrame({
        "user_id": np.concatenate(users),
        "item_id": np.concatenate(items),
        "weight": 1.0,
        "datetime": pd.Timestamp("2020-01-01") + pd.to_timedelta(np.concatenate(positions), unit="s"),
    })  # fmt: skip


def top_lists(reco: Any, users: common.IntArray) -> common.IntArray:
    """RecTools' recommendations frame -> (len(users), K) item indices, best first, -1 where missing."""
    out = np.full((len(users), common.K), -1, dtype=np.int64)
    row_of = {int(u): r for r, u in enumerate(users)}
    reco = reco.sort_values(["user_id", "rank"])
    for user, item, rank in zip(reco["user_id"], reco["item_id"], reco["rank"], strict=True):
        if rank <= common.K:
            out[row_of[int(user)], int(rank) - 1] = int(item)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--cpu-bf16", action="store_true",
                        help="Lightning's bf16-mixed precision (bf16 autocast on the CPU)")  # fmt: skip
    args = parser.parse_args()
    precision = "bf16-mixed" if args.cpu_bf16 else "32-true"

    import rectools  # type: ignore[import-not-found,unused-ignore]
    import torch
    from pytorch_lightning import Callback, Trainer, seed_everything  # type: ignore[import-not-found,unused-ignore]
    from rectools.dataset import Dataset  # type: ignore[import-not-found,unused-ignore]
    from rectools.models import SASRecModel  # type: ignore[import-not-found,unused-ignore]
    from rectools.models.nn.item_net import IdEmbeddingsItemNet  # type: ignore[import-not-found,unused-ignore]

    warnings.filterwarnings("ignore")  # Lightning's advice about dataloader workers, once per epoch
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)  # "GPU available: False ..." at every fit_partial
    torch.set_num_threads(args.threads)
    seed_everything(args.seed, workers=True, verbose=False)
    split = common.load_split(args.split)
    arch = common.ARCHITECTURE
    train_ds = Dataset.construct(interactions_frame(split, with_valid=False))
    test_ds = Dataset.construct(interactions_frame(split, with_valid=True))

    started_at: list[float] = []
    seconds_of: list[tuple[float, float]] = []  # kept outside: RecTools deep-copies the trainer's callbacks

    class EpochTimer(Callback):  # type: ignore[misc,unused-ignore]
        """Wall and CPU seconds of each training epoch (Lightning's loop over the batches)."""

        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            started_at[:] = [time.perf_counter(), time.process_time()]

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            wall, cpu = time.perf_counter() - started_at[0], time.process_time() - started_at[1]
            seconds_of.append((wall, cpu))

    model = SASRecModel(
        n_blocks=arch["num_blocks"],
        n_heads=arch["num_heads"],
        n_factors=arch["hidden_size"],
        dropout_rate=arch["dropout"],
        session_max_len=arch["max_len"],
        loss="softmax",
        lr=arch["learning_rate"],
        batch_size=arch["batch_size"],
        item_net_block_types=(IdEmbeddingsItemNet,),  # ids only, as the others (no item features here)
        deterministic=True,
        recommend_torch_device="cpu",
    )
    model._trainer = Trainer(
        max_epochs=1,
        min_epochs=1,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        precision=precision,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
        callbacks=[EpochTimer()],
    )  # fmt: skip  (RecTools' default trainer, on the CPU, with the epoch timer)
    targets = common.training_targets(split, "last_window", arch["max_len"])
    valid_target = split.valid_item[split.valid_users]
    stopper = common.EarlyStopping(args.patience)
    epochs: list[dict[str, float]] = []
    best_state: dict[str, Any] = {}
    started = time.perf_counter()
    for epoch in range(1, args.max_epochs + 1):
        model.fit_partial(train_ds, min_epochs=1, max_epochs=1)
        sequences = len(model.data_preparator.get_dataloader_train().dataset)
        reco = model.recommend(split.valid_users, train_ds, k=common.K, filter_viewed=True,
                               on_unsupported_targets="ignore")  # fmt: skip
        ndcg = float(common.ndcg_at_10(top_lists(reco, split.valid_users), valid_target).mean())
        seconds, cpu_s = seconds_of[-1]
        epochs.append(common.epoch_record(epoch, seconds, cpu_s, sequences, targets, ndcg))
        print(f"rectools epoch {epoch}: {seconds:.2f} s ({cpu_s:.2f} CPU s), {sequences} sequences, "
              f"valid NDCG@10 {ndcg:.4f}", flush=True)  # fmt: skip
        if stopper.update(epoch, ndcg):
            state = model.lightning_model.torch_model.state_dict()
            best_state = {k: v.detach().clone() for k, v in state.items()}
        if stopper.should_stop:
            break
    fit_s = time.perf_counter() - started
    model.lightning_model.torch_model.load_state_dict(best_state)
    reco = model.recommend(split.test_users, test_ds, k=common.K, filter_viewed=True,
                           on_unsupported_targets="ignore")  # fmt: skip
    info = {
        "library_version": f"RecTools {rectools.__version__}",
        "torch": torch.__version__,
        "threads": args.threads,
        "scheme": "last_window",
        "targets_per_epoch": targets,
        "fit_wall_s": fit_s,
        "precision": precision,
        "config": {**arch, "ffn": "ReLU, width n_factors", "layer_norm": "SASRec's (q and ff inputs)"},
    }
    test_top = top_lists(reco, split.test_users)
    common.write_result(args.out, "rectools", info, epochs, stopper, split.test_users, test_top)


if __name__ == "__main__":
    main()
