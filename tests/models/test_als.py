"""ALS through implicit: per-iteration reporting, exact user vectors from histories, seeds and threads."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from implicit.cpu.als import AlternatingLeastSquares
from pydantic import ValidationError

import models.als as als
from models import load_model
from models.als import ALSConfig, ALSRecommender
from models.base import CONFIG_FILE, FitContext, history_matrix
from tests.models.conftest import T0, make_interactions, random_interactions

DATA = random_interactions(8000, n_users=300, n_items=120, seed=21)
CTX = FitContext(seed=3, threads=1)


def small(**overrides: object) -> ALSRecommender:
    params: dict[str, object] = {"factors": 8, "iterations": 6, "regularization": 0.1, "alpha": 5.0}
    return ALSRecommender(ALSConfig(**{**params, **overrides}))  # type: ignore[arg-type]


def test_on_epoch_reports_a_decreasing_loss() -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    small(iterations=8).fit(DATA, ctx=CTX, on_epoch=lambda epoch, metrics: seen.append((epoch, metrics)))
    assert [epoch for epoch, _ in seen] == list(range(8))
    losses = [metrics["loss"] for _, metrics in seen]
    assert all(metrics["seconds"] >= 0 for _, metrics in seen)
    assert losses[-1] < losses[0]
    assert all(b <= a * (1 + 1e-4) for a, b in itertools.pairwise(losses)), losses


def test_user_vectors_equal_implicit_recalculate_user() -> None:
    model = small().fit(DATA, ctx=CTX)
    histories = [*DATA.histories()[:40], np.array([5, 5, 7]), np.array([], dtype=np.int64)]
    cfg = model.config
    reference = AlternatingLeastSquares(factors=cfg.factors, regularization=cfg.regularization, alpha=1.0)
    reference.item_factors = model.item_factors
    confidence = history_matrix(histories, DATA.n_items)
    confidence.data = 1.0 + cfg.alpha * model.event_weight * confidence.data
    expected = reference.recalculate_user(np.arange(len(histories)), confidence)
    np.testing.assert_allclose(model.user_vectors(histories), expected, rtol=1e-3, atol=1e-4)
    assert not model.user_vectors([np.array([], dtype=np.int64)]).any(), "empty history -> zero vector"


def test_scores_are_user_vectors_times_item_factors() -> None:
    model = small().fit(DATA, ctx=CTX)
    histories = DATA.histories()[:10]
    expected = model.user_vectors(histories).astype(np.float32) @ model.item_factors.T
    np.testing.assert_allclose(model.score(histories), expected, rtol=1e-6)


def test_chunked_scoring_equals_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small().fit(DATA, ctx=CTX)
    histories = DATA.histories()
    whole = model.user_vectors(histories)
    monkeypatch.setattr(als, "SCORE_BATCH_SLOTS", 64)
    np.testing.assert_allclose(model.user_vectors(histories), whole, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("length", [1, 3, 5, 11, 40])
def test_one_shopper_vector_equals_the_batched_solve(length: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scorer's one-history path (Woodbury below 3/4 of the factors, the direct solve above: 8 factors
    put the switch at 6 distinct items) gives the batched path's vector to rounding, repeats included."""
    model = small().fit(DATA, ctx=CTX)
    rng = np.random.default_rng(length)
    history = rng.integers(0, DATA.n_items, length)
    one = model.user_vectors([history])
    two = model.user_vectors([history, np.array([0, 1])])  # a scorer's batch: one by one
    monkeypatch.setattr(als, "ONLINE_BATCH", 0)
    batched = model.user_vectors([history, np.array([0, 1])])  # the batched solve (offline evaluation)
    np.testing.assert_array_equal(two[:1], one)
    np.testing.assert_allclose(two, batched, rtol=1e-10, atol=1e-13)
    batched = batched[:1]
    np.testing.assert_allclose(one, batched, rtol=1e-10, atol=1e-13)
    assert np.abs(one).max() > 1e-3, "a real vector, not zeros"


def test_woodbury_matches_the_normal_equations_at_scale() -> None:
    """128 factors, 20 distinct items with repeats: the Woodbury vector solves the normal equations."""
    rng = np.random.default_rng(5)
    model = ALSRecommender(ALSConfig(factors=128, regularization=30.0, alpha=1.0))
    model.item_factors = rng.normal(0, 0.3, (500, 128)).astype(np.float32)
    model.n_items = 500
    model.event_weight = 1.7
    history = np.concatenate([rng.choice(500, 20, replace=False), [3, 3, 3]])
    vector = model._one_vector(history)[0]
    items, counts = np.unique(history, return_counts=True)
    factors = model.item_factors[items].astype(np.float64)
    extra = (np.float32(1.7) * counts.astype(np.float32)).astype(np.float64)  # float32, as the model's
    all_factors = model.item_factors.astype(np.float64)
    lhs = all_factors.T @ all_factors + (factors.T * extra) @ factors + 30.0 * np.eye(128)
    expected = np.linalg.solve(lhs, (1.0 + extra) @ factors)
    np.testing.assert_allclose(vector, expected, rtol=1e-9, atol=1e-12)


def test_item_index_out_of_range_is_refused_for_one_shopper() -> None:
    model = small().fit(DATA, ctx=CTX)
    with pytest.raises(ValueError, match="out of range"):
        model.user_vectors([np.array([DATA.n_items])])
    with pytest.raises(ValueError, match="out of range"):
        model.user_vectors([np.array([-1, 2])])


def test_confidence_matrix_sums_weights_and_drops_zeros() -> None:
    rows = [(0, 1, 2.0, T0, 0), (0, 1, 4.0, T0 + 1, 0), (1, 0, 1.0, T0 + 2, 1), (1, 2, 0.0, T0 + 3, 1)]
    matrix = als.confidence_matrix(make_interactions(rows), alpha=10.0)
    assert matrix.nnz == 2
    assert matrix[0, 1] == pytest.approx(61.0)
    assert matrix[1, 0] == pytest.approx(11.0)


def test_same_seed_same_model_other_seed_other_model() -> None:
    a = small().fit(DATA, ctx=FitContext(seed=1, threads=1)).item_factors
    b = small().fit(DATA, ctx=FitContext(seed=1, threads=1)).item_factors
    c = small().fit(DATA, ctx=FitContext(seed=2, threads=1)).item_factors
    assert a.tobytes() == b.tobytes()
    assert not np.allclose(a, c)


def test_thread_count_does_not_change_the_model() -> None:
    """implicit solves each user and item on one thread, so the worker count leaves every bit alone."""
    one = small().fit(DATA, ctx=FitContext(seed=3, threads=1)).item_factors
    two = small().fit(DATA, ctx=FitContext(seed=3, threads=2)).item_factors
    assert one.tobytes() == two.tobytes()


def test_no_blas_threadpool_warning() -> None:
    """With the process's BLAS limited once (the conftest does it like the train step), implicit is quiet."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        small().fit(DATA, ctx=CTX)
    assert not [w for w in caught if "threadpool" in str(w.message).lower()]


def test_mean_event_weight_is_kept_for_histories() -> None:
    model = small().fit(DATA, ctx=CTX)
    assert model.event_weight == pytest.approx(float(DATA.weight.mean()), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"factors": 0}, {"iterations": 0}, {"alpha": 0.0}, {"regularization": -0.1}, {"seed": 1}]
)
def test_refuses_invalid_hyperparameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        ALSConfig(**kwargs)  # type: ignore[arg-type]


def test_fit_and_score_leave_the_thread_pools_alone() -> None:
    """Thread limits are the process's business (models.threads.limit_threads), never changed per call."""
    from threadpoolctl import threadpool_info

    before = [(pool["user_api"], pool["num_threads"]) for pool in threadpool_info()]
    model = small().fit(DATA, ctx=CTX)
    model.score(DATA.histories()[:50])
    assert [(pool["user_api"], pool["num_threads"]) for pool in threadpool_info()] == before


def test_models_saved_with_seed_and_threads_still_load(tmp_path: Path) -> None:
    """Before FitContext, config.json held random_state and num_threads: such packages still load."""
    model = small().fit(DATA, ctx=CTX)
    model.save(tmp_path)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    config["hyperparameters"].update(random_state=42, num_threads=0)
    (tmp_path / CONFIG_FILE).write_text(json.dumps(config))
    loaded = load_model(tmp_path)
    assert isinstance(loaded, ALSRecommender)
    assert loaded.config == model.config
    np.testing.assert_array_equal(loaded.score(DATA.histories()[:20]), model.score(DATA.histories()[:20]))
