"""`recops data load <source>`: load a public dataset (or any CSV/Parquet file) into landing batches.

Sources: completejourney, instacart, yoochoose, beauty, movielens100k, movielens-small (default ``--path``:
the source's folder under the shared raw-data dir) and generic (``--path`` and ``--map`` required). User ids
are pseudonymised with ``RECOPS_PSEUDONYMIZATION_KEY``. Batches go to ``<landing>/<source>/YYYY-MM-DD/``
(``--single-batch``: one folder). Events of forgotten users (the deny-list ``data/_forgotten.txt``) are left
out. The loaders and their mappings are in ``pipelines.datasets.loaders``. The
summary line is followed by what the loader did to rows (anonymous rows, repeats merged into quantity); the
generic loader's ``--anonymous`` and ``--repeats`` choose how (docs/data.md).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

if TYPE_CHECKING:
    import pandas as pd

    from pipelines.datasets.loaders import LoadNotes
    from pipelines.datasets.loaders.common import AnonymousPolicy, RepeatPolicy

# Name and help of each registered source, kept here so `recops --help` does not import pandas.
SOURCE_HELP: dict[str, str] = {
    "completejourney": "The Complete Journey grocery transactions (purchases, baskets, prices).",
    "instacart": "Instacart 150k-row sample (purchases on a synthetic per-user clock).",
    "beauty": "Amazon Beauty, BERT4Rec file (reviews as purchases, one day per position).",
    "movielens100k": "MovieLens 100K ratings (>=4 purchase, 3-3.5 click, <3 view).",
    "movielens-small": "MovieLens latest-small 2016 ratings (>=4 purchase, 3-3.5 click, <3 view).",
}

PathOption = Annotated[
    Path | None,
    typer.Option(
        "--path",
        help="Source folder or file (default: its folder under $RECOPS_SHARED_DATA "
        "or <repo>/../shared/data/raw).",
    ),
]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Folder that receives the batch folders (default: <landing>/<source>)."),
]
DailyOption = Annotated[
    bool,
    typer.Option("--daily/--single-batch", help="One batch per UTC day (YYYY-MM-DD), or a single batch."),
]
LimitOption = Annotated[
    int | None, typer.Option("--limit-days", min=1, help="Keep only the first N days of events.")
]
BatchIdOption = Annotated[
    str | None, typer.Option("--batch-id", help="Name of the single batch (default: the last event day).")
]


def _run(
    source: str,
    load: Callable[[str, LoadNotes], tuple[pd.DataFrame, pd.DataFrame]],
    out: Path | None,
    daily: bool,
    limit_days: int | None,
    batch_id: str | None,
) -> None:
    """Load with the configured pseudonymisation key, write batches, print the summary (and the notes).

    Events of users on the deny-list of ``recops data forget`` (``data/_forgotten.txt``) are left out.
    """
    from core.privacy import read_forgotten
    from core.settings import get_settings
    from pipelines.datasets.loaders import LoadNotes, load_to_landing

    settings = get_settings()
    key = settings.pseudonymization_key.get_secret_value()
    out_dir = out if out is not None else settings.landing_dir / source
    notes = LoadNotes()
    report = load_to_landing(
        source,
        lambda: load(key, notes),
        out_dir,
        daily=daily,
        limit=limit_days,
        batch_id=batch_id,
        progress=True,
        notes=notes,
        forgotten=read_forgotten(settings.data_dir),
    )
    typer.echo(report.summary())


def _source_command(name: str) -> Callable[..., None]:
    def command(
        path: PathOption = None,
        out: OutOption = None,
        daily: DailyOption = True,
        limit_days: LimitOption = None,
        batch_id: BatchIdOption = None,
    ) -> None:
        from pipelines.datasets.loaders import get_source

        source = get_source(name)
        where = path if path is not None else source.default_path()
        _run(
            name,
            lambda key, notes: source.load(where, key=key, notes=notes),
            out,
            daily,
            limit_days,
            batch_id,
        )

    command.__doc__ = SOURCE_HELP[name]
    return command


def load_yoochoose_command(
    path: PathOption = None,
    out: OutOption = None,
    split: Annotated[
        str, typer.Option("--split", help="train_full, test or both (consecutive in time).")
    ] = "both",
    daily: DailyOption = True,
    limit_days: LimitOption = None,
    batch_id: BatchIdOption = None,
) -> None:
    """YOOCHOOSE 100k clicks (click events; each session is its own user)."""
    from pipelines.datasets.loaders import get_source, load_yoochoose

    where = path if path is not None else get_source("yoochoose").default_path()
    _run(
        "yoochoose",
        lambda key, notes: load_yoochoose(where, key=key, split=split, notes=notes),
        out,
        daily,
        limit_days,
        batch_id,
    )


def load_generic_command(
    path: Annotated[Path, typer.Option("--path", help="Events file: CSV/TSV with a header, or Parquet.")],
    mapping: Annotated[
        str,
        typer.Option(
            "--map",
            help="FIELD=COLUMN pairs: user_id, item_id, ts required (ts not with --ts-from-row-order); "
            "event_type, session_id, price, quantity, event_id optional. "
            "Example: user_id=customer,item_id=sku,ts=time",
        ),
    ],
    out: OutOption = None,
    event_type: Annotated[
        str | None,
        typer.Option(
            "--event-type", help="Type of every event when no event_type column is mapped (default purchase)."
        ),
    ] = None,
    event_type_map: Annotated[
        str | None,
        typer.Option(
            "--event-type-map", help='Translate codes of the event_type column, e.g. "0=view,1=purchase".'
        ),
    ] = None,
    catalog: Annotated[
        Path | None, typer.Option("--catalog", help="Optional product table (CSV/Parquet).")
    ] = None,
    catalog_map: Annotated[
        str | None,
        typer.Option(
            "--catalog-map",
            help="FIELD=COLUMN pairs of the product table: item_id required; "
            "category, brand, price, in_stock, created_at optional.",
        ),
    ] = None,
    ts_unit: Annotated[
        str, typer.Option("--ts-unit", help="Timestamps as iso text, or unix s / ms.")
    ] = "iso",
    encoding: Annotated[
        str | None, typer.Option("--encoding", help="Text encoding of CSV files (default UTF-8).")
    ] = None,
    anonymous: Annotated[
        str,
        typer.Option(
            "--anonymous",
            help="Rows without a user id (empty, NA, null, None, nan): session = one user per session, "
            "drop, refuse; auto = session when session_id is mapped, else drop.",
        ),
    ] = "auto",
    repeats: Annotated[
        str,
        typer.Option(
            "--repeats",
            help="Rows repeating (user, item, type, time): sum = one event with the summed quantity, "
            "keep; auto = sum when times are whole minutes or coarser (e.g. dates only), else keep.",
        ),
    ] = "auto",
    header: Annotated[
        str | None,
        typer.Option(
            "--header",
            help="Column names of a text file WITHOUT a header line, comma separated, e.g. user,item.",
        ),
    ] = None,
    sep: Annotated[
        str | None,
        typer.Option("--sep", help="Text file delimiter (default: sniffed); 'whitespace' = spaces/tabs."),
    ] = None,
    ts_from_row_order: Annotated[
        bool,
        typer.Option(
            "--ts-from-row-order",
            help="No timestamp column: each user's rows are in time order; a user's k-th row gets "
            "2000-01-01T00:00Z + k x --row-step-seconds (SASRec/BERT4Rec files; use features.protocol loo).",
        ),
    ] = False,
    row_step_seconds: Annotated[
        float, typer.Option("--row-step-seconds", help="Seconds between a user's rows (--ts-from-row-order).")
    ] = 60.0,
    daily: DailyOption = True,
    limit_days: LimitOption = None,
    batch_id: BatchIdOption = None,
) -> None:
    """Any CSV/Parquet event log, mapped onto the schema with --map (see docs/data.md)."""
    from core.errors import RecopsError
    from core.settings import get_settings
    from pipelines.datasets.loaders.common import ANONYMOUS_POLICIES, REPEAT_POLICIES
    from pipelines.datasets.loaders.generic import (
        CATALOG_FIELDS,
        EVENT_FIELDS,
        REQUIRED_CATALOG_FIELDS,
        load_generic,
        parse_event_type_map,
        parse_mapping,
        required_event_fields,
    )
    from pipelines.params import load_params

    if anonymous not in ANONYMOUS_POLICIES:
        raise RecopsError(f"--anonymous {anonymous!r}: use one of {', '.join(ANONYMOUS_POLICIES)}")
    if repeats not in REPEAT_POLICIES:
        raise RecopsError(f"--repeats {repeats!r}: use one of {', '.join(REPEAT_POLICIES)}")
    fields = parse_mapping(
        mapping, allowed=EVENT_FIELDS, required=required_event_fields(ts_from_row_order), option="--map"
    )
    catalog_fields = (
        parse_mapping(
            catalog_map, allowed=CATALOG_FIELDS, required=REQUIRED_CATALOG_FIELDS, option="--catalog-map"
        )
        if catalog_map
        else None
    )
    codes = parse_event_type_map(event_type_map) if event_type_map else None
    gap = load_params(get_settings().params_file).features.session_gap_minutes

    def load(key: str, notes: LoadNotes) -> tuple[pd.DataFrame, pd.DataFrame]:
        return load_generic(
            path,
            mapping=fields,
            key=key,
            event_type=event_type,
            event_type_map=codes,
            catalog_path=catalog,
            catalog_mapping=catalog_fields,
            ts_unit=ts_unit,
            encoding=encoding,
            session_gap_minutes=gap,
            anonymous=cast("AnonymousPolicy", anonymous),  # checked against ANONYMOUS_POLICIES above
            repeats=cast("RepeatPolicy", repeats),  # checked against REPEAT_POLICIES above
            notes=notes,
            header=header.split(",") if header is not None else None,
            sep=sep,
            ts_from_row_order=ts_from_row_order,
            row_step_seconds=row_step_seconds,
        )

    _run("generic", load, out, daily, limit_days, batch_id)


def register(app: typer.Typer, data_app: typer.Typer) -> None:
    """Add ``recops data load <source>`` commands."""
    load_app = typer.Typer(
        help="Load a public dataset or any CSV/Parquet file into landing batches (pseudonymised).",
        no_args_is_help=True,
    )
    for name in ("completejourney", "instacart"):
        load_app.command(name)(_source_command(name))
    load_app.command("yoochoose")(load_yoochoose_command)
    for name in ("beauty", "movielens100k", "movielens-small"):
        load_app.command(name)(_source_command(name))
    load_app.command("generic")(load_generic_command)
    data_app.add_typer(load_app, name="load")
