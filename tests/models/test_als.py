"""ALS through implicit: per-iteration reporting, exact user vectors from histories, seeds and threads."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares

import models.als as als
from models import ALSRecommender
from models.base import history_matrix
from tests.models.conftest import T0, make_interactions, random_interactions

DATA = random_interactions(8000, n_users=300, n_items=120, seed=21)


def small(**overrides: object) -> ALSRecommender:
    params: dict[str, object] = {
        "factors": 8,
        "iterations": 6,
        "regularization": 0.1,
        "alpha": 5.0,
        "random_state": 3,
    }
    return ALSRecommender(**{**params, **overrides})  # type: ignore[arg-type]


def test_on_epoch_reports_a_decreasing_loss() -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    small(iterations=8).fit(DATA, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == list(range(8))
    losses = [metrics["loss"] for _, metrics in seen]
    assert all(metrics["seconds"] >= 0 for _, metrics in seen)
    assert losses[-1] < losses[0]
    assert all(b <= a * (1 + 1e-4) for a, b in itertools.pairwise(losses)), losses


def test_user_vectors_equal_implicit_recalculate_user() -> None:
    model = small().fit(DATA)
    histories = [*DATA.histories()[:40], np.array([5, 5, 7]), np.array([], dtype=np.int64)]
    reference = AlternatingLeastSquares(factors=model.factors, regularization=model.regularization, alpha=1.0)
    reference.item_factors = model.item_factors
    confidence = history_matrix(histories, DATA.n_items)
    confidence.data = 1.0 + model.alpha * model.event_weight * confidence.data
    expected = reference.recalculate_user(np.arange(len(histories)), confidence)
    np.testing.assert_allclose(model.user_vectors(histories), expected, rtol=1e-3, atol=1e-4)
    assert not model.user_vectors([np.array([], dtype=np.int64)]).any(), "empty history -> zero vector"


def test_scores_are_user_vectors_times_item_factors() -> None:
    model = small().fit(DATA)
    histories = DATA.histories()[:10]
    expected = model.user_vectors(histories).astype(np.float32) @ model.item_factors.T
    np.testing.assert_allclose(model.score(histories), expected, rtol=1e-6)


def test_chunked_scoring_equals_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small().fit(DATA)
    histories = DATA.histories()
    whole = model.user_vectors(histories)
    monkeypatch.setattr(als, "SCORE_BATCH_SLOTS", 64)
    np.testing.assert_allclose(model.user_vectors(histories), whole, rtol=1e-9, atol=1e-12)


def test_confidence_matrix_sums_weights_and_drops_zeros() -> None:
    rows = [(0, 1, 2.0, T0, 0), (0, 1, 4.0, T0 + 1, 0), (1, 0, 1.0, T0 + 2, 1), (1, 2, 0.0, T0 + 3, 1)]
    matrix = als.confidence_matrix(make_interactions(rows), alpha=10.0)
    assert matrix.nnz == 2
    assert matrix[0, 1] == pytest.approx(61.0)
    assert matrix[1, 0] == pytest.approx(11.0)


def test_same_seed_same_model_other_seed_other_model() -> None:
    a = small(random_state=1).fit(DATA).item_factors
    b = small(random_state=1).fit(DATA).item_factors
    c = small(random_state=2).fit(DATA).item_factors
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_thread_count_does_not_change_the_model() -> None:
    one = small(num_threads=1).fit(DATA).item_factors
    two = small(num_threads=2).fit(DATA).item_factors
    np.testing.assert_allclose(one, two, rtol=1e-5, atol=1e-6)


def test_no_blas_threadpool_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small().fit(DATA)
    assert not [w for w in caught if "threadpool" in str(w.message).lower()]


def test_mean_event_weight_is_kept_for_histories() -> None:
    model = small().fit(DATA)
    assert model.event_weight == pytest.approx(float(DATA.weight.mean()), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [{"factors": 0}, {"iterations": 0}, {"alpha": 0.0}, {"regularization": -0.1}, {"num_threads": -1}],
)
def test_refuses_invalid_hyperparameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ALSRecommender(**kwargs)  # type: ignore[arg-type]


def test_blas_thread_limit_is_restored() -> None:
    from threadpoolctl import threadpool_info

    before = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    model = small().fit(DATA)
    model.score(DATA.histories()[:50])
    assert [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"] == before
