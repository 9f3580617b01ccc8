"""Deterministic synthetic shop data, one daily batch at a time.

:func:`generate_batches` is pure: it yields one :class:`DayBatch` (events + end-of-day catalogue snapshot,
schema dtypes, user ids pseudonymised) per UTC day and keeps only the simulation state between days, never
the previous days' events. :func:`generate_dataset` writes each batch as ``OUT/YYYY-MM-DD/`` (events,
catalogue and manifest, through the one landing-batch writer :func:`pipelines.batch_io.write_batch`) as soon
as it is produced. The same config, seed and key give byte-identical files.

Randomness: one ``numpy.random.Generator`` seeded from ``[seed, 0]`` draws the world (catalogue, users) and
one seeded from ``[seed, 1, day_index]`` drives each day.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from core.errors import RecopsError
from core.privacy import pseudonymize
from core.schema import EVENT_TYPES, coerce_catalog, coerce_events
from pipelines.batch_io import write_batch as write_landing_batch
from pipelines.datasets.synthetic_catalog import Catalogue, CatalogueDynamics, build_catalogue
from pipelines.datasets.synthetic_sessions import DAY_US, DayEvents, ShopBehaviour, simulate_day
from pipelines.datasets.synthetic_users import UserPopulation
from pipelines.params import GenerateParams


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate: ``days`` daily batches from ``start`` over ``users`` shoppers and ``items`` items.

    ``users`` and ``items`` count everyone over the whole period: about half the users and 80% of the items
    exist on the first day, the rest arrive day by day.
    """

    days: int
    users: int
    items: int
    seed: int
    start: date

    @classmethod
    def from_params(cls, params: GenerateParams) -> GeneratorConfig:
        return cls(
            days=params.days, users=params.users, items=params.items, seed=params.seed, start=params.start
        )

    def check(self) -> None:
        """Raise :class:`RecopsError` naming the first unusable value."""
        for name in ("days", "users", "items"):
            if getattr(self, name) < 1:
                raise RecopsError(f"generate: {name} must be >= 1, got {getattr(self, name)}")
        if self.seed < 0:
            raise RecopsError(f"generate: seed must be >= 0, got {self.seed}")


@dataclass(frozen=True)
class DayBatch:
    """One UTC day: its events and the catalogue as of the end of the day (both with schema dtypes)."""

    day: date
    events: pd.DataFrame
    catalog: pd.DataFrame
    active_users: NDArray[np.int64]  # internal user indices with events today (for summaries)

    @property
    def batch_id(self) -> str:
        return self.day.isoformat()


@dataclass(frozen=True)
class GenerationSummary:
    """What :func:`generate_dataset` wrote."""

    days: int
    events: int
    users: int  # distinct users with at least one event
    items: int  # items in the last catalogue snapshot
    out_dir: Path

    def line(self) -> str:
        return (
            f"generated {self.days} day(s): {self.events:,} events, {self.users:,} users, "
            f"{self.items:,} items -> {self.out_dir}"
        )


def _midnight_us(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000


def _utc(us: NDArray[np.int64]) -> pd.Series:
    return pd.Series(pd.DatetimeIndex(us.astype("datetime64[us]"), tz="UTC"))


@dataclass(frozen=True)
class ShopWorld:
    """The simulation state: static catalogue, users (with their memory) and today's item state."""

    catalogue: Catalogue
    users: UserPopulation
    dynamics: CatalogueDynamics


def build_world(config: GeneratorConfig) -> ShopWorld:
    """Draw the catalogue and the users from ``[seed, 0]`` (the state before the first day)."""
    config.check()
    world = np.random.default_rng([config.seed, 0])
    catalogue = build_catalogue(config.items, config.days, _midnight_us(config.start), world)
    users = UserPopulation(config.users, config.days, catalogue, world)
    return ShopWorld(catalogue=catalogue, users=users, dynamics=CatalogueDynamics(catalogue, world))


def generate_batches(
    config: GeneratorConfig, key: str, behaviour: ShopBehaviour | None = None
) -> Iterator[DayBatch]:
    """Yield one :class:`DayBatch` per day, in time order.

    Args:
        config: sizes, seed and first day.
        key: pseudonymisation key for user ids (``settings.pseudonymization_key``).
        behaviour: shopper behaviour rates (default: :class:`ShopBehaviour()`, a realistic funnel).
    """
    behaviour = behaviour or ShopBehaviour()
    start_us = _midnight_us(config.start)
    world = build_world(config)
    catalogue, users, dynamics = world.catalogue, world.users, world.dynamics
    created_us = catalogue.created_before_us.copy()
    for d in range(config.days):
        day = config.start + timedelta(days=d)
        rng = np.random.default_rng([config.seed, 1, d])
        dynamics.advance(d, rng)
        if d > 0:
            users.drift(rng)
        events = simulate_day(catalogue, dynamics, users, d, day.weekday(), rng, behaviour)
        midnight = start_us + d * DAY_US
        _set_launch_times(catalogue, events, d, midnight, created_us, rng)
        yield DayBatch(
            day=day,
            events=_events_frame(catalogue, dynamics, users, events, day, midnight, key),
            catalog=_catalog_frame(catalogue, dynamics, created_us),
            active_users=np.unique(events.user),
        )


def _set_launch_times(
    catalogue: Catalogue,
    events: DayEvents,
    d: int,
    midnight: int,
    created_us: NDArray[np.int64],
    rng: np.random.Generator,
) -> None:
    """Items launched on day ``d`` get a created_at that day, never after their first event."""
    launched = np.flatnonzero(catalogue.created_day == d)
    if not len(launched):
        return
    drawn = midnight + rng.integers(0, 10 * 3600 * 1_000_000, len(launched))
    first = np.full(catalogue.n_items, DAY_US, dtype=np.int64)  # no event today: DAY_US
    np.minimum.at(first, events.item, events.ts_us)
    created_us[launched] = np.minimum(drawn, midnight + first[launched])


def _strings(values: pa.Array) -> pd.Series:
    """A pandas ``string`` column over an Arrow string array (no per-value Python objects)."""
    return pd.Series(pd.array(values, dtype="string"))


def _numbered(prefix: str, numbers: NDArray[np.int64], width: int) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as an Arrow string array."""
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _events_frame(
    catalogue: Catalogue,
    dynamics: CatalogueDynamics,
    users: UserPopulation,
    events: DayEvents,
    day: date,
    midnight: int,
    key: str,
) -> pd.DataFrame:
    active, user_pos = np.unique(events.user, return_inverse=True)
    todo = active[np.array([p is None for p in users.pseudonyms[active]], dtype=bool)]
    if len(todo):
        users.pseudonyms[todo] = pseudonymize(pd.Series(users.raw_ids(todo)), key).to_numpy(dtype=object)
    pseudonyms = pa.array(users.pseudonyms[active].tolist(), type=pa.string())
    _, session_no = np.unique(events.session, return_inverse=True)
    frame = pd.DataFrame(
        {
            "event_id": _strings(_numbered(f"{day.isoformat()}-", np.arange(len(events)), 8)),
            "user_id": _strings(pseudonyms.take(user_pos)),
            "item_id": _strings(catalogue.item_id_array.take(events.item)),
            "event_type": _strings(pa.array(EVENT_TYPES, type=pa.string()).take(events.event_type)),
            "ts": _utc(midnight + events.ts_us),
            "session_id": _strings(_numbered(f"s{day.strftime('%Y%m%d')}-", session_no.astype(np.int64), 7)),
            "price": dynamics.price[events.item],
            "quantity": pd.arrays.IntegerArray(events.quantity, events.quantity == 0),
        }
    )
    return coerce_events(frame)


def _catalog_frame(
    catalogue: Catalogue, dynamics: CatalogueDynamics, created_us: NDArray[np.int64]
) -> pd.DataFrame:
    live = np.flatnonzero(dynamics.available)
    frame = pd.DataFrame(
        {
            "item_id": _strings(catalogue.item_id_array.take(live)),
            "category": _strings(pa.array(catalogue.category_names).take(catalogue.item_category[live])),
            "brand": _strings(pa.array(catalogue.brand_names).take(catalogue.item_brand[live])),
            "price": dynamics.price[live],
            "in_stock": dynamics.in_stock[live],
            "created_at": _utc(created_us[live]),
        }
    )
    return coerce_catalog(frame)


def write_batch(batch: DayBatch, out_dir: Path) -> Path:
    """Write ``out_dir/<YYYY-MM-DD>/`` (events, catalogue, manifest) in one rename, replacing an older copy.

    Returns:
        The batch folder.
    """
    start = datetime.combine(batch.day, datetime.min.time(), tzinfo=UTC)
    manifest = {
        "batch_id": batch.batch_id,
        "source": "generator",
        "rows": len(batch.events),
        "catalog_rows": len(batch.catalog),
        "window_start": start.isoformat(),
        "window_end": (start + timedelta(days=1)).isoformat(),
    }
    return write_landing_batch(
        out_dir / batch.batch_id, batch.events, batch.catalog, manifest, if_exists="replace"
    )


def generate_dataset(
    config: GeneratorConfig,
    out_dir: Path,
    key: str,
    on_day: Callable[[DayBatch], None] | None = None,
) -> GenerationSummary:
    """Generate and write every daily batch under ``out_dir``; ``on_day`` is called after each write.

    Raises:
        RecopsError: bad sizes or seed, or ``out_dir`` exists and is not a folder.
    """
    config.check()
    if out_dir.exists() and not out_dir.is_dir():
        raise RecopsError(f"generate: output path {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    seen_users = np.zeros(config.users, dtype=bool)
    n_events = 0
    n_items = 0
    for batch in generate_batches(config, key):
        write_batch(batch, out_dir)
        seen_users[batch.active_users] = True
        n_events += len(batch.events)
        n_items = len(batch.catalog)
        if on_day is not None:
            on_day(batch)
    return GenerationSummary(
        days=config.days, events=n_events, users=int(seen_users.sum()), items=n_items, out_dir=out_dir
    )
