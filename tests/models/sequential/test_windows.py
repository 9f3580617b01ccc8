"""Sequences as transformer inputs: collapsing repeats, left padding, training windows, NDCG@k."""

from __future__ import annotations

import numpy as np
import pytest

from models.sequential.windows import (
    collapse_repeats,
    crop_padding,
    input_tokens,
    ndcg_at_k,
    strided_windows,
    training_windows,
)


def test_collapse_repeats_keeps_non_consecutive_returns() -> None:
    assert collapse_repeats(np.array([3, 3, 5, 5, 5, 3])).tolist() == [3, 5, 3]
    assert collapse_repeats(np.array([], dtype=np.int64)).tolist() == []


def test_input_tokens_are_left_padded_shifted_and_cut_to_the_tail() -> None:
    tokens = input_tokens([np.array([0, 1, 1]), np.array([], dtype=np.int64), np.arange(6)], 4, True)
    assert tokens.tolist() == [[0, 0, 1, 2], [0, 0, 0, 0], [3, 4, 5, 6]]
    assert input_tokens([np.array([0, 1, 1])], 4, False).tolist() == [[0, 1, 2, 2]]


def test_training_windows_make_every_item_after_the_first_a_target_once() -> None:
    windows = training_windows([np.arange(7), np.array([9]), np.array([4, 5])], max_len=3)
    # 7 items (tokens 1-7): windows ending at its end and 3 items earlier; a single item has no target;
    # [4, 5] (tokens 5, 6) is one left-padded window.
    assert windows.tolist() == [[4, 5, 6, 7], [1, 2, 3, 4], [0, 0, 5, 6]]
    targets = windows[:, 1:][(windows[:, :-1] != 0) & (windows[:, 1:] != 0)]
    assert sorted(targets.tolist()) == [2, 3, 4, 5, 6, 6, 7]
    newest = training_windows([np.arange(7), np.array([4, 5])], max_len=3, per_sequence=1)
    assert newest.tolist() == [[4, 5, 6, 7], [0, 0, 5, 6]]


def fresh_targets(windows: np.ndarray, fresh: np.ndarray) -> list[int]:
    """The targets a strided batch trains on: each window's last ``fresh`` real targets."""
    width = windows.shape[1] - 1
    own = np.arange(width)[None] >= width - fresh[:, None]
    real = (windows[:, :-1] != 0) & (windows[:, 1:] != 0)
    return sorted(windows[:, 1:][real & own].tolist())


def test_strided_windows_give_every_target_full_context_and_count_it_once() -> None:
    windows, fresh = strided_windows([np.arange(7), np.array([4, 5])], max_len=3, stride=1)
    # tokens 1-7: one window per target with 3 items of context, down to the oldest window (from token 1),
    # which keeps all its targets; [4, 5] (tokens 5, 6) is one window.
    assert windows.tolist() == [[4, 5, 6, 7], [3, 4, 5, 6], [2, 3, 4, 5], [1, 2, 3, 4], [0, 0, 5, 6]]
    assert fresh.tolist() == [1, 1, 1, 3, 3]
    assert fresh_targets(windows, fresh) == [2, 3, 4, 5, 6, 6, 7]
    # stride = max_len is training_windows, every target of every window fresh
    plain, all_fresh = strided_windows([np.arange(7), np.array([4, 5])], max_len=3, stride=3)
    assert plain.tolist() == training_windows([np.arange(7), np.array([4, 5])], max_len=3).tolist()
    assert all_fresh.tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="stride"):
        strided_windows([np.arange(7)], max_len=3, stride=4)


@pytest.mark.parametrize("stride", [1, 2, 5, 8])
def test_strided_windows_count_each_target_once_on_random_lengths(stride: int) -> None:
    rng = np.random.default_rng(stride)
    sequences = [rng.integers(0, 50, size=n) for n in rng.integers(0, 40, size=30)]
    windows, fresh = strided_windows(sequences, max_len=8, stride=stride)
    expected = sorted(t for s in sequences for t in (np.asarray(s) + 1)[1:].tolist())
    assert fresh_targets(windows, fresh) == expected


def test_ndcg_at_k_by_hand() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.1, 0.2, 0.3]], dtype=np.float32)
    # Row 0: the relevant item 2 ranks second -> 1/log2(3); row 1: item 2 first -> 1.
    got = ndcg_at_k(scores, [np.array([2]), np.array([2])], k=2)
    assert got == pytest.approx((1 / np.log2(3) + 1.0) / 2)
    assert ndcg_at_k(scores, [], k=2) == 0.0


def test_crop_padding_drops_only_all_padding_columns() -> None:
    tokens = np.array([[0, 0, 0, 3], [0, 0, 2, 5]])
    assert crop_padding(tokens).tolist() == [[0, 3], [2, 5]]
    assert crop_padding(np.zeros((2, 4), dtype=np.int64)).shape == (2, 1)
    assert crop_padding(tokens, keep_last=3).tolist() == [[0, 0, 3], [0, 2, 5]]
