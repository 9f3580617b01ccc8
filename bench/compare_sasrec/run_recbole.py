"""Runner: RecBole's ``SASRec``, in its own venv, on the comparison's split.

    /tmp/venv-recbole/bin/python bench/compare_sasrec/run_recbole.py --split S.npz --out DIR --atomic-dir D

RecBole reads the driver's atomic ``.inter`` file (timestamps = positions) and cuts it with its own
leave-one-out (``LS: valid_and_test``, time order), which gives the split's train / valid / test exactly.
It trains the way it always does: every prefix of a training sequence is one sample whose last position
predicts the next item (``loss_type: CE``, full softmax, no negative sampling), so an epoch has as many
targets as ours. One epoch is RecBole's ``Trainer._train_epoch`` (what ``Trainer.fit`` runs per epoch),
timed on its own. Validation and test scores come from RecBole's ``full_sort_predict`` on the split's
histories; the top-10 (seen filtered) and the metric are the shared :mod:`common` functions.
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

SCORE_BATCH = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--split", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--atomic-dir", type=Path, required=True, help="holds cmp/cmp.inter")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=10)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    import recbole  # type: ignore[import-not-found,unused-ignore]
    import torch
    from recbole.config import Config  # type: ignore[import-not-found,unused-ignore]
    from recbole.data import create_dataset, data_preparation  # type: ignore[import-not-found,unused-ignore]
    from recbole.data.interaction import Interaction  # type: ignore[import-not-found,unused-ignore]
    from recbole.model.sequential_recommender import SASRec  # type: ignore[import-not-found,unused-ignore]
    from recbole.trainer import Trainer  # type: ignore[import-not-found,unused-ignore]
    from recbole.utils import init_seed  # type: ignore[import-not-found,unused-ignore]

    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.WARNING)
    arch = common.ARCHITECTURE
    config = Config(
        model="SASRec",
        dataset="cmp",
        config_dict={
            "data_path": str(args.atomic_dir),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": arch["max_len"],
            "n_layers": arch["num_blocks"],
            "n_heads": arch["num_heads"],
            "hidden_size": arch["hidden_size"],
            "inner_size": arch["ffn_size"],
            "hidden_dropout_prob": arch["dropout"],
            "attn_dropout_prob": arch["dropout"],
            "hidden_act": "gelu",
            "loss_type": "CE",
            "train_neg_sample_args": None,
            "train_batch_size": arch["batch_size"],
            "learner": "adam",
            "learning_rate": arch["learning_rate"],
            "weight_decay": 0.0,
            "epochs": args.max_epochs,
            "eval_args": {
                "split": {"LS": "valid_and_test"},
                "order": "TO",
                "mode": "full",
                "group_by": "user",
            },
            "device": "cpu",
            "use_gpu": False,
            "seed": args.seed,
            "reproducibility": True,
            "show_progress": False,
            "checkpoint_dir": str(args.out / "recbole-saved"),
            "worker": 0,
        },
    )
    init_seed(config["seed"], config["reproducibility"])
    torch.set_num_threads(args.threads)
    split = common.load_split(args.split)
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = Trainer(config, model)

    # RecBole's item ids: internal id (1..) <-> token (our item index as text); 0 is padding
    tokens = dataset.field2id_token["item_id"]
    global_of = np.full(len(tokens), -1, dtype=np.int64)
    global_of[1:] = [int(t) for t in tokens[1:]]
    internal_of = np.zeros(split.n_items, dtype=np.int64)
    internal_of[global_of[1:]] = np.arange(1, len(tokens))
    max_len = arch["max_len"]

    def scores(histories: list[common.IntArray]) -> common.FloatArray:
        """(len(histories), n_items) scores, RecBole's SASRec in eval mode (items it lacks: -inf)."""
        out = np.full((len(histories), split.n_items), -np.inf, dtype=np.float32)
        model.eval()
        with torch.no_grad():
            for start in range(0, len(histories), SCORE_BATCH):
                chunk = histories[start : start + SCORE_BATCH]
                seq = np.zeros((len(chunk), max_len), dtype=np.int64)  # left-aligned, as RecBole builds them
                lengths = np.zeros(len(chunk), dtype=np.int64)
                for row, history in enumerate(chunk):
                    last = internal_of[history[-max_len:]]
                    seq[row, : len(last)], lengths[row] = last, len(last)
                inter = Interaction({
                    "item_id_list": torch.from_numpy(seq),
                    "item_length": torch.from_numpy(np.maximum(lengths, 1)),
                })  # fmt: skip
                predicted = model.full_sort_predict(inter).numpy()  # (B, 1 + RecBole's items)
                out[start : start + len(chunk)][:, global_of[1:]] = predicted[:, 1:]
        model.train()
        return out

    valid_histories = split.valid_histories()
    valid_target = split.valid_item[split.valid_users]
    targets = common.training_targets(split, "all", max_len)
    sequences = len(train_data.dataset)
    stopper = common.EarlyStopping(args.patience)
    epochs: list[dict[str, float]] = []
    best_state: dict[str, Any] = {}
    started = time.perf_counter()
    for epoch in range(1, args.max_epochs + 1):
        t0, cpu0 = time.perf_counter(), time.process_time()
        loss = trainer._train_epoch(train_data, epoch - 1, show_progress=False)
        seconds, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        top = common.top_k_unseen(scores(valid_histories), valid_histories)
        ndcg = float(common.ndcg_at_10(top, valid_target).mean())
        epochs.append(common.epoch_record(epoch, seconds, cpu_s, sequences, targets, ndcg))
        print(f"recbole epoch {epoch}: {seconds:.2f} s ({cpu_s:.2f} CPU s), {sequences} sequences, "
              f"loss {float(loss):.2f}, valid NDCG@10 {ndcg:.4f}", flush=True)  # fmt: skip
        if stopper.update(epoch, ndcg):
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if stopper.should_stop:
            break
    fit_s = time.perf_counter() - started
    model.load_state_dict(best_state)
    test_histories = split.test_histories()
    test_top = common.top_k_unseen(scores(test_histories), test_histories)
    info = {
        "library_version": f"RecBole {recbole.__version__}",
        "torch": torch.__version__,
        "threads": args.threads,
        "scheme": "prefixes (one target each)",
        "targets_per_epoch": targets,
        "recbole_train_samples": sequences,
        "fit_wall_s": fit_s,
        "config": {**arch, "ffn": "GELU, inner_size 64", "layer_norm": "post-LN (RecBole's)"},
    }
    common.write_result(args.out, "recbole", info, epochs, stopper, split.test_users, test_top)


if __name__ == "__main__":
    main()
