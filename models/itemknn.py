"""Item-item nearest neighbours from co-occurrence in sessions and in users' histories.

``co(i, j) = session_weight * #sessions with both + user_weight * #users with both`` (each user counted over
their ``max_user_items`` most recent distinct items), ``sim(i, j) = co(i, j) / (sqrt(n_i * n_j) + shrinkage)``
with ``n_i = co(i, i)``, and each item keeps its ``neighbours`` most similar items in a sparse CSR matrix.
Co-occurrences are computed a block of items at a time, so memory stays bounded for catalogues of 10^5
items (a dense ``n_items x n_items`` matrix is never built).

Scoring a history ``h`` (chronological item indices, ``d = 0`` for its last entry)::

    w(i)      = sum of recency_decay ** d over the occurrences of i among the last history_length entries
    r(i)      = sum of repeat_decay ** d over the occurrences of i in the whole history
    score(j)  = sum_i w(i) * sim(i, j)  +  repeat_weight * r(j)

``sim`` has a zero diagonal, so without the repeat term an item the user already had comes back only
through its neighbours. The repeat term adds the user's own (decayed) count of the item, which is what
re-purchases follow in shops: a diagonal ``repeat_weight * I`` added to the similarity at scoring time,
applied to the whole history with its own, slower decay (``repeat_weight = 0`` is the plain item-kNN, which
is also how models saved before the term existed load). It does not change the fit.
"Whole history" is the history passed in: evaluation passes everything before the test period, serving the
latest ``features.max_sequence_length`` events; a slow decay keeps the two close.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import Field, model_validator

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

#: Upper bound on co-occurrence products materialised at once while fitting (about 40 bytes each).
BLOCK_PAIRS = 4_000_000


def _binary(rows: IntArray, cols: IntArray, shape: tuple[int, int]) -> sp.csr_matrix:
    import scipy.sparse as sp

    matrix = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=shape)
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix


def session_item_matrix(data: Interactions) -> sp.csr_matrix:
    """Binary ``(n_sessions, n_items)`` matrix: which items each session touched."""
    n_sessions = int(data.session_idx.max()) + 1 if len(data) else 0
    return _binary(data.session_idx, data.item_idx, (n_sessions, data.n_items))


def user_item_matrix(data: Interactions, max_user_items: int) -> sp.csr_matrix:
    """Binary ``(n_users, n_items)`` matrix over each user's ``max_user_items`` most recently used items."""
    order = np.lexsort((np.arange(len(data)), data.ts))  # time order, stable
    keys = data.user_idx[order] * np.int64(data.n_items) + data.item_idx[order]
    # Last use of each (user, item): first occurrence when walking backwards in time.
    unique_keys, first_from_end = np.unique(keys[::-1], return_index=True)
    last_use = len(keys) - 1 - first_from_end
    users, items = unique_keys // data.n_items, unique_keys % data.n_items
    by_recency = np.lexsort((-last_use, users))
    users, items = users[by_recency], items[by_recency]
    starts = np.searchsorted(users, users, side="left")
    keep = (np.arange(len(users)) - starts) < max_user_items
    return _binary(users[keep], items[keep], (data.n_users, data.n_items))


def _blocks(cost: NDArray[np.float64], budget: int) -> list[tuple[int, int]]:
    """Split ``range(len(cost))`` into consecutive blocks whose summed cost stays near ``budget``."""
    bounds = [0]
    total = 0.0
    for i, c in enumerate(cost):
        if total + c > budget and i > bounds[-1]:
            bounds.append(i)
            total = 0.0
        total += float(c)
    bounds.append(len(cost))
    return list(itertools.pairwise(bounds))


def top_neighbours(
    block: sp.csr_matrix, first_row: int, norms: FloatArray, shrinkage: float, neighbours: int
) -> tuple[IntArray, IntArray, FloatArray]:
    """Shrunk cosine similarities of a block of co-occurrence rows, cut to the top ``neighbours`` per row.

    Returns global ``(rows, cols, sims)`` in no particular order; among equal similarities at the cut, the
    lower column index wins.
    """
    block.sort_indices()  # column order within a row, which the stable sort below keeps among ties
    local = np.repeat(np.arange(block.shape[0], dtype=np.int64), np.diff(block.indptr))
    cols = block.indices.astype(np.int64)
    sims = (block.data / (np.sqrt(norms[local + first_row] * norms[cols]) + shrinkage)).astype(np.float32)
    keep = (local + first_row != cols) & (sims > 0)
    local, cols, sims = local[keep], cols[keep], sims[keep]
    # Only rows with more than `neighbours` entries need ranking; the others are kept whole.
    counts = np.bincount(local, minlength=block.shape[0])
    long = counts[local] > neighbours
    l_local, l_cols, l_sims = local[long], cols[long], sims[long]
    # Cosine is at most 1 (Cauchy-Schwarz on the weighted incidence vectors), so one float64 key orders by
    # row, then by similarity descending; far faster than a three-key lexsort.
    key = l_local * 2.0 + (1.0 - np.minimum(l_sims.astype(np.float64), 1.0))
    order = np.argsort(key, kind="stable")
    l_local, l_cols, l_sims = l_local[order], l_cols[order], l_sims[order]
    l_counts = np.bincount(l_local, minlength=block.shape[0])
    rank = np.arange(len(l_local)) - np.repeat(np.cumsum(l_counts) - l_counts, l_counts)
    top = rank < neighbours
    short = ~long
    return (
        np.concatenate([local[short], l_local[top]]) + first_row,
        np.concatenate([cols[short], l_cols[top]]),
        np.concatenate([sims[short], l_sims[top]]),
    )


class ItemKNNConfig(ModelConfig):
    """Hyper-parameters of :class:`ItemKNNRecommender` (params.yaml ``train.itemknn``; the repeat term is
    tuned in docs/benchmarks.md).

    Attributes:
        neighbours: similar items kept per item.
        shrinkage: added to the cosine denominator; damps similarities resting on few co-occurrences.
        session_weight: weight of co-occurrence within one session.
        user_weight: weight of co-occurrence anywhere in one user's history.
        recency_decay: the ``d``-th item from the end of a history weighs ``recency_decay ** d``.
        history_length: only the last ``history_length`` items of a history are scored.
        max_user_items: distinct most-recent items per user used for user co-occurrence (bounds the cost of
            heavy users, which grows with the square of their history).
        repeat_weight: weight of the user's own decayed count of an item over the whole history.
        repeat_decay: the ``d``-th entry from the end counts ``repeat_decay ** d`` in that count (1: plain
            counts).
    """

    neighbours: int = Field(200, ge=1)
    shrinkage: float = Field(10.0, ge=0)
    session_weight: float = Field(1.0, ge=0)
    user_weight: float = Field(0.2, ge=0)
    recency_decay: float = Field(0.8, gt=0, le=1)
    history_length: int = Field(20, ge=1)
    max_user_items: int = Field(200, ge=1)
    repeat_weight: float = Field(0.3, ge=0)
    repeat_decay: float = Field(0.98, gt=0, le=1)

    @model_validator(mode="after")
    def _some_cooccurrence(self) -> Self:
        if self.session_weight == 0 and self.user_weight == 0:
            raise ValueError("session_weight and user_weight cannot both be 0 (no co-occurrence left)")
        return self


class ItemKNNRecommender(Recommender):
    """Sum of the similarity rows of a user's recent items, later items weighing more."""

    family = "itemknn"
    config_class = ItemKNNConfig
    config: ItemKNNConfig

    def __init__(self, config: ItemKNNConfig | None = None) -> None:
        import scipy.sparse as sp

        super().__init__(config)
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0), dtype=np.float32)

    @classmethod
    def _upgrade_hyperparameters(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """Models saved before the repeat term existed are plain item-kNN."""
        return {"repeat_weight": 0.0, "repeat_decay": 1.0, **saved}

    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        import scipy.sparse as sp

        data, cfg = train, self.config
        parts: list[tuple[float, sp.csr_matrix]] = []
        if cfg.session_weight > 0:
            parts.append((cfg.session_weight, session_item_matrix(data)))
        if cfg.user_weight > 0:
            parts.append((cfg.user_weight, user_item_matrix(data, cfg.max_user_items)))
        norms = np.zeros(data.n_items, dtype=np.float64)
        cost = np.zeros(data.n_items, dtype=np.float64)
        transposed = []
        for weight, matrix in parts:
            norms += weight * np.asarray(matrix.sum(axis=0)).ravel()
            # Products for item i = sum of the lengths of the rows (sessions/users) that contain i.
            cost += matrix.T @ np.diff(matrix.indptr).astype(np.float64)
            transposed.append(matrix.T.tocsr())
        item_norms = norms.astype(np.float32)
        pieces: list[tuple[IntArray, IntArray, FloatArray]] = []
        for start, stop in _blocks(cost, BLOCK_PAIRS):
            block = sp.csr_matrix((stop - start, data.n_items), dtype=np.float32)
            for (weight, matrix), matrix_t in zip(parts, transposed, strict=True):
                block = block + weight * (matrix_t[start:stop] @ matrix)
            pieces.append(top_neighbours(block.tocsr(), start, item_norms, cfg.shrinkage, cfg.neighbours))
        rows = np.concatenate([p[0] for p in pieces])
        cols = np.concatenate([p[1] for p in pieces])
        sims = np.concatenate([p[2] for p in pieces])
        similarity = sp.csr_matrix((sims, (rows, cols)), shape=(data.n_items, data.n_items), dtype=np.float32)
        similarity.sort_indices()
        self.similarity = similarity

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """``W @ similarity + repeat_weight R``, dense ``(n, n_items)`` float32.

        ``W``: recency-weighted recent history, ``R``: decayed counts over the whole history (see the module
        docstring).
        """
        self._check_fitted()
        cfg = self.config
        weights = history_matrix(histories, self.n_items, cfg.recency_decay, cfg.history_length)
        scores = weights @ self.similarity
        if cfg.repeat_weight > 0:
            counts = history_matrix(histories, self.n_items, cfg.repeat_decay)
            scores = scores + cfg.repeat_weight * counts
        return np.asarray(scores.toarray(), dtype=np.float32)

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {
            "similarity_data": self.similarity.data.astype(np.float32),
            "similarity_indices": self.similarity.indices.astype(np.int32),
            "similarity_indptr": self.similarity.indptr.astype(np.int64),
        }

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        import scipy.sparse as sp

        try:
            data, indices, indptr = (weights[f"similarity_{k}"] for k in ("data", "indices", "indptr"))
        except KeyError as exc:
            raise ModelLoadError(f"itemknn weights lack {exc.args[0]}") from exc
        n = self.n_items
        valid = (
            indptr.shape == (n + 1,)
            and len(data) == len(indices) == int(indptr[-1])
            and (len(indices) == 0 or (int(indices.min()) >= 0 and int(indices.max()) < n))
            and bool(np.all(np.diff(indptr) >= 0))
        )
        if not valid:
            raise ModelLoadError("itemknn similarity arrays are inconsistent with each other or with n_items")
        self.similarity = sp.csr_matrix(
            (data.astype(np.float32), indices.astype(np.int32), indptr.astype(np.int64)), shape=(n, n)
        )
