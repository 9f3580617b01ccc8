"""Recommendations for one shopper from the serving champion (what ``recops recommend`` prints).

The model comes from :func:`registry.loader.load_alias` (the scorer's loader), the shopper's history
from the published data (pseudonymised ids), so the answer is what the scorer would return for a shopper
with no real-time events beyond the published batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import RecopsError
from core.settings import Settings


@dataclass(frozen=True)
class Recommendation:
    """Top-K items for one shopper, with the catalogue attributes the package knows."""

    user_id: str  # pseudonym
    model_name: str
    version: int
    family: str
    history_length: int  # published events of this shopper
    known_history: int  # of which items the model knows
    cold: bool  # no usable history: popularity fallback
    stale_model: bool  # not the version the alias names now: the loader's last good cached one
    stale_reason: str = ""  # why (registry unreachable, the current version refused)
    rows: list[dict[str, Any]] = field(default_factory=list)


def user_history(events: pd.DataFrame, user_id: str, max_length: int) -> list[str]:
    """The shopper's item ids, oldest first, last ``max_length`` events."""
    mine = events.loc[events["user_id"] == user_id, ["ts", "item_id"]].sort_values("ts", kind="stable")
    return [str(i) for i in mine["item_id"].tail(max_length)]


def recommend_for_user(
    user: str,
    *,
    settings: Settings,
    k: int = 10,
    raw_id: bool = True,
    max_history: int = 50,
    alias: str = "champion",
) -> Recommendation:
    """Top-``k`` in-stock items for ``user`` from the model behind ``alias``.

    Args:
        user: the shopper's id; a raw id is pseudonymised with the configured key unless ``raw_id`` is False.
        settings: data folder, model name, registry and pseudonymisation key.
        k: list length.
        raw_id: whether ``user`` is a raw id (True) or already a pseudonym.
        max_history: how many of the latest events make the history.
        alias: registry alias to load (``champion`` unless testing a challenger).
    """
    from core.privacy import PSEUDONYM_PREFIX, pseudonymize_id
    from pipelines.datastore import read_published
    from registry.loader import load_alias

    if k < 1:
        raise RecopsError("--k must be at least 1")
    if not user.strip():
        raise RecopsError("a user id is required")
    if raw_id and user.startswith(PSEUDONYM_PREFIX) and len(user) == len(PSEUDONYM_PREFIX) + 20:
        raise RecopsError(f"{user!r} looks like a pseudonym already: pass --pseudonym")
    pseudonym = pseudonymize_id(user, settings.pseudonymization_key.get_secret_value()) if raw_id else user
    events, _ = read_published(settings.data_dir)  # first: a damaged file is named before any download
    loaded = load_alias(alias, settings=settings)
    history = user_history(events, pseudonym, max_history)
    package = loaded.package
    known = len(package.encode_history(history))
    recs = package.recommend_ids([history], k, exclude_seen=False, in_stock_only=True)[0]
    items = package.items.set_index("item_id")
    rows = []
    for rank, (item_id, score) in enumerate(recs, start=1):
        attrs = items.loc[item_id]
        price = attrs["price"]
        rows.append(
            {
                "rank": rank,
                "item_id": item_id,
                "category": str(attrs["category"]),
                "brand": str(attrs["brand"]),
                "price": None if pd.isna(price) else float(price),
                "in_stock": bool(attrs["in_stock"]),
                "score": float(np.float32(score)),
            }
        )
    return Recommendation(
        user_id=pseudonym,
        model_name=loaded.name,
        version=loaded.version,
        family=package.family,
        history_length=len(history),
        known_history=known,
        cold=known == 0,
        stale_model=loaded.stale,
        stale_reason=loaded.fallback_reason,
        rows=rows,
    )
