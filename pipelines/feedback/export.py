"""The ``feedback export`` step: shoppers' clicks, add-to-cart and purchases on served recommendations become
a landing batch that goes through the same gate as any batch (the feedback loop into the next training run).

1. **state** (``<runtime>/feedback/export-state.json``): ``exported_until`` (the watermark: feedback with
   ``ts`` before it was exported) and, while an export runs, ``pending`` (its window and batch id). The
   pending window is recorded before the batch is written and the watermark advances only after the batch
   folder is complete, so a run killed in between is redone with the same window and batch id (the same
   rows give the same bytes: nothing is exported twice under two ids, nothing is skipped);
2. **read**: feedback rows with ``since <= ts < until`` from the metadata database (:mod:`core.feedback`),
   and the latest published catalogue (the gate needs every event's item in the batch's catalogue);
3. **pure core** (:func:`feedback_events`): ``click``, ``add_to_cart`` and ``purchase`` rows become schema
   events (impressions are not shopper events: they stay in the database for the online metrics); rows of
   forgotten shoppers and rows on items missing from the catalogue are left out and counted. User ids are
   already pseudonyms (the service stores nothing else), so they are written as they are: publish accepts
   pseudonyms and never hashes them again. Event ids are ``fb-`` + a hash of the feedback row (stable
   across reruns, unique across database resets since recommendation ids are);
4. **write**: ``<landing>/feedback/<until>-feedback/`` through :func:`pipelines.batch_io.write_batch` (the
   loaders' writer: same layout, columns and column rules), with a ``manifest.json`` giving the window.

Then ``recops validate`` / ``recops publish`` gate it like any other batch, and the next features run reads
it with the rest of ``data/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from core.fsio import atomic_write_text
from pipelines.feedback import FEEDBACK_BATCH_SUFFIX
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

log = logging.getLogger(__name__)

#: Feedback kinds that are shopper events, and the event type each becomes.
EVENT_KINDS: dict[str, str] = {"click": "click", "add_to_cart": "add_to_cart", "purchase": "purchase"}
STATE_FILE = "export-state.json"
LOCK_FILE = "export.lock"
LOCK_TIMEOUT_S = 600.0
LANDING_SET = "feedback"


class ExportStateError(RecopsError):
    """The export state file is unreadable: the watermark is unknown, so nothing is exported."""


@dataclass(frozen=True)
class ExportedEvents:
    """The events of one export and what was left out."""

    events: pd.DataFrame
    catalog: pd.DataFrame
    counts: dict[str, int]


def state_path(runtime_dir: Path) -> Path:
    """``<runtime>/feedback/export-state.json``."""
    return runtime_dir / "feedback" / STATE_FILE


def read_state(path: Path) -> dict[str, Any]:
    """The export state (``{}`` before the first export).

    Raises:
        ExportStateError: the file exists but is not the JSON object this step writes.
    """
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportStateError(
            f"{path}: unreadable feedback export state ({exc}); restore it or delete it to export all "
            "feedback again (event ids already published are then refused by publish)"
        ) from exc
    if not isinstance(state, dict):
        raise ExportStateError(f"{path}: the feedback export state must be a JSON object")
    return state


def _parse_time(value: Any, path: Path, key: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ExportStateError(f"{path}: {key}={value!r} is not an ISO 8601 time") from exc
    if parsed.tzinfo is None:
        raise ExportStateError(f"{path}: {key}={value!r} has no time zone")
    return parsed.astimezone(UTC)


def write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Replace the state file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(dict(state), indent=2, sort_keys=True) + "\n")


def feedback_batch_id(until: datetime) -> str:
    """``YYYY-MM-DDTHHMMSSZ-feedback`` for the window ending at ``until`` (sorts among daily batch ids)."""
    return until.astimezone(UTC).strftime("%Y-%m-%dT%H%M%SZ") + FEEDBACK_BATCH_SUFFIX


def event_id(row: Mapping[str, Any]) -> str:
    """``fb-`` + 24 hex of a hash over the feedback row's identity (same row, same id)."""
    ts = row["ts"].astimezone(UTC).isoformat()
    key = "|".join(str(row[k]) for k in ("id", "recommendation_id", "user_id", "item_id", "kind")) + "|" + ts
    return "fb-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def feedback_events(
    rows: Sequence[Mapping[str, Any]], catalog: pd.DataFrame, forgotten: frozenset[str]
) -> ExportedEvents:
    """Schema events (and the catalogue rows they need) from feedback rows; see the module docstring.

    Args:
        rows: feedback rows as :func:`core.feedback.read_feedback` returns them.
        catalog: the latest published catalogue (schema dtypes).
        forgotten: pseudonyms of forgotten shoppers.
    Returns:
        The events sorted by (ts, event id), the catalogue rows of their items sorted by item id, and counts:
        ``exported``, ``impressions`` (kept for metrics), ``forgotten``, ``unknown_items``, ``duplicates``
        (the same feedback stored twice, e.g. by a retried write: exported once), and one per event type.
    """
    import pandas as pd

    from core.schema import coerce_catalog, coerce_events

    counts = {"exported": 0, "impressions": 0, "forgotten": 0, "unknown_items": 0, "duplicates": 0}
    counts.update(dict.fromkeys(EVENT_KINDS.values(), 0))
    known = catalog.drop_duplicates("item_id", keep="last").set_index("item_id")
    prices: dict[str, float | None] = {
        str(item): (None if pd.isna(price) else float(price)) for item, price in known["price"].items()
    }
    records = []
    seen: set[tuple[str, str, str, str, datetime]] = set()
    for row in rows:
        kind = str(row["kind"])
        if kind not in EVENT_KINDS:
            counts["impressions"] += kind == "impression"
            continue
        identity = (str(row["recommendation_id"]), str(row["user_id"]), str(row["item_id"]), kind, row["ts"])
        if identity in seen:  # a retried write stored the same feedback twice: the gate would count it
            counts["duplicates"] += 1
            continue
        seen.add(identity)
        if row["user_id"] in forgotten:
            counts["forgotten"] += 1
            continue
        item = str(row["item_id"])
        if item not in prices:
            counts["unknown_items"] += 1
            continue
        records.append(
            {
                "event_id": event_id(row),
                "user_id": str(row["user_id"]),
                "item_id": item,
                "event_type": EVENT_KINDS[kind],
                "ts": row["ts"].astimezone(UTC),
                "session_id": f"rec-{row['recommendation_id']}",
                "price": prices[item],
                "quantity": 1 if kind == "purchase" else None,
            }
        )
        counts[EVENT_KINDS[kind]] += 1
    counts["exported"] = len(records)
    events = coerce_events(pd.DataFrame.from_records(records, columns=list(_EVENT_COLUMNS)))
    events = events.sort_values(["ts", "event_id"], kind="stable").reset_index(drop=True)
    items = sorted(set(events["item_id"].astype(str)))
    batch_catalog = (
        coerce_catalog(known.loc[items].reset_index()) if items else coerce_catalog(catalog.iloc[:0])
    )
    return ExportedEvents(events=events, catalog=batch_catalog, counts=counts)


_EVENT_COLUMNS = ("event_id", "user_id", "item_id", "event_type", "ts", "session_id", "price", "quantity")


def latest_catalog(data_dir: Path) -> pd.DataFrame:
    """The latest published catalogue (every batch's catalogue, the newest batch winning per item)."""
    import pandas as pd

    from core.schema import CATALOG_FILE, coerce_catalog
    from pipelines.datastore import published_batches, read_published_table

    frames = [
        coerce_catalog(read_published_table(path))
        for path in (b / f"{CATALOG_FILE}.parquet" for b in published_batches(data_dir))
        if path.is_file()
    ]
    if not frames:
        raise RecopsError(f"no published catalogue in {data_dir}: publish the data before exporting feedback")
    return pd.concat(frames, ignore_index=True).drop_duplicates("item_id", keep="last").reset_index(drop=True)


def run_feedback_export(ctx: StepContext) -> StepResult:
    """Export the feedback since the watermark as a landing batch (none when there is nothing to export).

    One export runs at a time (an exclusive lock beside the state file); a second waits for it.

    Returns:
        ``outputs``: ``batch`` (the landing folder) when one was written; ``metrics``: the counts of
        :func:`feedback_events`; ``info``: ``batch_id`` (or None), ``since``, ``until``, ``state``.
    """
    from core.fsio import exclusive_lock

    path = state_path(ctx.settings.runtime_dir)
    with exclusive_lock(path.with_name(LOCK_FILE), timeout_s=LOCK_TIMEOUT_S, busy="another feedback export"):
        return _export(ctx, path)


def _export(ctx: StepContext, path: Path) -> StepResult:
    from core.feedback import create_feedback_tables, feedback_engine, read_feedback
    from core.privacy import read_forgotten
    from pipelines.batch_io import write_batch

    settings = ctx.settings
    state = read_state(path)
    since = _parse_time(state.get("exported_until"), path, "exported_until")
    pending = state.get("pending")
    if isinstance(pending, dict):  # a run was cut short: redo exactly its window
        since = _parse_time(pending.get("since"), path, "pending.since")
        until = _parse_time(pending.get("until"), path, "pending.until")
        if until is None:
            raise ExportStateError(f"{path}: pending export without an end time")
    else:
        until = ctx.now().astimezone(UTC)
    info: dict[str, Any] = {
        "batch_id": None,
        "since": since.isoformat() if since else None,
        "until": until.isoformat(),
        "state": project_relative(path, settings),
    }
    if since is not None and until <= since:
        log.info("feedback export: nothing new (watermark %s >= %s)", since.isoformat(), until.isoformat())
        return StepResult(step="feedback_export", info=info)
    engine = feedback_engine(settings)
    create_feedback_tables(engine)
    batch_id = feedback_batch_id(until)
    write_state(
        path, {**state, "pending": {"since": info["since"], "until": info["until"], "batch_id": batch_id}}
    )
    rows = read_feedback(engine, since, until)
    exported = feedback_events(rows, latest_catalog(settings.data_dir), read_forgotten(settings.data_dir))
    outputs: dict[str, str] = {}
    if len(exported.events):
        window_start = since or exported.events["ts"].min().floor("s").to_pydatetime()
        manifest = {
            "batch_id": batch_id,
            "source": "feedback",
            "rows": len(exported.events),
            "catalog_rows": len(exported.catalog),
            "window_start": window_start.isoformat(),
            "window_end": until.isoformat(),
        }
        target = settings.landing_dir / LANDING_SET / batch_id
        target.parent.mkdir(parents=True, exist_ok=True)
        write_batch(target, exported.events, exported.catalog, manifest, if_exists="replace")
        outputs["batch"] = project_relative(target, settings)
        info["batch_id"] = batch_id
    write_state(
        path, {"exported_until": info["until"], "last_batch": info["batch_id"] or state.get("last_batch")}
    )
    log.info("feedback export: %s", ", ".join(f"{k}={v}" for k, v in exported.counts.items()))
    return StepResult(
        step="feedback_export",
        outputs=outputs,
        metrics={k: float(v) for k, v in exported.counts.items()},
        info=info,
    )
