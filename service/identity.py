"""Shopper identity at the service edge: raw ids are pseudonymised at once and never stored or logged;
the A/B variant is a sticky hash of the pseudonym."""

from __future__ import annotations

import hashlib
import os
import time

from core.privacy import pseudonymize_id
from core.settings import Settings

CHAMPION = "champion"
CHALLENGER = "challenger"


def pseudonym(raw_user_id: str, settings: Settings) -> str:
    """The pseudonym of a raw user id under the configured key (what every store and table keys on)."""
    return pseudonymize_id(raw_user_id, settings.pseudonymization_key.get_secret_value())


def bucket(user: str) -> float:
    """A stable number in [0, 1) for a pseudonym (independent of the pseudonymisation key's output bits)."""
    digest = hashlib.sha256(f"recops-ab:{user}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def variant_for(user: str, challenger_share: float) -> str:
    """``challenger`` for a fixed share of shoppers (sticky: the same pseudonym always gets the same arm)."""
    return CHALLENGER if challenger_share > 0 and bucket(user) < challenger_share else CHAMPION


def new_recommendation_id(variant: str, version: int) -> str:
    """A fresh recommendation id: 32 hex digits ordered by time like a UUIDv7 (48-bit Unix milliseconds,
    then 80 random bits), then ``.h<version>`` (champion) or ``.c<version>`` (challenger).

    Time-ordered ids append to the served-list table's primary-key index instead of landing on a random
    page of it (a random uuid4 key rewrote one index page per served list: most of the writer's cost).
    POST /feedback reads the variant and version back from the suffix.
    """
    stamp = time.time_ns() // 1_000_000
    return f"{stamp:012x}{os.urandom(10).hex()}.{'c' if variant == CHALLENGER else 'h'}{version}"
