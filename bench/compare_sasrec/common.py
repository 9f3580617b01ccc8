"""What every runner of the side-by-side SASRec comparison shares: the split, the metric, early stopping.

numpy only (plus the standard library), so each library's runner imports it in its own venv. The driver
(:mod:`driver`) writes the split once; every runner reads it with :func:`load_split`, trains its library's
SASRec, picks the epoch with :class:`EarlyStopping` on :func:`ndcg_at_10` of the validation users, and writes
its test top-10 with :func:`write_result`. The driver then scores every library's test top-10 with the
same :func:`ndcg_at_10` (one evaluation function for all, never a library's own metric code).

Protocol (leave-one-out, published): per user, the last interaction is the test item, the one before it the
validation item, the rest the training sequence. Validation ranks all items for the history = training
sequence; test for the history = training sequence + validation item. Items of the history are never
ranked (seen filtered), every other item of the catalogue is (full ranking).
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]

#: Length of the ranked list every library hands back, and the cut-off of the metric.
K = 10
#: The architecture and training settings every library gets (see the driver's docstring).
ARCHITECTURE: dict[str, Any] = {
    "hidden_size": 64,
    "num_blocks": 2,
    "num_heads": 1,
    "ffn_size": 64,
    "max_len": 50,
    "dropout": 0.2,
    "batch_size": 128,
    "learning_rate": 1e-3,
    "loss": "full softmax cross-entropy",
}


@dataclass(frozen=True)
class Split:
    """The leave-one-out split. Users and items are 0-based indices; -1 marks a missing valid/test item."""

    n_items: int
    train: list[IntArray]  # per user, training items oldest first (possibly empty)
    valid_item: IntArray  # (n_users,)
    test_item: IntArray  # (n_users,)
    valid_users: IntArray  # the users early stopping scores (a seeded sample of those with a valid item)
    test_users: IntArray  # every user with a test item

    @property
    def n_users(self) -> int:
        return len(self.train)

    def valid_histories(self) -> list[IntArray]:
        """Histories of :attr:`valid_users`: their training sequences."""
        return [self.train[u] for u in self.valid_users]

    def test_histories(self) -> list[IntArray]:
        """Histories of :attr:`test_users`: training sequence + validation item (when there is one)."""
        out: list[IntArray] = []
        for u in self.test_users:
            v = self.valid_item[u]
            out.append(self.train[u] if v < 0 else np.append(self.train[u], v).astype(np.int64))
        return out


def save_split(
    path: Path,
    n_items: int,
    train: Sequence[IntArray],
    valid_item: IntArray,
    test_item: IntArray,
    valid_max_users: int,
    seed: int,
) -> Split:
    """Write the split as one ``.npz`` (training sequences as CSR); returns it as :func:`load_split` does."""
    lengths = np.fromiter((len(s) for s in train), dtype=np.int64, count=len(train))
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    items = np.concatenate([np.asarray(s, dtype=np.int64) for s in train]) if len(train) else offsets[:0]
    with_valid = np.flatnonzero(valid_item >= 0).astype(np.int64)
    if len(with_valid) > valid_max_users:
        rng = np.random.default_rng(seed)
        with_valid = np.sort(rng.choice(with_valid, valid_max_users, replace=False)).astype(np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        path,
        n_items=np.int64(n_items),
        train_offsets=offsets,
        train_items=items,
        valid_item=valid_item.astype(np.int64),
        test_item=test_item.astype(np.int64),
        valid_users=with_valid,
    )
    return load_split(path)


def load_split(path: Path) -> Split:
    """The split :func:`save_split` wrote."""
    with np.load(path) as data:
        offsets, items = data["train_offsets"], data["train_items"]
        train = [items[offsets[u] : offsets[u + 1]].astype(np.int64) for u in range(len(offsets) - 1)]
        test_item = data["test_item"].astype(np.int64)
        return Split(
            n_items=int(data["n_items"]),
            train=train,
            valid_item=data["valid_item"].astype(np.int64),
            test_item=test_item,
            valid_users=data["valid_users"].astype(np.int64),
            test_users=np.flatnonzero(test_item >= 0).astype(np.int64),
        )


def training_targets(split: Split, scheme: str, max_len: int) -> int:
    """(input, next item) pairs one epoch trains on: ``all`` (every item after a user's first, once: our
    windows and RecBole's prefixes) or ``last_window`` (the last ``max_len + 1`` items of each user: RecTools'
    and the original SASRec's one sequence per user)."""
    lengths = np.array([len(s) for s in split.train], dtype=np.int64)
    lengths = lengths[lengths >= 2]
    if scheme == "all":
        return int((lengths - 1).sum())
    if scheme == "last_window":
        return int((np.minimum(lengths, max_len + 1) - 1).sum())
    raise ValueError(f"unknown scheme {scheme!r}")


def top_k_unseen(scores: FloatArray, histories: Sequence[IntArray], k: int = K) -> IntArray:
    """Row-wise top-``k`` item indices of ``scores`` (users x items), best first, history items excluded.

    ``scores`` is modified in place (history items set to -inf). Ties: lower item index first. Rows with
    fewer than ``k`` rankable items are padded with -1.
    """
    for row, history in enumerate(histories):
        if len(history):
            scores[row, history] = -np.inf
    kk = min(k, scores.shape[1])
    top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    top_scores = np.take_along_axis(scores, top, axis=1)
    order = np.lexsort((top, -top_scores), axis=1)  # by score descending, then item index ascending
    ranked = np.take_along_axis(top, order, axis=1).astype(np.int64)
    ranked[~np.isfinite(np.take_along_axis(top_scores, order, axis=1))] = -1
    if kk < k:
        ranked = np.pad(ranked, ((0, 0), (0, k - kk)), constant_values=-1)
    return ranked


def ndcg_at_10(top: IntArray, target: IntArray) -> FloatArray:
    """Per-user NDCG@10 of ranked lists ``top`` (users x >= 10) against one target item per user.

    With one relevant item the ideal DCG is 1, so NDCG is ``1 / log2(rank + 2)`` when the target is at
    0-based ``rank`` < 10, else 0. THE metric of the comparison: validation and test, every library.
    """
    hits = top[:, :K] == target[:, None]  # (U, 10)
    gains = 1.0 / np.log2(np.arange(2, K + 2))
    out: FloatArray = (hits * gains).sum(axis=1).astype(np.float32)
    return out


def hit_rate_at_10(top: IntArray, target: IntArray) -> FloatArray:
    """Per-user 1.0 when the target is in the top 10."""
    out: FloatArray = (top[:, :K] == target[:, None]).any(axis=1).astype(np.float32)
    return out


def bootstrap_ci(values: FloatArray, samples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values``."""
    rng = np.random.default_rng(seed)
    means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(samples)])
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


class EarlyStopping:
    """Keeps the epoch with the best validation NDCG@10; stop after ``patience`` epochs without progress."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.best = -1.0
        self.best_epoch = 0
        self.last_epoch = 0

    def update(self, epoch: int, value: float) -> bool:
        """Record ``epoch``'s score; True when it is the best so far (the caller snapshots the weights)."""
        self.last_epoch = epoch
        if value > self.best:
            self.best, self.best_epoch = value, epoch
            return True
        return False

    @property
    def should_stop(self) -> bool:
        return self.last_epoch - self.best_epoch >= self.patience


def load_average() -> tuple[float, float, float]:
    """The machine's 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def write_result(
    out_dir: Path,
    library: str,
    info: dict[str, Any],
    epochs: list[dict[str, float]],
    stopper: EarlyStopping,
    test_users: IntArray,
    test_top: IntArray,
) -> None:
    """``<out_dir>/<library>.json`` (settings, per-epoch records) and ``<library>.npz`` (test top-10)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    np.savez(out_dir / f"{library}.npz", test_users=test_users, test_top=test_top)
    payload = {
        "library": library,
        **info,
        "python": platform.python_version(),
        "best_epoch": stopper.best_epoch,
        "best_valid_ndcg_at_10": stopper.best,
        "epochs": epochs,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_average_end": load_average(),
    }
    (out_dir / f"{library}.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def epoch_record(
    epoch: int, train_s: float, train_cpu_s: float, sequences: int, targets: int, valid_ndcg: float
) -> dict[str, float]:
    """One epoch's figures: wall and CPU seconds of the training alone (validation is not counted; on a
    shared machine the process's CPU seconds are the steadier measure)."""
    return {
        "epoch": epoch,
        "train_s": train_s,
        "train_cpu_s": train_cpu_s,
        "sequences": sequences,
        "sequences_per_s": sequences / max(train_s, 1e-9),
        "targets_per_s": targets / max(train_s, 1e-9),
        "valid_ndcg_at_10": valid_ndcg,
        "load_1min": load_average()[0],
    }
