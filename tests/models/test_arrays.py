"""Array helpers: top-k in a total order (score, then item index), also for which tied items make the cut."""

from __future__ import annotations

import numpy as np
import pytest

from models.arrays import top_k, top_k_finite


def reference_top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Full sort by (score descending, item index ascending): the order top_k must reproduce."""
    n_items = scores.shape[1]
    order = np.array([np.lexsort((np.arange(n_items), -row)) for row in scores])
    ids = order[:, :k]
    ids = np.where(np.isfinite(np.take_along_axis(scores, ids, axis=1)), ids, -1)
    return ids


def test_ties_at_the_cut_keep_the_lowest_item_indices() -> None:
    # Items 2..9 tie; item 7 alone is best. k=3 must give 7, then the two lowest tied indices 2 and 3.
    scores = np.zeros((1, 10), dtype=np.float32)
    scores[0, 2:] = 1.0
    scores[0, 7] = 5.0
    ids, top = top_k(scores, 3)
    assert ids.tolist() == [[7, 2, 3]]
    assert top.tolist() == [[5.0, 1.0, 1.0]]


def test_all_tied_rows_rank_by_index() -> None:
    ids, _ = top_k(np.ones((2, 6), dtype=np.float32), 4)
    assert ids.tolist() == [[0, 1, 2, 3], [0, 1, 2, 3]]


@pytest.mark.parametrize("k", [1, 3, 7, 20, 25])
def test_matches_a_full_sort_on_heavily_tied_random_scores(k: int) -> None:
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 4, size=(200, 20)).astype(np.float32)  # four distinct values: ties everywhere
    scores[rng.random(scores.shape) < 0.1] = -np.inf
    ids, top = top_k(scores, k)
    expected = reference_top_k(scores, min(k, 20))
    np.testing.assert_array_equal(ids[:, : min(k, 20)], expected)
    assert np.all(ids[:, 20:] == -1)
    assert np.all(np.isneginf(top[ids == -1]))


def test_nan_scores_are_never_recommended() -> None:
    scores = np.array([[np.nan, 1.0, np.nan, 0.5]], dtype=np.float32)
    ids, top = top_k(scores, 4)
    assert ids.tolist() == [[1, 3, -1, -1]]
    assert np.isneginf(top[0, 2:]).all()


def test_the_input_matrix_is_not_modified() -> None:
    scores = np.array([[np.nan, 1.0, 1.0, 0.5]], dtype=np.float32)
    before = scores.copy()
    top_k(scores, 2)
    np.testing.assert_array_equal(scores, before)


@pytest.mark.parametrize("k", [1, 10, 100])
def test_long_rows_pre_filtered_by_block_maxima_match_a_full_sort(k: int) -> None:
    # Rows long enough for the block-maxima pre-filter (and not a multiple of its block), with ties,
    # masked items and rows where almost everything is masked, so the bound falls to -inf.
    rng = np.random.default_rng(11)
    n_items = 64 * 4 * 100 + 37
    scores = rng.integers(0, 50, size=(12, n_items)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    scores[3, :] = -np.inf
    scores[3, [5, n_items - 1]] = 1.0  # only two rankable items, one in the tail past the last block
    scores[4] = rng.standard_normal(n_items).astype(np.float32)
    scores[5, -10:] = 1e6  # the best items all sit in the tail
    ids, top = top_k(scores, k)
    np.testing.assert_array_equal(ids, reference_top_k(scores, k))
    np.testing.assert_array_equal(top, np.where(ids >= 0, np.take_along_axis(scores, ids, axis=1), -np.inf))
    assert ids[3, :3].tolist() == [5, n_items - 1, -1][:k]
    assert set(ids[5, :10].tolist()) <= set(range(n_items - 10, n_items))


@pytest.mark.parametrize("n_items", [7, 2_500, 64 * 4 * 60 + 13])
@pytest.mark.parametrize("k", [1, 5, 50])
def test_one_row_top_k_equals_top_k_on_finite_entries(n_items: int, k: int) -> None:
    """The one-row path (the scorer's) against top_k on rows that take each branch: distinct scores (the
    fast path), ties at the cut, masked items, NaN, fewer finite items than k, k over the row length."""
    rng = np.random.default_rng(n_items + k)
    rows = [
        rng.standard_normal(n_items).astype(np.float32),
        rng.integers(0, 5, n_items).astype(np.float32),
        np.where(rng.random(n_items) < 0.5, -np.inf, rng.standard_normal(n_items)).astype(np.float32),
        np.where(rng.random(n_items) < 0.1, np.nan, rng.standard_normal(n_items)).astype(np.float32),
        np.full(n_items, -np.inf, dtype=np.float32),
    ]
    rows[4][[0, n_items - 1]] = [1.0, 2.0]
    for row in rows:
        before = row.copy()
        ids, top = top_k_finite(row, k)
        want_ids, want_top = top_k(row[None, :], k)
        keep = want_ids[0] >= 0
        np.testing.assert_array_equal(ids, want_ids[0][keep])
        np.testing.assert_array_equal(top, want_top[0][keep])
        assert ids.dtype == np.int64 and top.dtype == np.float32
        np.testing.assert_array_equal(row, before)
    assert top_k_finite(rows[0], 0)[0].shape == (0,)
    assert top_k_finite(rows[0][:0], 3)[0].shape == (0,)
