"""The ``online seed`` step: each shopper's recent items and bought set from the published data.

The scoring service loads the seed (:mod:`core.online_seed`) into its online store at start-up, so a known
shopper has a history without the service reading ``data/``. The step is

1. **read**: the events of every published batch (only the columns it needs, page checksums verified);
2. **pure core** (:func:`build_seed`): per shopper, the last ``features.max_sequence_length`` item ids in
   time order (ties broken by event id) and the sorted set of bought items; shoppers on the deny-list of
   forgotten users are left out;
3. **write**: ``<runtime>/online/seed.parquet`` and ``seed.json`` (:func:`core.online_seed.write_seed`),
   skipped when the seed on disk is whole and has the same digest. Same data, same digest.

No MLflow run: the seed is a cache of published data, versioned by its digest.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from core.online_seed import SEED_COLUMNS, SeedError, canonical_seed, read_manifest, seed_digest, seed_paths
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: The event columns the seed needs.
SEED_EVENT_COLUMNS: tuple[str, ...] = ("event_id", "user_id", "item_id", "event_type", "ts")


def build_seed(
    events: pd.DataFrame, max_length: int, forgotten: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per shopper: ``user_id``, ``recent_items`` (last ``max_length`` item ids, oldest first),
    ``bought_items`` (sorted, distinct), ``last_ts``; rows sorted by user id (see :mod:`core.online_seed`).

    Args:
        events: events with at least :data:`SEED_EVENT_COLUMNS` (schema dtypes, pseudonymised user ids).
        max_length: how many recent items to keep per shopper (>= 1).
        forgotten: pseudonyms whose events are ignored.
    Raises:
        ValueError: ``max_length`` < 1.
    """
    import pandas as pd

    if max_length < 1:
        raise ValueError("max_length must be >= 1")
    frame = events.loc[:, list(SEED_EVENT_COLUMNS)].dropna(subset=["user_id", "item_id", "ts"])
    if forgotten:
        frame = frame[~frame["user_id"].isin(forgotten)]
    if frame.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in SEED_COLUMNS})
        empty["last_ts"] = pd.Series(dtype="datetime64[us, UTC]")
        return empty
    frame = frame.assign(user_id=frame["user_id"].astype(str), item_id=frame["item_id"].astype(str))
    frame = frame.sort_values(["user_id", "ts", "event_id"], kind="stable")
    grouped = frame.groupby("user_id", sort=True)
    recent = frame.groupby("user_id", sort=True).tail(max_length).groupby("user_id", sort=True)["item_id"]
    bought = frame[frame["event_type"] == "purchase"].groupby("user_id", sort=True)["item_id"]
    bought_lists = bought.agg(lambda s: sorted(set(s)))
    users = grouped.size().index
    seed = pd.DataFrame(
        {
            "user_id": list(users),
            "recent_items": recent.agg(list).reindex(users).tolist(),
            "bought_items": [bought_lists.get(u, []) for u in users],
            "last_ts": grouped["ts"].max().reindex(users).to_numpy(),
        }
    )
    seed["last_ts"] = pd.to_datetime(seed["last_ts"], utc=True).astype("datetime64[us, UTC]")
    return canonical_seed(seed, max_length=max_length)


def read_seed_events(data_dir: Path) -> pd.DataFrame:
    """The columns of :data:`SEED_EVENT_COLUMNS` from every published batch (schema dtypes).

    Raises:
        RecopsError: nothing is published (say what to run).
        PublishedDataError: a published file is unreadable.
    """
    import pandas as pd

    from core.errors import RecopsError
    from core.schema import EVENTS_FILE, to_utc
    from pipelines.datastore import published_batches, read_published_table

    batches = published_batches(data_dir)
    if not batches:
        raise RecopsError(
            f"no published batches in {data_dir}: run `recops data generate` and `recops publish`"
        )
    frames = [read_published_table(b / f"{EVENTS_FILE}.parquet", SEED_EVENT_COLUMNS) for b in batches]
    events = pd.concat(frames, ignore_index=True)
    for column in ("event_id", "user_id", "item_id", "event_type"):
        events[column] = events[column].astype("string")
    events["ts"] = to_utc(events["ts"])
    return events


def run_online_seed(ctx: StepContext) -> StepResult:
    """Build the online-store seed from the published data and write it (unchanged digest: no write).

    Returns:
        ``outputs``: ``seed`` and ``manifest`` (paths); ``metrics``: ``users``, ``events``; ``info``:
        ``digest``, ``changed``, ``max_sequence_length``.
    """
    from core.online_seed import write_seed
    from core.privacy import read_forgotten

    settings = ctx.settings
    max_length = ctx.params.features.max_sequence_length
    events = read_seed_events(settings.data_dir)
    seed = build_seed(events, max_length, read_forgotten(settings.data_dir))
    digest = seed_digest(seed)
    parquet_path, manifest_path = seed_paths(settings)
    changed = _stored_digest(parquet_path, manifest_path) != digest
    if changed:
        write_seed(seed, settings, now=ctx.now())
    log.info("online seed: %d shoppers from %d events (%s)", len(seed), len(events), digest[:12])
    return StepResult(
        step="online_seed",
        outputs={
            "seed": project_relative(parquet_path, settings),
            "manifest": project_relative(manifest_path, settings),
        },
        metrics={"users": float(len(seed)), "events": float(len(events))},
        info={"digest": digest, "changed": changed, "max_sequence_length": max_length},
    )


def _stored_digest(parquet_path: Path, manifest_path: Path) -> str | None:
    """The digest of the seed on disk when it is whole (file matches its manifest), else None."""
    from core.online_seed import read_seed

    try:
        read_seed(parquet_path)
        return str(read_manifest(manifest_path)["digest"])
    except SeedError:
        return None
