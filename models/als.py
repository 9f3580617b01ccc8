"""Implicit-feedback matrix factorisation (Hu, Koren & Volinsky 2008) trained with ``implicit``'s CPU ALS.

Training uses confidence ``c_ui = 1 + alpha * w_ui`` (``w_ui``: summed event weights of user u on item i)
and preference 1 on every observed pair. Only item factors are kept: a user vector is recomputed from the
history at scoring time, exactly as implicit's ``recalculate_user`` does,
``x_u = (Y^T Y + Y^T (C_u - I) Y + reg I)^-1 Y^T C_u p_u``, so new and returning users are served alike.
A history has no event weights, so each occurrence of an item counts as the mean training event weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    ModelConfig,
    ModelLoadError,
    Recommender,
    history_matrix,
)

if TYPE_CHECKING:
    import scipy.sparse as sp

#: Padded (user, history item) slots solved at once when scoring (memory: this x ``factors`` x 8 bytes);
#: small batches stay in cache and measured fastest (4-8k slots at 64 factors).
SCORE_BATCH_SLOTS = 8_192

#: Histories up to this many are solved one by one (:meth:`ALSRecommender._one_vector`, Woodbury for short
#: ones): the scorer's batches of one event-loop turn. Larger sets (offline evaluation) are solved batched.
ONLINE_BATCH = 64

#: Keys older ``config.json`` files hold that are no longer hyper-parameters (the seed and the thread count
#: now come with each fit, in :class:`models.base.FitContext`).
_FIT_TIME_KEYS = ("random_state", "num_threads")


def confidence_matrix(data: Interactions, alpha: float) -> sp.csr_matrix:
    """``(n_users, n_items)`` CSR of ``1 + alpha * summed weight`` over observed pairs with weight > 0."""
    import scipy.sparse as sp

    matrix = sp.csr_matrix(
        (data.weight.astype(np.float32), (data.user_idx, data.item_idx)),
        shape=(data.n_users, data.n_items),
        dtype=np.float32,
    )
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    matrix.data = (1.0 + alpha * matrix.data).astype(np.float32)
    return matrix


class ALSConfig(ModelConfig):
    """Hyper-parameters of :class:`ALSRecommender` (params.yaml ``train.als``; tuned on the generator data,
    see docs/benchmarks.md).

    Attributes:
        factors: latent dimensions.
        regularization: L2 penalty on the factors.
        alpha: confidence slope, ``c = 1 + alpha * weight``; the best value depends on the event weights.
        iterations: ALS sweeps (each solves all users, then all items).
    """

    factors: int = Field(128, ge=1)
    regularization: float = Field(30.0, ge=0)
    alpha: float = Field(1.0, gt=0)
    iterations: int = Field(15, ge=1)


class ALSRecommender(Recommender):
    """Alternating least squares on implicit feedback; scores are ``user_vector @ item_factors.T``.

    The initial factors come from ``FitContext.seed`` (same seed, same model, byte for byte) and implicit's
    worker threads from ``FitContext.threads`` (the count does not change the result).
    """

    family = "als"
    config_class = ALSConfig
    config: ALSConfig

    def __init__(self, config: ALSConfig | None = None) -> None:
        super().__init__(config)
        self.item_factors: FloatArray = np.zeros((0, self.config.factors), dtype=np.float32)
        self.event_weight = 1.0  # mean training event weight, the weight given to each history entry
        self._solver_cache: tuple[FloatArray, NDArray[np.float64], NDArray[np.float64]] | None = None

    @classmethod
    def _upgrade_hyperparameters(cls, saved: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in saved.items() if k not in _FIT_TIME_KEYS}

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        from implicit.cpu.als import AlternatingLeastSquares

        confidence = confidence_matrix(train, self.config.alpha)
        positive = train.weight[train.weight > 0]
        self.event_weight = float(positive.mean()) if len(positive) else 1.0

        def report(iteration: int, elapsed: float, loss: float | None) -> None:
            if on_epoch is not None:
                metrics = {"seconds": float(elapsed)}
                if loss is not None:
                    metrics["loss"] = float(loss)
                on_epoch(iteration, metrics)

        # BLAS pools are limited once per process (models.threads.limit_threads), not here.
        model = AlternatingLeastSquares(
            factors=self.config.factors,
            regularization=self.config.regularization,
            alpha=1.0,  # the matrix already holds the full confidence 1 + alpha * w
            dtype=np.float32,
            iterations=self.config.iterations,
            calculate_training_loss=on_epoch is not None,
            num_threads=ctx.resolved_threads(),
            random_state=ctx.seed,
        )
        model.fit(confidence, show_progress=False, callback=report)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def user_vectors(self, histories: Sequence[IntArray]) -> NDArray[np.float64]:
        """Least-squares user factors for each history (zeros for empty histories), shape ``(n, factors)``."""
        self._check_fitted()
        if len(histories) <= ONLINE_BATCH:  # the scorer's shoppers: one by one, no sparse matrix
            vectors = np.zeros((len(histories), self.config.factors), dtype=np.float64)
            for row, history in enumerate(histories):
                if len(history):
                    vectors[row] = self._one_vector(history)[0]
            return vectors
        counts = history_matrix(histories, self.n_items)
        n, f = len(histories), self.config.factors
        vectors = np.zeros((n, f), dtype=np.float64)
        gram, _ = self._solver_state()
        lengths = np.diff(counts.indptr)
        order = np.argsort(lengths, kind="stable")
        order = order[lengths[order] > 0]
        widths = lengths[order]
        start = 0
        # Many small products: the process limits BLAS to one thread once (models.threads.limit_threads).
        while start < len(order):  # lengths ascend, so a chunk's last history is its widest
            stop = start + 1
            while stop < len(order) and (stop - start + 1) * int(widths[stop]) <= SCORE_BATCH_SLOTS:
                stop += 1
            vectors[order[start:stop]] = self._solve(counts, order[start:stop], gram)
            start = stop
        return vectors

    def _one_vector(self, history: IntArray) -> NDArray[np.float64]:
        """:meth:`_solve` for one non-empty history, shape ``(1, factors)``, without the sparse matrix.

        A history of ``L < 3/4 factors`` distinct items (every request of the scorer on the default data) is
        solved through the Woodbury identity: with ``S = D^1/2 F`` (``F`` the history's item factors, ``D``
        their extra confidence), ``(G + S^T S)^-1 = G^-1 - G^-1 S^T (I + S G^-1 S^T)^-1 S G^-1``, and
        ``Y G^-1`` is precomputed per set of item factors, so a request solves an ``L x L`` system instead
        of a ``factors x factors`` one (4-5x less CPU at 20 items and 128 factors). Longer histories take
        the direct solve. Both agree with :meth:`_solve` to rounding (about 1e-16 absolute: tested).
        """
        items, counts = np.unique(np.asarray(history, dtype=np.int64).reshape(-1), return_counts=True)
        if int(items[0]) < 0 or int(items[-1]) >= self.n_items:
            raise ValueError(f"item index out of range [0, {self.n_items}) in histories")
        gram, projected = self._solver_state()
        factors = self.item_factors[items].astype(np.float64)
        extra = self.config.alpha * self.event_weight * counts.astype(np.float32)  # as _solve's sub.data
        if 4 * len(items) < 3 * self.config.factors:
            solved = _woodbury_vector(factors, projected[items], extra.astype(np.float64))
            if solved is not None:
                return solved[None]
        lhs = gram[None] + np.matmul(factors.T[None] * extra[None, None, :], factors[None])
        rhs = np.matmul((1.0 + extra.astype(np.float64))[None, None, :], factors[None])[:, 0, :]
        direct: NDArray[np.float64] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
        return direct

    def _solver_state(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``G = Y^T Y + reg I`` and ``Y G^-1`` (float64), computed once per set of item factors."""
        if self._solver_cache is None or self._solver_cache[0] is not self.item_factors:
            item_factors = self.item_factors.astype(np.float64)
            gram = item_factors.T @ item_factors + self.config.regularization * np.eye(self.config.factors)
            projected = np.ascontiguousarray(np.linalg.solve(gram, item_factors.T).T)  # G symmetric
            self._solver_cache = (self.item_factors, gram, projected)
        return self._solver_cache[1], self._solver_cache[2]

    def _solve(self, counts: Any, rows: IntArray, gram: NDArray[np.float64]) -> NDArray[np.float64]:
        """Batched normal equations for the users ``rows`` of the history count matrix ``counts``."""
        sub = counts[rows]
        lengths = np.diff(sub.indptr)
        width = int(lengths.max())
        slot = np.arange(sub.nnz) - np.repeat(sub.indptr[:-1], lengths)
        row = np.repeat(np.arange(len(rows)), lengths)
        factors = np.zeros((len(rows), width, self.config.factors), dtype=np.float64)
        factors[row, slot] = self.item_factors[sub.indices]  # float32 -> float64: exact
        extra = np.zeros((len(rows), width), dtype=np.float64)  # c - 1 = alpha * weight
        extra[row, slot] = self.config.alpha * self.event_weight * sub.data
        lhs = gram[None] + np.matmul(factors.transpose(0, 2, 1) * extra[:, None, :], factors)
        rhs = np.matmul((1.0 + extra)[:, None, :], factors)[:, 0, :]  # padding slots have zero factors
        solved: NDArray[np.float64] = np.linalg.solve(lhs, rhs[..., None])[..., 0]
        return solved

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """``user_vectors(histories) @ item_factors.T`` as float32 (zeros for empty histories)."""
        vectors = self.user_vectors(histories).astype(np.float32)
        return np.asarray(vectors @ self.item_factors.T, dtype=np.float32)

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {
            "item_factors": self.item_factors,
            "event_weight": np.array([self.event_weight], dtype=np.float32),
        }

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        item_factors = weights.get("item_factors")
        event_weight = weights.get("event_weight")
        shape = (self.n_items, self.config.factors)
        if item_factors is None or item_factors.shape != shape:
            raise ModelLoadError(f"als item_factors missing or not of shape {shape}")
        if event_weight is None or event_weight.shape != (1,):
            raise ModelLoadError("als weights lack event_weight")
        self.item_factors = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.event_weight = float(event_weight[0])


def _woodbury_vector(
    factors: NDArray[np.float64], projected: NDArray[np.float64], extra: NDArray[np.float64]
) -> NDArray[np.float64] | None:
    """``(G + F^T D F)^-1 F^T (1 + extra)`` from ``F`` (``factors``, ``L x f``), ``F G^-1`` (``projected``)
    and ``D = diag(extra)``, ``extra > 0``, by the Woodbury identity (see ``ALSRecommender._one_vector``).
    None when LAPACK does not find ``I + S G^-1 S^T`` positive definite (the caller then solves directly).
    """
    from scipy.linalg.lapack import dposv

    root = np.sqrt(extra)
    base = (1.0 + extra) @ projected  # G^-1 F^T c
    scaled_projected = projected * root[:, None]  # S G^-1
    scaled = factors * root[:, None]  # S
    system = scaled_projected @ scaled.T  # S G^-1 S^T, symmetric positive semi-definite
    system.flat[:: len(extra) + 1] += 1.0
    _, weights, info = dposv(system, scaled @ base, lower=True, overwrite_a=True, overwrite_b=True)
    if info != 0:
        return None
    vector: NDArray[np.float64] = base - weights @ scaled_projected
    return vector
