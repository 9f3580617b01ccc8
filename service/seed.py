"""Load the online seed (``core.online_seed``, written by ``recops online seed``) into the online store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from core.online_seed import SeedError, read_manifest, read_seed, seed_paths
from core.privacy import read_forgotten
from core.settings import Settings
from service.online_store import OnlineStore, SeedRow

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _rows(frame: pd.DataFrame, forgotten: frozenset[str]) -> Iterator[SeedRow]:
    columns = (frame["user_id"].tolist(), frame["recent_items"].tolist(), frame["bought_items"].tolist())
    for user, recent, bought in zip(*columns, strict=True):
        if user not in forgotten:
            yield SeedRow(user=str(user), recent=list(recent), bought=list(bought))


def load_online_seed(settings: Settings, store: OnlineStore) -> int | None:
    """Load the seed once per digest; returns the rows offered, or None when there is no seed, it was
    already loaded (by this or another replica), or it is unreadable (logged; the service still starts)."""
    parquet, manifest_path = seed_paths(settings)
    if not manifest_path.exists():
        log.info("no online seed at %s: shoppers start without history", manifest_path)
        return None
    try:
        manifest = read_manifest(manifest_path)
        frame = read_seed(parquet, max_length=None)
        forgotten = read_forgotten(settings.data_dir)
    except (SeedError, ValueError) as exc:
        log.error("online seed not loaded: %s", exc)
        return None
    if not store.load_seed(str(manifest["digest"]), _rows(frame, forgotten)):
        log.info("online seed %s already loaded", str(manifest["digest"])[:12])
        return None
    log.info("online seed %s loaded: %d shoppers", str(manifest["digest"])[:12], len(frame))
    return len(frame)
