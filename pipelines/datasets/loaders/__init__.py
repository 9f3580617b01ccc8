"""Loaders of public datasets and of any CSV/Parquet file into the recops schema.

Every loader returns ``(events, catalog)`` already coerced to :mod:`core.schema` (string ids, UTC
timestamps, event types from ``EVENT_TYPES``), with user ids pseudonymised when a key is given. The mapping
of each source (and the synthetic clocks of sources without timestamps) is documented in its module and in
``docs/data.md`` ("Loaders"). :data:`SOURCES` maps a source name (as used by ``recops data load <name>``) to
its loader; the generic loader (:func:`pipelines.datasets.loaders.generic.load_generic`) needs a column
mapping and is called on its own. :func:`load_to_landing` loads one source and writes landing batches; a
:class:`LoadNotes` passed to a loader collects what it did to rows (anonymous rows, repeats merged into
quantity) for the summary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pandas as pd

from core.errors import RecopsError
from core.privacy import drop_forgotten
from pipelines.datasets.loaders.amazon_beauty import load_amazon_beauty
from pipelines.datasets.loaders.common import (
    DataFileError,
    LoadNotes,
    limit_days,
    read_table,
    shared_data_dir,
    write_batches,
)
from pipelines.datasets.loaders.completejourney import load_completejourney
from pipelines.datasets.loaders.generic import load_generic
from pipelines.datasets.loaders.instacart import load_instacart
from pipelines.datasets.loaders.movielens import load_movielens_100k, load_movielens_small
from pipelines.datasets.loaders.yoochoose import load_yoochoose


class Loader(Protocol):
    """A source loader: ``loader(path, key=..., notes=...) -> (events, catalog)``."""

    def __call__(
        self, path: Path, *, key: str | None = None, notes: LoadNotes | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]: ...


@dataclass(frozen=True)
class Source:
    """A public dataset: its CLI name, its folder under the shared raw-data dir, and its loader."""

    name: str
    folder: str
    load: Loader
    summary: str

    def default_path(self) -> Path:
        """The source's folder under :func:`shared_data_dir`."""
        return shared_data_dir() / self.folder


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source(
            "completejourney",
            "completejourney",
            load_completejourney,
            "grocery purchases with baskets and prices",
        ),
        Source("instacart", "instacart-sample", load_instacart, "grocery orders on a synthetic clock"),
        Source("yoochoose", "yoochoose-clicks-100k", load_yoochoose, "session clicks, sessions as users"),
        Source(
            "beauty", "amazon-beauty-bert4rec", load_amazon_beauty, "reviews as purchases, synthetic clock"
        ),
        Source("movielens100k", "movielens-100k", load_movielens_100k, "ratings as graded events"),
        Source("movielens-small", "movielens-latest-small", load_movielens_small, "ratings as graded events"),
    )
}


def get_source(name: str) -> Source:
    """The registered source ``name``; unknown names raise a :class:`RecopsError` listing the known ones."""
    try:
        return SOURCES[name]
    except KeyError:
        raise RecopsError(
            f"unknown data source {name!r}: use one of {', '.join(SOURCES)} or generic"
        ) from None


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_to_landing` wrote."""

    source: str
    rows: int
    users: int
    items: int
    batches: list[Path]
    notes: LoadNotes = field(default_factory=LoadNotes)

    def summary(self) -> str:
        """A line for the terminal, then one line per thing the loader did to rows (anonymous, repeats)."""
        where = self.batches[0].parent if self.batches else "-"
        head = (
            f"{self.source}: {self.rows:,} events, {self.users:,} users, {self.items:,} items "
            f"-> {len(self.batches):,} batch(es) in {where}"
        )
        return "\n".join([head, *(f"  {line}" for line in self.notes.lines())])


def load_to_landing(
    source: str,
    load: Callable[[], tuple[pd.DataFrame, pd.DataFrame]],
    out_dir: Path,
    *,
    daily: bool = True,
    limit: int | None = None,
    batch_id: str | None = None,
    progress: bool = False,
    notes: LoadNotes | None = None,
    forgotten: frozenset[str] = frozenset(),
) -> LoadReport:
    """Run ``load`` and write its tables as landing batches under ``out_dir``.

    Args:
        source: name recorded in the manifests and the report.
        load: a no-argument call returning ``(events, catalog)`` (a loader with its arguments bound).
        out_dir: folder that receives the batch folders.
        daily: one batch per UTC day, else a single batch.
        limit: keep only the first ``limit`` days of events.
        batch_id: name of the single batch.
        progress: show a progress bar while writing.
        notes: the notes ``load`` fills in (bind the same object into ``load``), shown in the summary.
        forgotten: pseudonyms of forgotten users (:func:`core.privacy.read_forgotten`): their events are
            left out, so a shopper erased with ``recops data forget`` does not come back with a reload.
    """
    events, catalog = load()
    events, dropped = drop_forgotten(events, forgotten)
    if dropped:
        events = events.reset_index(drop=True)
        if notes is not None:
            notes.forgotten_dropped += dropped
    if limit is not None:
        events, catalog = limit_days(events, catalog, limit)
    batches = write_batches(
        events, catalog, out_dir, daily=daily, batch_id=batch_id, source=source, progress=progress
    )
    return LoadReport(
        source=source,
        rows=len(events),
        users=int(events["user_id"].nunique()),
        items=int(events["item_id"].nunique()),
        batches=batches,
        notes=notes if notes is not None else LoadNotes(),
    )


__all__ = [
    "SOURCES",
    "DataFileError",
    "LoadNotes",
    "LoadReport",
    "Loader",
    "Source",
    "get_source",
    "load_amazon_beauty",
    "load_completejourney",
    "load_generic",
    "load_instacart",
    "load_movielens_100k",
    "load_movielens_small",
    "load_to_landing",
    "load_yoochoose",
    "read_table",
    "write_batches",
]
