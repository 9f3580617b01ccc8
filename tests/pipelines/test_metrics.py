"""Ranking, list-level and bootstrap metrics against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.metrics import (
    Relevance,
    average_recommendation_popularity,
    bootstrap_ci,
    catalogue_coverage,
    evaluated_rows,
    exact_mean,
    hit_matrix,
    intra_list_diversity,
    list_metrics,
    mean_metrics,
    metric_name,
    novelty,
    paired_bootstrap_diff,
    parse_metric_name,
    per_user_metrics,
    popularity_bias,
    popularity_percentile,
)

LOG2_3 = math.log2(3)


def _metrics(
    top_k: list[list[int]], relevant: list[list[int]], ks: tuple[int, ...]
) -> dict[str, list[float]]:
    out = per_user_metrics(np.array(top_k), Relevance.from_lists(relevant), ks)
    return {name: values.tolist() for name, values in out.items()}


def test_names_round_trip() -> None:
    assert metric_name("ndcg", 10) == "ndcg_at_10"
    assert parse_metric_name("popularity_bias_at_20") == ("popularity_bias", 20)
    with pytest.raises(ValueError, match="metric name"):
        parse_metric_name("ndcg")


def test_relevance_sorts_and_merges_duplicates() -> None:
    rel = Relevance.from_lists([[5, 1, 5], [], [2]])
    assert rel.offsets.tolist() == [0, 2, 2, 3] and rel.items.tolist() == [1, 5, 2]
    assert rel.sizes.tolist() == [2, 0, 1]
    sub = rel.take(np.array([2, 0]))
    assert [sub.row(0).tolist(), sub.row(1).tolist()] == [[2], [1, 5]]


def test_hit_matrix_ignores_padding_and_other_rows() -> None:
    top = np.array([[3, 1, -1], [1, 2, 3]])
    rel = Relevance.from_lists([[1, 9], [3]])
    assert hit_matrix(top, rel).tolist() == [[False, True, False], [False, False, True]]


def test_two_hits_out_of_three_relevant() -> None:
    # list [3, 1, 7, -1], relevant {1, 7, 9}: hits at ranks 2 and 3.
    m = _metrics([[3, 1, 7, -1]], [[1, 7, 9]], (1, 3, 10))
    dcg = 1 / LOG2_3 + 1 / 2  # 1/log2(2+1) + 1/log2(3+1)
    idcg = 1 + 1 / LOG2_3 + 1 / 2  # min(|rel|=3, k=3) hits at the top
    assert m["ndcg_at_3"] == pytest.approx([dcg / idcg])  # 0.5307
    assert m["recall_at_3"] == pytest.approx([2 / 3])
    assert m["hr_at_3"] == [1.0]
    assert m["mrr_at_3"] == [0.5]
    assert m["map_at_3"] == pytest.approx([(1 / 2 + 2 / 3) / 3])  # P@2 + P@3 over min(3, 3)
    # k = 10 is longer than the list (4 columns): the missing ranks are misses, the ideal still has 3 hits
    assert m["ndcg_at_10"] == pytest.approx([dcg / idcg])
    assert m["recall_at_10"] == pytest.approx([2 / 3])
    assert m["map_at_10"] == pytest.approx([(1 / 2 + 2 / 3) / 3])
    # k = 1: the first item is not relevant
    assert [m[f"{x}_at_1"][0] for x in ("ndcg", "recall", "recall_trunc", "hr", "mrr", "map")] == [0.0] * 6


def test_single_relevant_item_at_rank_four() -> None:
    m = _metrics([[10, 11, 12, 5, 13]], [[5]], (3, 5))
    assert m["ndcg_at_5"] == pytest.approx([1 / math.log2(5)])  # 0.4307
    assert m["mrr_at_5"] == [0.25] and m["map_at_5"] == [0.25]
    assert m["recall_at_5"] == [1.0] and m["hr_at_5"] == [1.0]
    assert m["ndcg_at_3"] == [0.0] and m["recall_at_3"] == [0.0]


def test_more_relevant_items_than_k_truncated_recall_can_still_score_one() -> None:
    m = _metrics([[1, 2]], [[1, 2, 3, 4, 5]], (2,))
    assert m["ndcg_at_2"] == [1.0] and m["recall_trunc_at_2"] == [1.0] and m["map_at_2"] == [1.0]
    assert m["recall_at_2"] == [2 / 5]  # standard recall: 2 of the 5 relevant items were found


def test_standard_and_truncated_recall_differ_only_beyond_k() -> None:
    # user 0: 4 relevant, 2 found in the top 3; user 1: 1 relevant, found; user 2: 3 relevant, 1 found
    m = _metrics([[7, 1, 2], [4, 5, 6], [9, 8, 0]], [[1, 2, 3, 4], [6], [0, 10, 11]], (3,))
    assert m["recall_at_3"] == pytest.approx([2 / 4, 1.0, 1 / 3])
    assert m["recall_trunc_at_3"] == pytest.approx([2 / 3, 1.0, 1 / 3])


def test_padding_before_a_hit_counts_as_a_miss() -> None:
    m = _metrics([[-1, 5]], [[5]], (2,))
    assert m["ndcg_at_2"] == pytest.approx([1 / LOG2_3]) and m["mrr_at_2"] == [0.5]


def test_users_without_relevant_items_are_excluded() -> None:
    top = [[1, 2], [1, 2], [3, 4]]
    relevant = [[1], [], [4]]
    assert evaluated_rows(Relevance.from_lists(relevant)).tolist() == [0, 2]
    m = _metrics(top, relevant, (2,))
    assert m["ndcg_at_2"] == pytest.approx([1.0, 1 / LOG2_3])
    assert mean_metrics(per_user_metrics(np.array(top), Relevance.from_lists(relevant), (2,)))[
        "hr_at_2"
    ] == pytest.approx(1.0)


def test_rankings_are_checked() -> None:
    with pytest.raises(ValueError, match="same item twice"):
        per_user_metrics(np.array([[1, 1]]), Relevance.from_lists([[1]]), (2,))
    with pytest.raises(ValueError, match="2-d"):
        per_user_metrics(np.array([1, 2]), Relevance.from_lists([[1]]), (2,))
    with pytest.raises(ValueError, match="rows"):
        hit_matrix(np.array([[1, 2]]), Relevance.from_lists([[1], [2]]))


# ------------------------------------------------------------------------------------------ list level
# items 0..4: categories [0, 0, 1, unknown, 1], popularity [10, 5, 5, 0, 80]
CATS = np.array([0, 0, 1, -1, 1])
POP = np.array([10.0, 5.0, 5.0, 0.0, 80.0])
LISTS = np.array([[0, 1, 2], [0, 3, -1]])


def test_coverage() -> None:
    assert catalogue_coverage(LISTS, 3, 5) == pytest.approx(4 / 5)  # items 0, 1, 2, 3
    assert catalogue_coverage(LISTS, 1, 5) == pytest.approx(1 / 5)  # item 0 twice


def test_intra_list_diversity() -> None:
    # list 1: pairs (0,1) same, (0,2) and (1,2) differ -> 2/3; list 2: (0, unknown) differ -> 1
    assert intra_list_diversity(LISTS, 3, CATS) == pytest.approx((2 / 3 + 1) / 2)
    assert math.isnan(intra_list_diversity(LISTS, 1, CATS))  # no list has a pair
    cats = np.array([-1, -1, 0])
    assert intra_list_diversity(np.array([[0, 1]]), 2, cats) == 1.0  # two unknowns are not "the same"


def test_popularity_percentile_shares_ties() -> None:
    # sorted: item3 (0) rank 0, items 1 and 2 (5) ranks 1-2 -> 1.5, item0 rank 3, item4 rank 4; / (5 - 1)
    assert popularity_percentile(POP).tolist() == [0.75, 0.375, 0.375, 0.0, 1.0]
    assert popularity_percentile(np.array([3.0])).tolist() == [0.5]


def test_popularity_bias_and_arp_average_per_list_first() -> None:
    assert popularity_bias(LISTS, 3, POP) == pytest.approx(
        ((0.75 + 0.375 + 0.375) / 3 + (0.75 + 0.0) / 2) / 2
    )
    assert average_recommendation_popularity(LISTS, 3, POP) == pytest.approx(
        ((10 + 5 + 5) / 3 + (10 + 0) / 2) / 2
    )


def test_novelty_is_smoothed_self_information() -> None:
    # p_i = (pop_i + 1) / (100 + 5)
    list1 = (math.log2(105 / 11) + 2 * math.log2(105 / 6)) / 3
    list2 = (math.log2(105 / 11) + math.log2(105 / 1)) / 2
    assert novelty(LISTS, 3, POP) == pytest.approx((list1 + list2) / 2)


def test_list_metrics_names() -> None:
    out = list_metrics(LISTS, (1, 3), 5, CATS, POP)
    assert sorted(out) == sorted(
        f"{m}_at_{k}" for m in ("coverage", "diversity", "novelty", "popularity_bias") for k in (1, 3)
    )
    assert out["coverage_at_3"] == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_users() -> None:
    rng = np.random.default_rng(0)
    small = rng.random(100)
    large = rng.random(10_000)
    lo_s, hi_s = bootstrap_ci(small, samples=500, confidence=0.95, seed=1)
    lo_l, hi_l = bootstrap_ci(large, samples=500, confidence=0.95, seed=1)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    # the width shrinks like 1/sqrt(n): 100x the users -> about a tenth of the width
    assert (hi_l - lo_l) < 0.2 * (hi_s - lo_s)


def test_bootstrap_ci_is_seeded_and_degenerate_cases() -> None:
    values = np.arange(50, dtype=float)
    assert bootstrap_ci(values, 200, 0.9, seed=3) == bootstrap_ci(values, 200, 0.9, seed=3)
    assert bootstrap_ci(np.full(20, 0.3), 100) == pytest.approx((0.3, 0.3))
    assert all(math.isnan(x) for x in bootstrap_ci([], 100))
    assert all(math.isnan(x) for x in bootstrap_ci(values, 0))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_ci(values, 10, confidence=1.0)


def test_bootstrap_ci_covers_the_true_mean_about_as_often_as_promised() -> None:
    rng = np.random.default_rng(42)
    covered = 0
    for rep in range(200):
        sample = rng.binomial(1, 0.3, size=200).astype(float)  # true mean 0.3
        low, high = bootstrap_ci(sample, samples=400, confidence=0.9, seed=rep)
        covered += low <= 0.3 <= high
    assert 0.8 <= covered / 200 <= 0.97


def test_paired_bootstrap_diff() -> None:
    rng = np.random.default_rng(5)
    base = rng.random(500)  # large per-user spread shared by both models
    better = base + 0.02 + rng.normal(0, 0.01, 500)
    mean, low, high = paired_bootstrap_diff(better, base, samples=500, seed=0)
    assert mean == pytest.approx(float((better - base).mean()))
    assert 0 < low < mean < high
    # the pairing matters: two independent intervals would overlap heavily at this spread
    lo_a, hi_a = bootstrap_ci(better, 500, seed=0)
    _, hi_b = bootstrap_ci(base, 500, seed=0)
    assert lo_a < hi_b and (high - low) < 0.2 * (hi_a - lo_a)
    same = paired_bootstrap_diff(base, base, 100)
    assert same == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="same users"):
        paired_bootstrap_diff([1.0, 2.0], [1.0])


def test_means_do_not_depend_on_the_order_of_the_values() -> None:
    rng = np.random.default_rng(0)
    scale = 10.0 ** rng.integers(-8, 8, 10_001)  # a wide range of magnitudes: float + is not associative
    values = rng.random(10_001) * scale
    shuffled = rng.permutation(values)
    assert exact_mean(values) == exact_mean(shuffled) == exact_mean(values[::-1])
    assert math.isnan(exact_mean(np.array([])))
    # list metrics of the same lists in another user order are bit-identical
    top = rng.permutation(200)[:120].reshape(40, 3)
    cats, pop = rng.integers(-1, 5, 200), rng.random(200) * 1000
    order = rng.permutation(40)
    assert list_metrics(top, (2, 3), 200, cats, pop) == list_metrics(top[order], (2, 3), 200, cats, pop)
