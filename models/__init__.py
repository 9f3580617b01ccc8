"""Recommender model families behind one contract (:class:`models.base.Recommender`), found by name.

:data:`FAMILIES` maps each family name to ``"module:Class"``. A family's module is imported only when that
family is used (``family_class``, ``config_class``, ``create_model``, ``load_model``), so importing
``models``, or loading a package of another family, never imports ``implicit`` or ``torch``. Family modules
import their heavy libraries inside methods, so their config classes stay cheap to import (params.yaml is
validated against them).

``create_model(family, config)`` builds an unfitted model from its config (or a ``train.<family>`` params
section as a mapping); ``load_model(path)`` reads any saved model, dispatching on the ``family`` in its
``config.json``. Adding a family: see docs/architecture.md, section Models.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.errors import RecopsError
from models.base import (
    FitContext,
    ModelConfig,
    ModelLoadError,
    Recommender,
    config_errors,
    read_config,
)

#: family name -> ``"module:Class"`` of its :class:`Recommender` subclass (imported on first use).
FAMILIES: dict[str, str] = {
    "popularity": "models.popularity:PopularityRecommender",
    "recent_popularity": "models.recent_popularity:RecentPopularityRecommender",
    "itemknn": "models.itemknn:ItemKNNRecommender",
    "als": "models.als:ALSRecommender",
    "sasrec": "models.sasrec:SASRecRecommender",
}


class UnknownModelFamilyError(RecopsError, KeyError):
    """A family name that :data:`FAMILIES` does not list."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def family_names() -> list[str]:
    """Every registered family name, sorted."""
    return sorted(FAMILIES)


def family_class(family: str) -> type[Recommender]:
    """The class of ``family``, importing its module now if needed.

    Raises:
        UnknownModelFamilyError: ``family`` is not in :data:`FAMILIES`.
    """
    try:
        target = FAMILIES[family]
    except (KeyError, TypeError):
        known = ", ".join(family_names())
        raise UnknownModelFamilyError(f"unknown model family {family!r}; known families: {known}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Recommender)) or cls.family != family:
        raise RecopsError(f"models.FAMILIES[{family!r}] = {target!r} is not the Recommender of {family!r}")
    return cls


def config_class(family: str) -> type[ModelConfig]:
    """The frozen config class of ``family`` (its params.yaml section and constructor input)."""
    return family_class(family).config_class


def make_config(family: str, values: ModelConfig | Mapping[str, Any] | None = None) -> ModelConfig:
    """``family``'s config from an instance, a mapping of hyper-parameters (missing ones: defaults) or None.

    Raises:
        UnknownModelFamilyError: ``family`` is not registered.
        RecopsError: an unknown hyper-parameter, an invalid value, or a config of another family.
    """
    cls = config_class(family)
    if values is None:
        return cls()
    if isinstance(values, ModelConfig):
        if not isinstance(values, cls):
            raise RecopsError(f"model family {family!r} takes a {cls.__name__}, got {type(values).__name__}")
        return values
    from pydantic import ValidationError

    try:
        return cls.model_validate(dict(values))
    except ValidationError as exc:
        raise RecopsError(
            f"invalid hyper-parameters for model family {family!r}: {config_errors(exc)}"
        ) from exc


def create_model(family: str, config: ModelConfig | Mapping[str, Any] | None = None) -> Recommender:
    """An unfitted model of ``family`` built from its config (see :func:`make_config`).

    Raises:
        UnknownModelFamilyError: ``family`` is not registered.
        RecopsError: a hyper-parameter is unknown to the family or has an invalid value.
    """
    return family_class(family)(make_config(family, config))


def load_model(path: Path) -> Recommender:
    """Load the model saved in the folder ``path``, whatever its family (only its module is imported).

    Raises:
        ModelLoadError: the folder is missing, corrupt, or names a family this code does not know.
    """
    family = read_config(path)["family"]
    if not isinstance(family, str) or family not in FAMILIES:
        raise ModelLoadError(
            f"{path} holds an unknown model family {family!r}; known families: {', '.join(family_names())}"
        )
    return family_class(family).load(path)


__all__ = [
    "FAMILIES",
    "FitContext",
    "ModelConfig",
    "ModelLoadError",
    "Recommender",
    "UnknownModelFamilyError",
    "config_class",
    "create_model",
    "family_class",
    "family_names",
    "load_model",
    "make_config",
]
