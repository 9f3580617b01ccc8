"""The one recommender contract every model family implements.

Models work on dense integer indices (``0..n_items-1``); mapping external ``item_id`` strings to indices is
the job of the item index shipped with each model package (see ``pipelines.features``). A user is described
only by their *history* (chronological item indices), so the same call serves offline evaluation, cold users
(empty history) and real-time requests whose history the online store just updated.

Weights are stored as safetensors plus a JSON config: never pickle.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from core.errors import RecopsError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1

#: ``recommend`` scores at most about this many (user, item) cells at once (4M float32 = 16 MiB).
RECOMMEND_BLOCK_CELLS = 1 << 22

#: Half-life (days before the newest training event) of the popularity that users without history get.
COLD_HALF_LIFE_DAYS = 7.0
SECONDS_PER_DAY = 86_400.0

#: Called after each training epoch / iteration with (epoch, metrics); used to log per-epoch MLflow metrics.
EpochCallback = Callable[[int, dict[str, float]], None]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]


@dataclass(frozen=True)
class Interactions:
    """Implicit feedback as parallel arrays, one entry per (deduplicated) event, sorted by ``ts``."""

    user_idx: IntArray
    item_idx: IntArray
    weight: FloatArray
    ts: IntArray  # unix seconds, UTC
    session_idx: IntArray
    n_users: int
    n_items: int

    def __post_init__(self) -> None:
        n = len(self.user_idx)
        for name in ("item_idx", "weight", "ts", "session_idx"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Interactions.{name} has {len(getattr(self, name))} entries, expected {n}")
        if n and (int(self.item_idx.max()) >= self.n_items or int(self.item_idx.min()) < 0):
            raise ValueError("Interactions.item_idx out of range [0, n_items)")
        if n and (int(self.user_idx.max()) >= self.n_users or int(self.user_idx.min()) < 0):
            raise ValueError("Interactions.user_idx out of range [0, n_users)")

    def __len__(self) -> int:
        return len(self.user_idx)

    def histories(self) -> list[IntArray]:
        """Each user's items in time order, indexed by user index (empty for users without events)."""
        order = np.lexsort((self.ts, self.user_idx))
        users = self.user_idx[order]
        items = self.item_idx[order]
        bounds = np.searchsorted(users, np.arange(self.n_users + 1))
        return [items[bounds[u] : bounds[u + 1]] for u in range(self.n_users)]


class ModelLoadError(RecopsError):
    """A saved model is missing, corrupt or of an unknown family/format."""


class Recommender(ABC):
    """Base class: subclasses implement ``_fit``, ``score``, ``_weights`` and ``_from_weights``.

    ``recommend`` (top-K with exclusions, padding and a popularity fallback for empty histories) is shared,
    so every family behaves the same at the edges and one contract test suite covers them all.
    """

    family: ClassVar[str]

    def __init__(self) -> None:
        self.n_items: int = 0
        # Weighted interaction count per item; every family keeps it for cold users and tie-breaking.
        self.item_popularity: FloatArray = np.zeros(0, dtype=np.float32)
        # Time-decayed popularity (half-life COLD_HALF_LIFE_DAYS): what users without history get.
        self.cold_popularity: FloatArray = np.zeros(0, dtype=np.float32)

    # --- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def _fit(self, data: Interactions, on_epoch: EpochCallback | None) -> None:
        """Learn from ``data`` (``self.n_items`` and ``self.item_popularity`` are already set)."""

    @abstractmethod
    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """Scores of every item for each history: shape ``(len(histories), n_items)``, higher is better."""

    @abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """Constructor arguments, JSON-serialisable: ``type(self)(**hyperparameters())`` rebuilds it."""

    @abstractmethod
    def _weights(self) -> dict[str, NDArray[Any]]:
        """Learned state as named numpy arrays (saved with safetensors)."""

    @abstractmethod
    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        """Restore learned state saved by ``_weights``."""

    def cold_scores(self) -> FloatArray:
        """Scores of every item for a user without history (default: recent, time-decayed popularity).

        Recent popularity is the strong baseline for cold users, so personalised families do not lose to it
        on them (the promotion guardrail compares cold-user quality).
        """
        return self.cold_popularity if len(self.cold_popularity) == self.n_items else self.item_popularity

    # --- shared behaviour -----------------------------------------------------------------------------
    def fit(self, data: Interactions, on_epoch: EpochCallback | None = None) -> Self:
        """Train on ``data``; returns ``self``."""
        if len(data) == 0:
            raise ValueError(f"{self.family}: cannot fit on zero interactions")
        self.n_items = data.n_items
        self.item_popularity = np.bincount(data.item_idx, weights=data.weight, minlength=data.n_items).astype(
            np.float32
        )
        self.cold_popularity = decayed_popularity(data, COLD_HALF_LIFE_DAYS)
        self._fit(data, on_epoch)
        return self

    def recommend(
        self,
        histories: Sequence[IntArray],
        k: int,
        exclude: Sequence[IntArray] | None = None,
        item_mask: NDArray[np.bool_] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` item indices and scores for each history, best first.

        Args:
            histories: per user, the chronological item indices they interacted with (may be empty).
            k: list length (>= 1). Rows with fewer than ``k`` rankable items are padded with -1 / -inf.
            exclude: per user, item indices that must not be recommended (e.g. already seen).
            item_mask: ``(n_items,)`` booleans, False = never recommend (e.g. out of stock).
        Returns:
            ``(ids, scores)``, both of shape ``(len(histories), k)``.
        """
        if k < 1:
            raise ValueError("k must be >= 1")
        if exclude is not None and len(exclude) != len(histories):
            raise ValueError("exclude must have one entry per history")
        self._check_fitted()
        n = len(histories)
        if n == 0:
            return np.empty((0, k), dtype=np.int64), np.empty((0, k), dtype=np.float32)
        if item_mask is not None and item_mask.shape != (self.n_items,):
            raise ValueError(f"item_mask has shape {item_mask.shape}, expected ({self.n_items},)")
        # Score a slice of users at a time: a dense (users x items) block stays near RECOMMEND_BLOCK_CELLS.
        step = max(1, RECOMMEND_BLOCK_CELLS // max(self.n_items, 1))
        parts = [
            self._recommend_block(
                histories[start : start + step],
                k,
                None if exclude is None else exclude[start : start + step],
                item_mask,
            )
            for start in range(0, n, step)
        ]
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _recommend_block(
        self,
        histories: Sequence[IntArray],
        k: int,
        exclude: Sequence[IntArray] | None,
        item_mask: NDArray[np.bool_] | None,
    ) -> tuple[IntArray, FloatArray]:
        scores = self.score(histories).astype(np.float32, copy=True)
        # Cold rows fall back to cold_scores(); a tiny popularity term breaks ties deterministically.
        pop = self.item_popularity / max(float(self.item_popularity.max()), 1.0)
        cold_rows = np.array([len(h) == 0 for h in histories])
        if cold_rows.any():
            cold = self.cold_scores().astype(np.float32)
            scores[cold_rows] = cold / max(float(np.abs(cold).max()), 1e-12)
        scores += 1e-6 * pop[None, :]
        if item_mask is not None:
            scores[:, ~item_mask] = -np.inf
        if exclude is not None:
            rows, cols = flatten_histories(exclude, self.n_items)
            scores[rows, cols] = -np.inf
        return top_k(scores, k)

    def save(self, path: Path) -> None:
        """Write ``config.json`` and ``weights.safetensors`` into the folder ``path`` (created if needed)."""
        from safetensors.numpy import save_file

        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        weights = {"item_popularity": self.item_popularity, "cold_popularity": self.cold_popularity}
        weights.update(self._weights())
        save_file({k: np.ascontiguousarray(v) for k, v in weights.items()}, str(path / WEIGHTS_FILE))
        config = {
            "format_version": FORMAT_VERSION,
            "family": self.family,
            "n_items": self.n_items,
            "hyperparameters": self.hyperparameters(),
        }
        (path / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> Self:
        """Load a model saved with :meth:`save` (only safetensors and JSON are read)."""
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        config = read_config(path)
        if config["family"] != cls.family:
            raise ModelLoadError(f"{path} holds a {config['family']!r} model, not {cls.family!r}")
        try:
            weights = load_file(str(path / WEIGHTS_FILE))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read weights in {path}: {exc}") from exc
        try:
            model = cls(**config["hyperparameters"])
        except (TypeError, ValueError) as exc:
            raise ModelLoadError(f"{path / CONFIG_FILE}: bad {cls.family} hyperparameters: {exc}") from exc
        model.n_items = int(config["n_items"])
        if "item_popularity" not in weights:
            raise ModelLoadError(f"{path}: weights lack item_popularity")
        model.item_popularity = weights.pop("item_popularity").astype(np.float32)
        if model.item_popularity.shape != (model.n_items,):
            shape = model.item_popularity.shape
            raise ModelLoadError(f"{path}: item_popularity has shape {shape}, expected ({model.n_items},)")
        model.cold_popularity = weights.pop("cold_popularity", model.item_popularity).astype(np.float32)
        if model.cold_popularity.shape != (model.n_items,):
            raise ModelLoadError(f"{path}: cold_popularity does not have n_items entries")
        model._from_weights(weights)
        return model

    def _check_fitted(self) -> None:
        if self.n_items == 0:
            raise RuntimeError(f"{self.family} model is not fitted")


def read_config(path: Path) -> dict[str, Any]:
    """Read and sanity-check a saved model's ``config.json``."""
    try:
        config = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"no {CONFIG_FILE} in {path}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{path / CONFIG_FILE} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        want = f"format_version {FORMAT_VERSION}"
        raise ModelLoadError(f"{path / CONFIG_FILE}: unsupported format (want {want})")
    for key in ("family", "n_items", "hyperparameters"):
        if key not in config:
            raise ModelLoadError(f"{path / CONFIG_FILE}: missing {key!r}")
    return config


def decayed_popularity(data: Interactions, half_life_days: float) -> FloatArray:
    """Summed event weights per item, each halved for every ``half_life_days`` before the newest event."""
    if len(data) == 0:
        return np.zeros(data.n_items, dtype=np.float32)
    age_days = (int(data.ts.max()) - data.ts).astype(np.float64) / SECONDS_PER_DAY
    decay = np.exp(-math.log(2.0) * age_days / half_life_days)
    return np.bincount(data.item_idx, weights=data.weight * decay, minlength=data.n_items).astype(np.float32)


def flatten_histories(histories: Sequence[IntArray], n_items: int) -> tuple[IntArray, IntArray]:
    """``(row, item)`` pairs of every entry of ``histories`` (in order), checked against ``[0, n_items)``."""
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    rows = np.repeat(np.arange(len(histories), dtype=np.int64), lengths)
    if not len(rows):
        return rows, np.empty(0, dtype=np.int64)
    items = np.concatenate([np.asarray(h, dtype=np.int64).reshape(-1) for h in histories])
    if int(items.min()) < 0 or int(items.max()) >= n_items:
        raise ValueError(f"item index out of range [0, {n_items}) in histories")
    return rows, items


def history_matrix(
    histories: Sequence[IntArray], n_items: int, decay: float = 1.0, max_length: int | None = None
) -> Any:
    """Histories as a ``(len(histories), n_items)`` scipy CSR matrix of summed recency weights.

    The last item of a history weighs 1, the one before it ``decay``, then ``decay**2`` and so on; only the
    last ``max_length`` entries count (all when None). Repeated items add up. ``decay=1`` gives counts.
    """
    import scipy.sparse as sp

    if max_length is not None:
        histories = [h[-max_length:] if max_length > 0 else h[:0] for h in histories]
    rows, items = flatten_histories(histories, n_items)
    lengths = np.bincount(rows, minlength=len(histories))
    ends = np.cumsum(lengths)
    distance = ends[rows] - 1 - np.arange(len(rows))  # 0 for the latest item of each history
    values = np.power(np.float32(decay), distance.astype(np.float32)) if decay != 1.0 else np.ones(len(rows))
    matrix = sp.csr_matrix(
        (values.astype(np.float32), (rows, items)), shape=(len(histories), n_items), dtype=np.float32
    )
    matrix.sum_duplicates()
    return matrix


def top_k(scores: FloatArray, k: int) -> tuple[IntArray, FloatArray]:
    """Row-wise top-``k`` of a score matrix, best first; ``-inf`` entries become id -1."""
    n_items = scores.shape[1]
    kk = min(k, n_items)
    part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Stable order: by score descending, then by item index ascending for ties.
    order = np.lexsort((part, -part_scores), axis=1)
    ids = np.take_along_axis(part, order, axis=1).astype(np.int64)
    top = np.take_along_axis(part_scores, order, axis=1).astype(np.float32)
    ids[~np.isfinite(top)] = -1
    top[~np.isfinite(top)] = -np.inf
    if kk < k:
        ids = np.pad(ids, ((0, 0), (0, k - kk)), constant_values=-1)
        top = np.pad(top, ((0, 0), (0, k - kk)), constant_values=-np.inf)
    return ids, top
