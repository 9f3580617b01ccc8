"""Finishing loaded events into schema tables: anonymous rows, sessions, repeats, event ids, catalogue.

:func:`finish` is the last step of every loader. What it does to the rows is recorded in a
:class:`LoadNotes` (when the caller passes one) and printed in the ``recops data load`` summary:

* **anonymous rows** (no user id: empty or a null token such as ``NA``) are handled by the ``anonymous``
  policy: ``session`` gives them a user per session (the pseudonym of ``anonymous-session:<session id>``,
  so a session's events stay together), ``drop`` drops them, ``refuse`` raises; ``auto`` (the generic
  loader's default) is ``session`` when a session column is mapped, else ``drop``. Anonymous rows whose
  session id is missing too are dropped.
* **sessions**: rows without a session id get one by the gap rule (:func:`sessionize`).
* **repeats**: rows that agree on (user, item, event type, timestamp) are what the gate's duplicate check
  counts. When the source's timestamps are coarse (whole minutes, hours or days: "bought twice on
  2024-03-01"), such rows are one event whose ``quantity`` is their summed quantity (a missing quantity
  counts as 1) and whose price is the quantity-weighted mean of the known prices (policy ``auto``, the
  default; ``sum`` merges at any resolution, ``keep`` never). At finer resolution ``auto`` keeps them: two
  identical rows to the second are more likely a double send, and the gate judges their rate.
* **event ids**: rows without one get a deterministic hash (:func:`hash_event_ids`); repeated given ids are
  refused (the gate would refuse them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import pandas as pd

from core.errors import RecopsError
from core.privacy import pseudonymize
from core.schema import CATALOG_COLUMN_NAMES, coerce_catalog, coerce_events
from pipelines.datasets.loaders.parsing import UNKNOWN
from pipelines.datasets.loaders.reading import DataFileError

#: Gap that starts a new session when a source has no session ids.
SESSION_GAP_MINUTES: Final = 30.0
#: Raw user id given to the anonymous rows of one session (then pseudonymised like any user id).
ANONYMOUS_PREFIX: Final = "anonymous-session:"
#: Time resolutions at which ``repeats="auto"`` merges exact repeats into quantity.
COARSE_RESOLUTIONS: Final = ("day", "hour", "minute")
REPEAT_KEY: Final = ("user_id", "item_id", "event_type", "ts")

AnonymousPolicy = Literal["auto", "session", "drop", "refuse"]
ANONYMOUS_POLICIES: Final[tuple[str, ...]] = ("auto", "session", "drop", "refuse")
RepeatPolicy = Literal["auto", "sum", "keep"]
REPEAT_POLICIES: Final[tuple[str, ...]] = ("auto", "sum", "keep")


@dataclass
class LoadNotes:
    """What :func:`finish` did to the rows, for the load summary (counts are rows).

    Attributes:
        anonymous_rows: rows without a user id.
        anonymous_as_session: of those, rows given a per-session user.
        anonymous_dropped: of those, rows dropped.
        resolution: the finest time unit the timestamps use (``day``, ``hour``, ``minute``, ``second``,
            ``sub-second``).
        repeats_merged: rows folded into another row's quantity.
        repeats_kept: rows kept although they repeat another row's (user, item, type, timestamp).
        forgotten_dropped: rows of forgotten users (the deny-list of ``recops data forget``) left out.
    """

    anonymous_rows: int = 0
    anonymous_as_session: int = 0
    anonymous_dropped: int = 0
    resolution: str = ""
    repeats_merged: int = 0
    repeats_kept: int = 0
    forgotten_dropped: int = 0

    def lines(self) -> list[str]:
        """Sentences for a person (empty when nothing needed saying)."""
        out = []
        if self.anonymous_rows:
            parts = []
            if self.anonymous_as_session:
                parts.append(f"{self.anonymous_as_session:,} given a user per session (anonymous-session)")
            if self.anonymous_dropped:
                parts.append(f"{self.anonymous_dropped:,} dropped")
            out.append(f"anonymous rows (no user id): {self.anonymous_rows:,}; " + ", ".join(parts))
        if self.repeats_merged:
            out.append(
                f"repeats: {self.repeats_merged:,} row(s) repeating (user, item, type, time) at "
                f"{self.resolution} resolution merged into the quantity of the first"
            )
        if self.repeats_kept:
            out.append(
                f"repeats: {self.repeats_kept:,} row(s) repeat (user, item, type, time) at "
                f"{self.resolution} resolution and were kept (the gate's duplicate check judges them)"
            )
        if self.forgotten_dropped:
            out.append(f"forgotten users: {self.forgotten_dropped:,} row(s) of deny-listed users left out")
        return out


def _micros(ts: pd.Series) -> np.ndarray:
    """Microseconds since the epoch of a timestamp column."""
    return np.asarray(ts.astype("datetime64[us, UTC]").astype("int64").to_numpy(), dtype=np.int64)


def sessionize(user_ids: pd.Series, ts: pd.Series, gap_minutes: float = SESSION_GAP_MINUTES) -> pd.Series:
    """Session ids ``<user_id>:<n>``: a user's events are one session until a silence longer than the gap.

    ``n`` counts a user's sessions from 0 in time order, so the ids are deterministic.
    """
    users = user_ids.astype("string").to_numpy(dtype=object)
    codes, _ = pd.factorize(users, sort=False)
    micros = _micros(ts)
    order = np.lexsort((micros, codes))
    c, t = codes[order], micros[order]
    new = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        gap = int(gap_minutes * 60 * 1_000_000)
        new[1:] = (c[1:] != c[:-1]) | ((t[1:] - t[:-1]) > gap)
    session_number = pd.Series(new.astype(np.int64)).groupby(c).cumsum().to_numpy() - 1
    numbers = np.empty(len(order), dtype=np.int64)
    numbers[order] = session_number
    return user_ids.astype("string") + ":" + pd.Series(numbers, index=user_ids.index).astype("string")


def hash_event_ids(events: pd.DataFrame, prefix: str = "e") -> pd.Series:
    """Deterministic event ids: a 64-bit hash of (user, item, type, ts, n-th repeat of that tuple).

    Computed after pseudonymisation, so the ids do not reveal raw user ids.
    """
    keys = pd.DataFrame(
        {
            "user_id": events["user_id"].astype("string"),
            "item_id": events["item_id"].astype("string"),
            "event_type": events["event_type"].astype("string"),
            "ts": _micros(events["ts"]),
        }
    )
    keys["repeat"] = keys.groupby(list(keys.columns), sort=False).cumcount()
    hashes = pd.util.hash_pandas_object(keys, index=False).to_numpy()
    return pd.Series([f"{prefix}{h:016x}" for h in hashes.tolist()], index=events.index, dtype="string")


def complete_catalog(events: pd.DataFrame, catalog: pd.DataFrame | None) -> pd.DataFrame:
    """The catalogue of ``catalog``'s items plus every item of ``events`` it lacks.

    Added items (and missing attributes) get category and brand ``"unknown"``, price null, ``in_stock``
    True and ``created_at`` = first time the item is seen in ``events`` (the first event overall for items
    never seen).
    """
    first_seen = events.groupby("item_id", sort=True)["ts"].min()
    if catalog is None or catalog.empty:
        catalog = pd.DataFrame({"item_id": pd.Series([], dtype="string")})
    catalog = catalog.copy()
    catalog["item_id"] = catalog["item_id"].astype("string")
    extra = first_seen.index[~first_seen.index.isin(catalog["item_id"])]
    catalog = pd.concat(
        [catalog, pd.DataFrame({"item_id": pd.Series(extra, dtype="string")})], ignore_index=True
    )
    for name, default in (("category", UNKNOWN), ("brand", UNKNOWN), ("in_stock", True)):
        if name not in catalog.columns:
            catalog[name] = default
        else:
            catalog[name] = catalog[name].astype(object).where(catalog[name].notna(), default)
    if "price" not in catalog.columns:
        catalog["price"] = np.nan
    seen = catalog["item_id"].map(first_seen)
    fallback = events["ts"].min()
    if "created_at" not in catalog.columns:
        catalog["created_at"] = seen.fillna(fallback)
    else:
        created = catalog["created_at"].astype("datetime64[us, UTC]")
        catalog["created_at"] = created.fillna(seen).fillna(fallback)
    catalog["in_stock"] = catalog["in_stock"].astype(bool)
    return catalog[list(CATALOG_COLUMN_NAMES)]


def time_resolution(ts: pd.Series) -> str:
    """The finest unit the timestamps use: ``day``, ``hour``, ``minute``, ``second`` or ``sub-second``."""
    micros = _micros(ts)
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60), ("second", 1)):
        if not np.any(micros % (size * 1_000_000)):
            return unit
    return "sub-second"


def merge_repeats(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Fold rows that repeat (user, item, event type, ts) into the first one; return it and how many folded.

    The kept row's ``quantity`` is the group's summed quantity (missing counts as 1) and its ``price`` the
    quantity-weighted mean of the known prices; other columns are the first row's. Rows that repeat nothing
    are unchanged.
    """
    key = list(REPEAT_KEY)
    repeated = events.duplicated(key, keep=False).to_numpy()
    if not repeated.any():
        return events, 0
    events = events.reset_index(drop=True)
    group = events.groupby(key, sort=False).ngroup().to_numpy()
    size = np.bincount(group)[group]
    if "quantity" in events.columns:
        quantity = pd.to_numeric(events["quantity"], errors="coerce").fillna(1).to_numpy(dtype="float64")
    else:
        quantity = np.ones(len(events))
    total = np.bincount(group, weights=quantity)
    first = ~pd.Series(group).duplicated().to_numpy()
    out = events.loc[first].copy()
    merged = size[first] > 1
    groups = group[first]
    quantities = (
        out["quantity"].astype("Int64")
        if "quantity" in out.columns
        else pd.Series(pd.NA, index=out.index, dtype="Int64")
    )
    quantities[merged] = total[groups[merged]].astype(np.int64)
    out["quantity"] = quantities
    if "price" in events.columns:
        price = pd.to_numeric(events["price"], errors="coerce").to_numpy(dtype="float64")
        known = ~np.isnan(price)
        paid = np.bincount(group, weights=np.where(known, price * quantity, 0.0))
        units = np.bincount(group, weights=np.where(known, quantity, 0.0))
        mean = np.divide(paid, units, out=np.full(len(units), np.nan), where=units > 0)
        prices = out["price"].astype("float64").to_numpy().copy()
        prices[merged] = mean[groups[merged]]
        out["price"] = prices
    return out.reset_index(drop=True), int(len(events) - len(out))


def _anonymous(events: pd.DataFrame, policy: AnonymousPolicy, notes: LoadNotes, where: str) -> pd.DataFrame:
    """Apply the anonymous-row policy (see the module docstring) to rows whose ``user_id`` is missing."""
    missing = events["user_id"].isna().to_numpy(dtype=bool)
    if not missing.any():
        return events
    has_session = "session_id" in events.columns and bool(events["session_id"].notna().any())
    if policy == "auto":
        policy = "session" if has_session else "drop"
    notes.anonymous_rows = int(missing.sum())
    if policy == "refuse":
        rows = ", ".join(str(i + 1) for i in np.flatnonzero(missing)[:3])
        raise DataFileError(
            f"{where}{notes.anonymous_rows:,} row(s) have no user id (empty or a null token such as NA), "
            f"e.g. row(s) {rows}; choose --anonymous session or drop"
        )
    events = events.copy()
    if policy == "session":
        if not has_session:
            raise DataFileError(
                f"{where}--anonymous session needs a session_id column in --map; "
                "map one or use --anonymous drop"
            )
        session = events["session_id"].astype("string")
        usable = missing & session.notna().to_numpy(dtype=bool)
        events.loc[usable, "user_id"] = ANONYMOUS_PREFIX + session[usable]
        notes.anonymous_as_session = int(usable.sum())
        missing = missing & ~usable
    notes.anonymous_dropped = int(missing.sum())
    return events.loc[~missing].reset_index(drop=True)


def finish(
    events: pd.DataFrame,
    catalog: pd.DataFrame | None,
    *,
    key: str | None,
    session_gap_minutes: float = SESSION_GAP_MINUTES,
    anonymous: AnonymousPolicy = "refuse",
    repeats: RepeatPolicy = "auto",
    notes: LoadNotes | None = None,
    source: object = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Turn parsed events and catalogue into schema tables (see the module docstring).

    Handles anonymous rows, pseudonymises ``user_id`` when ``key`` is given, gives rows without a session
    one by the gap rule, merges repeats, hashes missing event ids, completes the catalogue
    (:func:`complete_catalog`), coerces both tables to the schema and sorts events by time (stable, so
    source order breaks ties) and the catalogue by item id.

    Args:
        events: parsed events (``user_id``, ``item_id``, ``event_type``, ``ts``; others optional).
        catalog: parsed catalogue, or None.
        key: pseudonymisation key for user ids; None keeps the raw ids.
        session_gap_minutes: silence that starts a new session for rows without a session id.
        anonymous: what to do with rows without a user id.
        repeats: what to do with rows that repeat (user, item, type, ts).
        notes: receives what was done (counts), when given.
        source: the input file, named in error messages.

    Raises:
        DataFileError: anonymous rows under ``refuse``, or event ids that repeat.
    """
    notes = notes if notes is not None else LoadNotes()
    events = events.copy()
    events["user_id"] = events["user_id"].astype("string")
    where = f"{source}: " if source is not None else ""
    events = _anonymous(events, anonymous, notes, where)
    if events.empty:
        raise DataFileError(f"{where}no events left to load (every row was anonymous and dropped)")
    if key is not None:
        events["user_id"] = pseudonymize(events["user_id"], key)
    if "session_id" not in events.columns or events["session_id"].isna().any():
        events["session_id"] = _filled(
            events, "session_id", sessionize(events["user_id"], events["ts"], session_gap_minutes)
        )
    notes.resolution = time_resolution(events["ts"])
    if repeats == "sum" or (repeats == "auto" and notes.resolution in COARSE_RESOLUTIONS):
        events, notes.repeats_merged = merge_repeats(events)
    else:
        notes.repeats_kept = int(events.duplicated(list(REPEAT_KEY)).sum())
    if "event_id" not in events.columns or events["event_id"].isna().any():
        events["event_id"] = _filled(events, "event_id", hash_event_ids(events))
    _refuse_repeated_event_ids(events["event_id"], where)
    out = coerce_events(events)
    out = out.sort_values("ts", kind="stable").reset_index(drop=True)
    cat = coerce_catalog(complete_catalog(out, catalog))
    cat = cat.sort_values("item_id", kind="stable").reset_index(drop=True)
    return out, cat


def _filled(events: pd.DataFrame, column: str, fallback: pd.Series) -> pd.Series:
    """``events[column]`` as text with its missing values taken from ``fallback`` (all of it if absent)."""
    if column not in events.columns:
        return fallback
    return events[column].astype("string").fillna(fallback)


def _refuse_repeated_event_ids(ids: pd.Series, where: str) -> None:
    if pd.Index(ids).is_unique:
        return
    repeated = ids.duplicated(keep=False)
    if bool(repeated.any()):
        examples = ", ".join(repr(str(v)) for v in ids[repeated].drop_duplicates().head(3))
        raise DataFileError(
            f"{where}event ids repeat: {int(repeated.sum()):,} row(s) share an id ({examples}); the gate "
            "wants unique event ids: fix the source, or leave event_id out of --map and recops hashes "
            "one per event"
        )


def limit_days(events: pd.DataFrame, catalog: pd.DataFrame, days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Keep the first ``days`` UTC calendar days of events (from the first event's day).

    The catalogue keeps the items those events reference and the items created before the cut.
    """
    if days < 1:
        raise RecopsError(f"--limit-days must be >= 1 (got {days})")
    if events.empty:
        return events, catalog
    cut = events["ts"].min().floor("D") + pd.Timedelta(days=days)
    kept = events[events["ts"] < cut].reset_index(drop=True)
    keep_items = catalog["item_id"].isin(kept["item_id"]) | (catalog["created_at"] < cut)
    return kept, catalog[keep_items].reset_index(drop=True)
