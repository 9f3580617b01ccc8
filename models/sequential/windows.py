"""Item sequences as transformer inputs, in numpy (no torch here, so it is cheap to import and test).

Conventions shared by training and scoring:

* item index ``i`` is token ``i + 1``; token ``0`` is padding;
* sequences are **left**-padded to ``max_len``, so the newest item always sits at the last position (the
  position the model reads its prediction from, whatever the length of the history);
* consecutive repeats of one item (view, click, cart, purchase of the same product) may be collapsed into one
  token, the same way at training and at scoring time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from models.arrays import FloatArray, IntArray

PAD = 0


def collapse_repeats(sequence: IntArray) -> IntArray:
    """``sequence`` without consecutive duplicates: ``[3, 3, 5, 3] -> [3, 5, 3]``."""
    if len(sequence) < 2:
        return sequence
    keep = np.empty(len(sequence), dtype=bool)
    keep[0] = True
    np.not_equal(sequence[1:], sequence[:-1], out=keep[1:])
    return sequence[keep]


def prepare(sequence: IntArray, collapse: bool) -> IntArray:
    """The item indices the model sees for one history (collapsed if asked), as int64."""
    seq = np.asarray(sequence, dtype=np.int64)
    return collapse_repeats(seq) if collapse else seq


def input_tokens(histories: Sequence[IntArray], max_len: int, collapse: bool) -> IntArray:
    """``(len(histories), max_len)`` tokens: the last ``max_len`` items of each history, left-padded."""
    out = np.zeros((len(histories), max_len), dtype=np.int64)
    for row, history in enumerate(histories):
        seq = prepare(history, collapse)[-max_len:]
        if len(seq):
            out[row, max_len - len(seq) :] = seq + 1
    return out


def training_windows(sequences: Sequence[IntArray], max_len: int, per_sequence: int = 0) -> IntArray:
    """Every sequence cut into windows of ``max_len + 1`` tokens, left-padded: ``(n_windows, max_len + 1)``.

    A window's first ``max_len`` tokens are the input and its last ``max_len`` the next-item targets (each
    position predicts the token after it). Windows end at the sequence's end, then every ``max_len`` items
    earlier, so each item is a target exactly once; sequences shorter than 2 items have nothing to predict.
    ``per_sequence`` > 0 keeps only the newest windows of each sequence (1: the original SASRec, which trains
    on the last ``max_len`` items per user).
    """
    return strided_windows(sequences, max_len, max_len, per_sequence)[0]


def strided_windows(
    sequences: Sequence[IntArray], max_len: int, stride: int, per_sequence: int = 0
) -> tuple[IntArray, IntArray]:
    """Windows as in :func:`training_windows`, but ending every ``stride`` (<= ``max_len``) items.

    Returns ``(windows, fresh)``: ``windows`` ``(n_windows, max_len + 1)`` left-padded tokens and ``fresh``
    ``(n_windows,)`` how many of each window's targets, counted from its end, are trained on. Overlapping
    windows (``stride < max_len``) give every target to the window where it sits among the last ``stride``
    positions, so each item is still a target exactly once, now with at least ``max_len - stride`` items
    of context (the oldest window of a sequence keeps all its targets: nothing older covers them).
    """
    if not 1 <= stride <= max_len:
        raise ValueError(f"stride must be between 1 and max_len ({max_len}), got {stride}")
    rows: list[IntArray] = []
    fresh: list[int] = []
    for sequence in sequences:
        tokens = np.asarray(sequence, dtype=np.int64) + 1
        end, kept = len(tokens), 0
        while end >= 2 and (per_sequence == 0 or kept < per_sequence):
            start = max(0, end - max_len - 1)
            window = np.zeros(max_len + 1, dtype=np.int64)
            window[max_len + 1 - (end - start) :] = tokens[start:end]
            rows.append(window)
            fresh.append(max_len if start == 0 else stride)
            if start == 0:  # the whole older part is in this window
                break
            end, kept = end - stride, kept + 1
    if not rows:
        return np.zeros((0, max_len + 1), dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.stack(rows), np.asarray(fresh, dtype=np.int64)


def ndcg_at_k(scores: FloatArray, relevant: Sequence[IntArray], k: int = 10) -> float:
    """Mean NDCG@k (binary relevance, full ranking) of score rows against each row's relevant item set."""
    if len(relevant) == 0:
        return 0.0
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ranked = np.take_along_axis(top, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for row, items in enumerate(relevant):
        hits = np.isin(ranked[row], items)
        ideal = discounts[: min(len(items), k)].sum()
        total += float((hits * discounts).sum() / ideal) if ideal > 0 else 0.0
    return total / len(relevant)


def crop_padding(tokens: IntArray, keep_last: int = 0) -> IntArray:
    """``tokens`` without the leading columns that are padding in every row (at least ``keep_last`` kept).

    Left padding puts every sequence's newest item in the last column, so dropping all-padding columns on
    the left only saves work (see ``SASRecNetwork.encode``).
    """
    used = np.flatnonzero((tokens != PAD).any(axis=0))
    first = int(used[0]) if len(used) else tokens.shape[1] - 1
    return tokens[:, min(first, max(tokens.shape[1] - keep_last, 0)) :]


def length_batches(
    order: IntArray, lengths: IntArray, batch_size: int, rng: np.random.Generator, pool: int = 64
) -> list[IntArray]:
    """Batches of windows of similar length, so cropping the padding saves most of the encoder's work.

    ``order`` (the epoch's shuffled window indices) is cut into pools of ``pool`` batches; each pool is
    sorted by window length (``lengths``: real tokens per window) and cut into batches; the batches are then
    shuffled with ``rng``. Every window of ``order`` lands in exactly one batch.
    """
    batches: list[IntArray] = []
    span = batch_size * pool
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]
