"""Typed view of ``params.yaml``: the only place that file is read.

Each stage gets its own section object and takes it as an argument; unknown keys are errors, so a typo in
``params.yaml`` or in ``dvc exp run -S`` fails loudly instead of being ignored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.errors import RecopsError
from core.schema import EVENT_TYPES
from registry.gate import PromoteParams

ModelFamily = Literal["popularity", "recent_popularity", "itemknn", "als", "sasrec"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateParams(_Section):
    days: int = Field(60, ge=1, le=3660)
    start: date = date(2026, 1, 1)
    users: int = Field(6000, ge=1)
    items: int = Field(2500, ge=1)
    seed: int = 42


class ValidateParams(_Section):
    max_future_skew_minutes: float = Field(5.0, ge=0)
    max_duplicate_rate: float = Field(0.01, ge=0, le=1)
    volume_history_batches: int = Field(7, ge=0)
    volume_min_ratio: float = Field(0.2, ge=0)
    volume_max_ratio: float = Field(5.0, gt=0)
    max_string_length: int = Field(256, ge=1)


class FeatureParams(_Section):
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
    )
    session_gap_minutes: float = Field(30.0, gt=0)
    dedup_seconds: float = Field(2.0, ge=0)
    valid_days: int = Field(7, ge=0)
    test_days: int = Field(7, ge=1)
    recent_windows_days: list[int] = Field(default_factory=lambda: [1, 7, 30])
    max_sequence_length: int = Field(50, ge=1)

    @field_validator("event_weights")
    @classmethod
    def _weights_cover_event_types(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(EVENT_TYPES))
        missing = sorted(set(EVENT_TYPES) - set(value))
        if unknown or missing:
            raise ValueError(
                f"event_weights must have exactly {EVENT_TYPES}; unknown={unknown} missing={missing}"
            )
        if any(w < 0 for w in value.values()):
            raise ValueError("event_weights must be >= 0")
        return value


class PopularityParams(_Section):
    pass


class RecentPopularityParams(_Section):
    half_life_days: float = Field(7.0, gt=0)


class ItemKNNParams(_Section):
    neighbours: int = Field(200, ge=1)
    shrinkage: float = Field(10.0, ge=0)
    session_weight: float = Field(1.0, ge=0)
    user_weight: float = Field(0.2, ge=0)
    repeat_weight: float = Field(0.3, ge=0)
    repeat_decay: float = Field(0.98, gt=0, le=1)


class ALSParams(_Section):
    factors: int = Field(128, ge=1)
    regularization: float = Field(30.0, ge=0)
    alpha: float = Field(1.0, gt=0)
    iterations: int = Field(15, ge=1)


class TrainParams(_Section):
    families: list[ModelFamily] = Field(
        default_factory=lambda: ["popularity", "recent_popularity", "itemknn", "als"]  # type: ignore[arg-type]
    )
    popularity: PopularityParams = PopularityParams()
    recent_popularity: RecentPopularityParams = RecentPopularityParams()
    itemknn: ItemKNNParams = ItemKNNParams()
    als: ALSParams = ALSParams()

    def family_params(self, family: ModelFamily) -> dict[str, object]:
        """Hyper-parameters of one family as a plain dict (for model constructors and MLflow)."""
        section = getattr(self, family, None)
        if section is None:
            raise KeyError(f"no params section train.{family} in params.yaml")
        assert isinstance(section, BaseModel)
        return section.model_dump()


class EvaluateParams(_Section):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    primary_metric: str = "ndcg_at_10"
    exclude_seen: bool = False
    bootstrap_samples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)


class Params(_Section):
    seed: int = 42
    generate: GenerateParams = GenerateParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @property
    def validation(self) -> ValidateParams:
        return self.validate_

    def digest(self) -> str:
        """A stable hash of every parameter (the ``params_hash`` lineage tag)."""
        payload = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


class ParamsError(RecopsError, ValueError):
    """params.yaml is missing, unreadable or holds an invalid value."""


def load_params(path: Path) -> Params:
    """Read and validate ``params.yaml``; every problem is reported with its key."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ParamsError(f"params file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path} is not UTF-8 text: {exc}") from exc
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ParamsError(f"invalid {path.name}:\n  " + "\n  ".join(lines)) from exc
