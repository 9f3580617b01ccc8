"""Shopper identity at the service edge: raw ids are pseudonymised at once and never stored or logged;
the A/B variant is a sticky hash of the pseudonym."""

from __future__ import annotations

import hashlib

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
