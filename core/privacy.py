"""Privacy: user ids are pseudonymised at ingest with a keyed hash (HMAC-SHA256).

The key comes from settings (``RECOPS_PSEUDONYMIZATION_KEY``); without the key the mapping cannot be
reversed or recomputed, and rotating the key unlinks all history. The same key and raw id always give the
same pseudonym, so batches from different days join up.

Forgotten shoppers (``recops data forget``) are kept on a deny-list of pseudonyms (never raw ids) in the
published data folder; :func:`read_forgotten` and :func:`drop_forgotten` are what every writer of events
(publish, the loaders, the online store) applies.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import pandas as pd

from core.errors import RecopsError

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


# --------------------------------------------------------------------------- forgotten shoppers (deny-list)

#: The deny-list of forgotten shoppers, a text file inside the published data folder (``data/``), so it is
#: versioned, pushed and pulled with the data it protects (``data.dvc``): one pseudonym per line, sorted.
#: The name is not a valid batch id, so it can never clash with a batch folder.
FORGOTTEN_FILE = "_forgotten.txt"
_PSEUDONYM = re.compile(PSEUDONYM_PREFIX + r"[0-9a-f]{20}")


class DenyListError(RecopsError, ValueError):
    """The deny-list file holds something that is not a pseudonym (never silently ignored)."""


def forgotten_path(data_dir: Path) -> Path:
    """Where the deny-list of ``data_dir`` lives."""
    return Path(data_dir) / FORGOTTEN_FILE


def read_forgotten(data_dir: Path) -> frozenset[str]:
    """The pseudonyms of every forgotten shopper (empty when nobody was forgotten).

    Publish, the loaders and the online store drop every event of these users, so a shopper erased with
    ``recops data forget`` does not come back with a re-sent batch.

    Raises:
        DenyListError: a line is not a pseudonym (the file was edited by hand or damaged).
    """
    path = forgotten_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return frozenset()
    except (OSError, UnicodeDecodeError) as exc:
        raise DenyListError(f"{path}: the deny-list of forgotten users cannot be read ({exc})") from exc
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    bad = [n for n, line in enumerate(lines, start=1) if not _PSEUDONYM.fullmatch(line)]
    if bad:
        raise DenyListError(
            f"{path}: line(s) {', '.join(map(str, bad[:5]))} are not pseudonyms ('p_' + 20 hex); the "
            "deny-list holds pseudonyms only: restore it with `dvc checkout --force data.dvc`"
        )
    return frozenset(lines)


def forgotten_text(pseudonyms: frozenset[str] | set[str]) -> str:
    """The deny-list file's content: sorted, one pseudonym per line (deterministic bytes)."""
    bad = sorted(p for p in pseudonyms if not _PSEUDONYM.fullmatch(p))
    if bad:
        raise DenyListError(f"only pseudonyms go on the deny-list, got {len(bad)} other value(s)")
    return "".join(f"{p}\n" for p in sorted(pseudonyms))


def drop_forgotten(events: pd.DataFrame, forgotten: frozenset[str]) -> tuple[pd.DataFrame, int]:
    """``events`` without the rows of forgotten users, and how many rows were dropped."""
    if not forgotten or events.empty:
        return events, 0
    denied = events["user_id"].isin(forgotten).fillna(False).to_numpy(dtype=bool)
    dropped = int(denied.sum())
    return (events.loc[~denied] if dropped else events), dropped
