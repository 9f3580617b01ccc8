"""Recommender model families behind one contract (:class:`models.base.Recommender`).

``create_model(family, hyperparameters)`` builds an unfitted model from a ``train.<family>`` params section;
``load_model(path)`` reads any saved model, dispatching on the ``family`` in its ``config.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import RecopsError
from models.als import ALSRecommender
from models.base import ModelLoadError, Recommender, read_config
from models.itemknn import ItemKNNRecommender
from models.popularity import PopularityRecommender
from models.recent_popularity import RecentPopularityRecommender

MODEL_FAMILIES: dict[str, type[Recommender]] = {
    cls.family: cls
    for cls in (PopularityRecommender, RecentPopularityRecommender, ItemKNNRecommender, ALSRecommender)
}


class UnknownModelFamilyError(RecopsError, KeyError):
    """A family name that no class in :data:`MODEL_FAMILIES` implements."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def _family_class(family: str) -> type[Recommender]:
    try:
        return MODEL_FAMILIES[family]
    except KeyError:
        known = ", ".join(sorted(MODEL_FAMILIES))
        raise UnknownModelFamilyError(f"unknown model family {family!r}; known families: {known}") from None


def create_model(family: str, hyperparameters: dict[str, Any]) -> Recommender:
    """An unfitted model of ``family`` built with ``hyperparameters`` as constructor keyword arguments.

    Raises:
        UnknownModelFamilyError: ``family`` is not in :data:`MODEL_FAMILIES`.
        RecopsError: a hyper-parameter is unknown to the family or has an invalid value.
    """
    cls = _family_class(family)
    try:
        return cls(**hyperparameters)
    except (TypeError, ValueError) as exc:
        raise RecopsError(f"invalid hyper-parameters for model family {family!r}: {exc}") from exc


def load_model(path: Path) -> Recommender:
    """Load the model saved in the folder ``path``, whatever its family.

    Raises:
        ModelLoadError: the folder is missing, corrupt, or names a family this code does not know.
    """
    family = read_config(path)["family"]
    if family not in MODEL_FAMILIES:
        known = ", ".join(sorted(MODEL_FAMILIES))
        raise ModelLoadError(f"{path} holds an unknown model family {family!r}; known families: {known}")
    return MODEL_FAMILIES[family].load(path)


__all__ = [
    "MODEL_FAMILIES",
    "ALSRecommender",
    "ItemKNNRecommender",
    "ModelLoadError",
    "PopularityRecommender",
    "RecentPopularityRecommender",
    "Recommender",
    "UnknownModelFamilyError",
    "create_model",
    "load_model",
]
