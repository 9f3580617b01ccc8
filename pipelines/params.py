"""Typed view of ``params.yaml``: the only place that file is read.

Each stage gets its own section object and takes it as an argument; unknown keys are errors, so a typo in
``params.yaml`` or in ``dvc exp run -S`` fails loudly instead of being ignored.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.errors import RecopsError
from core.schema import EVENT_TYPES
from registry.gate import PromoteParams

if TYPE_CHECKING:
    from models import ModelConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GenerateParams(_Section):
    days: int = Field(60, ge=1, le=3660)
    start: date = date(2026, 1, 1)
    users: int = Field(6000, ge=1)
    items: int = Field(2500, ge=1)
    seed: int = 42


class ValidateParams(_Section):
    """Thresholds of the validation gate. Column rules (text length, allowed text, null tokens, price and
    quantity bounds) are not tunables: they live in ``core.schema``, shared with the loaders."""

    max_future_skew_minutes: float = Field(5.0, ge=0)
    max_duplicate_rate: float = Field(0.01, ge=0, le=1)
    volume_history_batches: int = Field(7, ge=0)
    volume_min_ratio: float = Field(0.2, ge=0)
    volume_max_ratio: float = Field(5.0, gt=0)
    volume_floor_rows: int = Field(50, ge=0)


#: How events are split into train / validation / test (see :mod:`pipelines.features.split`).
SplitProtocol = Literal["temporal", "loo"]


class FeatureParams(_Section):
    """``features:``. ``protocol`` picks the split every later stage (train, evaluate, promote) follows:
    ``temporal`` (a global cut on whole UTC days, gated on) or ``loo`` (leave-one-out per user, for
    comparison with published sequential-recommendation numbers)."""

    protocol: SplitProtocol = "temporal"
    event_weights: dict[str, float] = Field(
        default_factory=lambda: {"view": 1.0, "click": 2.0, "add_to_cart": 4.0, "purchase": 8.0}
    )
    session_gap_minutes: float = Field(30.0, gt=0)
    dedup_seconds: float = Field(2.0, ge=0)
    valid_days: int = Field(7, ge=0)
    test_days: int = Field(7, ge=1)
    recent_windows_days: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 7, 30])
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


#: A model family name; valid names are the keys of :data:`models.FAMILIES`.
ModelFamily = str
DEFAULT_FAMILIES = ("popularity", "recent_popularity", "itemknn", "als")


def _family_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("model_family", "{message}", {"message": message})


def _registered(name: str) -> str:
    from models import family_names

    if name not in family_names():
        raise _family_error(f"unknown model family {name!r}; known families: {', '.join(family_names())}")
    return name


class TrainParams(_Section):
    """``train:``: which families to train and one section per family.

    A family section (``train.<family>``) is validated by that family's own config class
    (:func:`models.config_class`), which also holds the defaults, so nothing here changes when a family is
    added. Sections of the listed families that params.yaml leaves out get those defaults.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    families: list[Annotated[ModelFamily, AfterValidator(_registered)]] = Field(
        default_factory=lambda: list(DEFAULT_FAMILIES)
    )

    @field_validator("families")
    @classmethod
    def _distinct_families(cls, value: list[str]) -> list[str]:
        duplicates = sorted({name for name in value if value.count(name) > 1})
        if duplicates:
            raise _family_error(f"lists {', '.join(map(repr, duplicates))} more than once")
        if not value:
            raise _family_error("is empty: list at least one model family")
        return value

    @model_validator(mode="before")
    @classmethod
    def _family_sections(cls, data: Any) -> Any:
        """Validate every ``train.<family>`` section with its family's config class; fill in the rest.

        Errors carry their full location (``train.als.factors``), like those of any other section.
        """
        from models import ModelConfig, config_class, family_names

        if not isinstance(data, dict):
            return data
        out = dict(data)
        listed = out.get("families", DEFAULT_FAMILIES)
        names = [k for k in data if k not in cls.model_fields]
        names += [f for f in listed if isinstance(f, str) and f not in data and f in family_names()]
        errors: list[InitErrorDetails] = []
        for name in names:
            section = out.get(name)
            if name not in family_names():
                known = ", ".join(family_names())
                error = _family_error(f"not a model family (no section allowed); known families: {known}")
                errors.append(InitErrorDetails(type=error, loc=(name,), input=section))
                continue
            if isinstance(section, ModelConfig):
                continue
            try:
                out[name] = config_class(name).model_validate({} if section is None else section)
            except ValidationError as exc:
                for err in exc.errors():
                    error = _family_error(str(err["msg"]))
                    errors.append(InitErrorDetails(type=error, loc=(name, *err["loc"]), input=err["input"]))
        if errors:
            raise ValidationError.from_exception_data(cls.__name__, errors)
        return out

    def config(self, family: ModelFamily) -> ModelConfig:
        """The config of ``family`` (its section, or the family's defaults when params.yaml has none).

        Raises:
            UnknownModelFamilyError: ``family`` is not a registered model family (a ``KeyError``).
        """
        from models import ModelConfig, config_class

        cls = config_class(family)
        section = (self.__pydantic_extra__ or {}).get(family)
        return section if isinstance(section, ModelConfig) else cls()

    def family_params(self, family: ModelFamily) -> dict[str, object]:
        """Hyper-parameters of one family as a plain dict of JSON values (for MLflow and reports)."""
        return dict(self.config(family).model_dump(mode="json"))


class EvaluateParams(_Section):
    ks: list[int] = Field(default_factory=lambda: [5, 10, 20])
    primary_metric: str = "ndcg_at_10"
    exclude_seen: bool = False
    bootstrap_samples: int = Field(1000, ge=0)
    confidence: float = Field(0.95, gt=0, lt=1)


class MonitorParams(_Section):
    """``monitor:``: drift of recent batches against the champion's training data (``recops_monitor``).

    A signal above its threshold requests retraining, unless nothing was published since the champion was
    trained (retraining on the same data would only reproduce it). ``metric`` compares the category mix,
    item popularity and events-per-user distributions; ``new_item_rate`` is a share of events.
    """

    SIGNALS: ClassVar[tuple[str, ...]] = (
        "category_mix",
        "item_popularity",
        "events_per_user",
        "new_item_rate",
    )

    recent_batches: int = Field(7, ge=1)
    reference_days: int = Field(28, ge=1)
    metric: Literal["psi", "jensen_shannon"] = "psi"
    top_items: int = Field(200, ge=1)
    min_events: int = Field(1000, ge=1)
    # Online metrics from the scoring service's feedback store (pipelines/monitor/online.py):
    online_window_days: int = Field(7, ge=1)  # feedback of the last N days
    online_min_impressions: int = Field(500, ge=1)  # fewer for a model version and variant: no verdict on it
    online_min_click_through: float = Field(0.02, ge=0, le=1)  # the champion below this: retrain (new data)
    thresholds: dict[str, float] = Field(
        default_factory=lambda: {
            "category_mix": 0.1,
            "item_popularity": 0.35,
            "events_per_user": 0.1,
            "new_item_rate": 0.2,
        }
    )

    @field_validator("thresholds")
    @classmethod
    def _one_threshold_per_signal(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(cls.SIGNALS))
        missing = sorted(set(cls.SIGNALS) - set(value))
        if unknown or missing:
            raise ValueError(
                f"thresholds must name exactly {cls.SIGNALS}; unknown={unknown} missing={missing}"
            )
        if any(not v >= 0 for v in value.values()):
            raise ValueError("thresholds must be >= 0")
        return value


class Params(_Section):
    seed: int = 42
    generate: GenerateParams = GenerateParams()
    validate_: ValidateParams = Field(ValidateParams(), alias="validate")
    features: FeatureParams = FeatureParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    promote: PromoteParams = PromoteParams()
    monitor: MonitorParams = MonitorParams()

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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ParamsError(f"params file not found: {path}") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ParamsError(f"{path} is not UTF-8 text: {exc}") from exc
    if raw is None or raw == {}:
        raise ParamsError(
            f"{path} is empty: it must hold the pipeline parameters (sections generate, validate, features, "
            "train, evaluate, promote); restore it from git (`git checkout -- params.yaml`)"
        )
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ParamsError(f"invalid {path.name}:\n  " + "\n  ".join(lines)) from exc
