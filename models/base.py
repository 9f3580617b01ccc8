"""The one recommender contract every model family implements.

Models work on dense integer indices (``0..n_items-1``); mapping external ``item_id`` strings to indices is
the job of the item index shipped with each model package (see ``pipelines.features``). A user is described
only by their *history* (chronological item indices), so the same call serves offline evaluation, cold users
(empty history) and real-time requests whose history the online store just updated.

Each family has one frozen :class:`ModelConfig` subclass holding its hyper-parameters and their defaults: it
is both its ``train.<family>`` section of params.yaml and its constructor input. How to fit (seed, device,
threads) is not a hyper-parameter: it arrives with each :meth:`Recommender.fit` as a :class:`FitContext`.

Weights are stored as safetensors plus a JSON config: never pickle.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, ValidationError

from core.errors import RecopsError
from models.arrays import SECONDS_PER_DAY as SECONDS_PER_DAY
from models.arrays import FloatArray as FloatArray
from models.arrays import IntArray as IntArray
from models.arrays import decayed_popularity as decayed_popularity
from models.arrays import flatten_histories as flatten_histories
from models.arrays import history_matrix as history_matrix
from models.arrays import top_k as top_k

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1

#: ``recommend`` scores at most about this many (user, item) cells at once (4M float32 = 16 MiB).
RECOMMEND_BLOCK_CELLS = 1 << 22

#: Half-life (days before the newest training event) of the popularity that users without history get.
COLD_HALF_LIFE_DAYS = 7.0

#: Called after each training epoch / iteration with (epoch, metrics); used to log per-epoch MLflow metrics.
EpochCallback = Callable[[int, dict[str, float]], None]

Device = Literal["cpu", "cuda"]


class ModelLoadError(RecopsError):
    """A saved model is missing, corrupt or of an unknown family/format."""


class ModelConfig(BaseModel):
    """Base of every family's hyper-parameters: frozen, unknown keys refused, the defaults in one place.

    A subclass is the family's ``train.<family>`` section of params.yaml, its constructor input and what its
    ``config.json`` records. Constraints on values are pydantic field constraints or validators, so a bad
    value fails the same way from params.yaml, from ``create_model`` and from a saved model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")


def config_errors(exc: ValidationError) -> str:
    """A pydantic error as one line for a person: ``factors: Input should be ... ; alpha: ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else str(err["msg"]))
    return "; ".join(parts)


@dataclass(frozen=True)
class FitContext:
    """How to fit, chosen by the caller and never saved with the model.

    Attributes:
        seed: seed of every random choice a family makes (initial factors, sampling, shuffling).
        device: ``"cpu"`` or ``"cuda"``. Families that only run on a CPU ignore it.
        threads: worker threads a family may start itself (implicit's ``num_threads``, torch's intra-op
            threads); 0 means every core the process may use. BLAS pools are not set here but once per
            process (:func:`models.threads.limit_threads`).
        exclude_seen: the evaluation filters each shopper's seen items out of the ranking
            (``evaluate.exclude_seen``); families that early-stop on validation score it the same way.
    """

    seed: int = 42
    device: Device = "cpu"
    threads: int = 0
    exclude_seen: bool = False

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"FitContext.device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.threads < 0:
            raise ValueError(f"FitContext.threads must be >= 0, got {self.threads}")

    def resolved_threads(self) -> int:
        """:attr:`threads`, with 0 turned into the number of cores the process may use."""
        from models.threads import available_cpus

        return self.threads or available_cpus()


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
    #: Optional categorical side information per item: feature name (``category_idx``, ``brand_idx``,
    #: ``price_bucket``) -> ``(n_items,)`` integer codes, -1 where unknown. Families that embed item
    #: features (sasrec) read it, so items without events are not invisible to them; the others ignore it.
    item_features: Mapping[str, IntArray] | None = None

    def __post_init__(self) -> None:
        for name, codes in (self.item_features or {}).items():
            if np.shape(codes) != (self.n_items,) or not np.issubdtype(np.asarray(codes).dtype, np.integer):
                raise ValueError(f"Interactions.item_features[{name!r}] must be {self.n_items} integer codes")
            if len(codes) and int(np.min(codes)) < -1:
                raise ValueError(f"Interactions.item_features[{name!r}] has codes below -1 (-1 = unknown)")
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


class Recommender(ABC):
    """Base class: subclasses implement ``_fit``, ``score``, ``_weights`` and ``_from_weights``.

    A family sets :attr:`family`, :attr:`config_class` (its :class:`ModelConfig`) and takes an instance of
    it as its only constructor argument (None: the defaults). ``recommend`` (top-K with exclusions, padding
    and a popularity fallback for empty histories) is shared, so every family behaves the same at the edges
    and one contract test suite covers them all.
    """

    family: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    #: The family runs on torch: it trains on a GPU when the caller finds one and needs torch to score.
    uses_torch: ClassVar[bool] = False

    def __init__(self, config: ModelConfig | None = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(config).__name__}"
            )
        self.config = config
        self.n_items: int = 0
        # Weighted interaction count per item; every family keeps it for cold users and tie-breaking.
        self.item_popularity: FloatArray = np.zeros(0, dtype=np.float32)
        # Time-decayed popularity (half-life COLD_HALF_LIFE_DAYS): what users without history get.
        self.cold_popularity: FloatArray = np.zeros(0, dtype=np.float32)

    # --- to implement -------------------------------------------------------------------------------
    @abstractmethod
    def _fit(
        self,
        train: Interactions,
        valid: Interactions | None,
        ctx: FitContext,
        on_epoch: EpochCallback | None,
    ) -> None:
        """Learn from ``train`` (``self.n_items`` and the popularity arrays are already set).

        ``valid`` (None or non-empty) is only for early stopping; families that do not early-stop ignore it.
        """

    @abstractmethod
    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        """Scores of every item for each history: shape ``(len(histories), n_items)``, higher is better."""

    @abstractmethod
    def _weights(self) -> dict[str, NDArray[Any]]:
        """Learned state as named numpy arrays (saved with safetensors)."""

    @abstractmethod
    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        """Restore learned state saved by ``_weights``."""

    def hyperparameters(self) -> dict[str, Any]:
        """The config as JSON values: ``type(self)(config_class(**hyperparameters()))`` rebuilds the model."""
        return self.config.model_dump(mode="json")

    @classmethod
    def _upgrade_hyperparameters(cls, saved: dict[str, Any]) -> dict[str, Any]:
        """Hyper-parameters read from an older ``config.json``, in today's form (default: unchanged)."""
        return saved

    def refit_config(self) -> ModelConfig:
        """The config for refitting this (selection) model's setting on train + valid, without validation.

        What early stopping chose on the validation split is applied as a fixed setting, e.g. the best
        epoch becomes ``max_epochs``, so the refit never trains longer than validation said (default: the
        config unchanged, for families that do not early-stop).
        """
        return self.config

    def cold_scores(self) -> FloatArray:
        """Scores of every item for a user without history (default: recent, time-decayed popularity).

        Recent popularity is the strong baseline for cold users, so personalised families do not lose to it
        on them (the promotion guardrail compares cold-user quality).
        """
        return self.cold_popularity if len(self.cold_popularity) == self.n_items else self.item_popularity

    # --- shared behaviour -----------------------------------------------------------------------------
    def fit(
        self,
        train: Interactions,
        valid: Interactions | None = None,
        ctx: FitContext | None = None,
        on_epoch: EpochCallback | None = None,
    ) -> Self:
        """Train on ``train``; returns ``self``.

        Args:
            train: the events to learn from.
            valid: held-out later events for early stopping (same users and items); ignored by families
                that do not early-stop. An empty one counts as None.
            ctx: seed, device and thread budget (default: ``FitContext()``).
            on_epoch: called after each epoch / iteration with its metrics.
        Raises:
            ValueError: ``train`` is empty, or ``valid`` indexes other users or items.
        """
        if len(train) == 0:
            raise ValueError(f"{self.family}: cannot fit on zero interactions")
        if valid is not None and (valid.n_items, valid.n_users) != (train.n_items, train.n_users):
            raise ValueError(
                f"{self.family}: valid has {valid.n_users} users x {valid.n_items} items, "
                f"train {train.n_users} x {train.n_items}; both must use the same index"
            )
        self.n_items = train.n_items
        self.item_popularity = np.bincount(
            train.item_idx, weights=train.weight, minlength=train.n_items
        ).astype(np.float32)
        self.cold_popularity = decayed_popularity(train, COLD_HALF_LIFE_DAYS)
        self._fit(train, valid if valid is not None and len(valid) else None, ctx or FitContext(), on_epoch)
        return self

    def recommend(
        self,
        histories: Sequence[IntArray],
        k: int,
        exclude: Sequence[IntArray] | None = None,
        item_mask: NDArray[np.bool_] | None = None,
    ) -> tuple[IntArray, FloatArray]:
        """Top-``k`` item indices and scores for each history, best first.

        Ties are broken by a tiny all-time popularity term, then by item index (lowest first), so the
        result is the same on every run and machine.

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
        # Cold rows fall back to cold_scores(); a tiny popularity term breaks ties (top_k then the index).
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
        """Write ``config.json`` and ``weights.safetensors`` into the folder ``path`` (created if needed).

        The bytes depend only on the fitted state: JSON with sorted keys, safetensors without metadata.
        """
        from safetensors.numpy import save_file

        self._check_fitted()
        path.mkdir(parents=True, exist_ok=True)
        weights = {"item_popularity": self.item_popularity, "cold_popularity": self.cold_popularity}
        weights.update(self._weights())
        save_file({k: np.ascontiguousarray(v) for k, v in sorted(weights.items())}, str(path / WEIGHTS_FILE))
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
        hyper = config["hyperparameters"]
        if not isinstance(hyper, dict):
            raise ModelLoadError(f"{path / CONFIG_FILE}: hyperparameters must be a mapping")
        try:
            model_config = cls.config_class.model_validate(cls._upgrade_hyperparameters(dict(hyper)))
        except ValidationError as exc:
            raise ModelLoadError(
                f"{path / CONFIG_FILE}: bad {cls.family} hyperparameters: {config_errors(exc)}"
            ) from exc
        model = cls(model_config)
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
