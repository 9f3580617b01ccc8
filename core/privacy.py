"""Privacy: user ids are pseudonymised at ingest with a keyed hash (HMAC-SHA256).

The key comes from settings (``RECOPS_PSEUDONYMIZATION_KEY``); without the key the mapping cannot be
reversed or recomputed, and rotating the key unlinks all history. The same key and raw id always give the
same pseudonym, so batches from different days join up.
"""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd

PSEUDONYM_PREFIX = "p_"


def pseudonymize_id(raw_id: str, key: str) -> str:
    """The pseudonym of one raw user id: ``p_`` + 20 hex chars of HMAC-SHA256(key, id)."""
    digest = hmac.new(key.encode("utf-8"), raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:20]


def pseudonymize(user_ids: pd.Series, key: str) -> pd.Series:
    """Pseudonymise a column of raw user ids (each distinct id is hashed once)."""
    values = user_ids.astype("string")
    uniques = values.dropna().unique()
    mapping = {raw: pseudonymize_id(str(raw), key) for raw in uniques}
    return values.map(mapping).astype("string")


def is_pseudonymized(user_ids: pd.Series) -> bool:
    """True if every non-null id looks like one of our pseudonyms."""
    values = user_ids.dropna().astype("string")
    return bool(values.str.fullmatch(PSEUDONYM_PREFIX + r"[0-9a-f]{20}").all())
