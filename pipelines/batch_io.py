"""Read one landed batch folder as it is, so that validation (not parsing) judges its values.

A batch folder holds ``events.parquet|csv`` and ``catalog.parquet|csv`` (see
:func:`core.schema.batch_file`) and may hold a ``manifest.json`` with the batch's time window. Reading
never converts values: CSV cells stay text (only empty cells are null, so ``nan``, ``inf`` or ``NULL``
reach the checks as written), and Parquet float columns keep ``NaN`` apart from null. Files that cannot be
read at all raise :class:`BadBatchFile` naming the file; everything that can be read goes to the gate.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from core.errors import RecopsError
from core.schema import CATALOG_FILE, EVENTS_FILE, batch_file
from pipelines.datastore import check_batch_id

MANIFEST_FILE = "manifest.json"


class BadBatchFile(RecopsError, ValueError):
    """A batch file is missing, empty, corrupt or not UTF-8; the message names the file."""


@dataclass(frozen=True)
class RawBatch:
    """The two tables of a batch exactly as read, plus where they came from.

    Attributes:
        events: events table; CSV columns are text, Parquet columns keep their stored types.
        catalog: catalogue table, read the same way.
        batch_id: the folder name.
        batch_dir: the folder that was read.
        files: the data files read (events first), for copying into quarantine.
        window_start: start of the batch's event-time window from ``manifest.json`` (UTC), if given.
        window_end: end (exclusive) of that window, if given.
    """

    events: pd.DataFrame
    catalog: pd.DataFrame
    batch_id: str
    batch_dir: Path = Path(".")
    files: tuple[Path, ...] = ()
    window_start: datetime | None = None
    window_end: datetime | None = None
    manifest: dict[str, Any] = field(default_factory=dict)


def read_batch(batch_dir: Path) -> RawBatch:
    """Read a batch folder without converting any value.

    Args:
        batch_dir: folder named after the batch id, holding the events and catalogue files.

    Returns:
        The raw tables, the batch id and the optional manifest window.

    Raises:
        BadBatchFile: the folder or a file is missing, empty, header-only, corrupt or not UTF-8.
        RecopsError: the folder name is not a valid batch id.
    """
    batch_dir = Path(batch_dir)
    if not batch_dir.is_dir():
        raise BadBatchFile(f"batch folder not found: {batch_dir}")
    batch_id = check_batch_id(batch_dir.resolve().name)
    paths = []
    for name in (EVENTS_FILE, CATALOG_FILE):
        try:
            paths.append(batch_file(batch_dir, name))
        except FileNotFoundError as exc:
            raise BadBatchFile(str(exc)) from exc
    events, catalog = (read_table(p) for p in paths)
    manifest, start, end = _read_manifest(batch_dir / MANIFEST_FILE)
    files = tuple(paths) + ((batch_dir / MANIFEST_FILE,) if manifest else ())
    return RawBatch(
        events=events,
        catalog=catalog,
        batch_id=batch_id,
        batch_dir=batch_dir,
        files=files,
        window_start=start,
        window_end=end,
        manifest=manifest,
    )


def read_table(path: Path) -> pd.DataFrame:
    """Read one ``.parquet`` or ``.csv`` table raw (see the module docstring).

    Raises:
        BadBatchFile: the file cannot be read as a table; the message says why.
    """
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:
        raise BadBatchFile(f"{path}: file not found") from exc
    except OSError as exc:
        raise BadBatchFile(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise BadBatchFile(f"{path}: file is empty (0 bytes)")
    if path.suffix == ".parquet":
        return _read_parquet(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    raise BadBatchFile(f"{path}: unsupported file type (expected .parquet or .csv)")


def _read_parquet(path: Path) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
        names = [str(n) for n in parquet.schema_arrow.names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise BadBatchFile(f"{path}: duplicate column name(s): {', '.join(repeated)}")
        table = parquet.read()
    except PermissionError as exc:
        raise BadBatchFile(f"{path}: cannot be read (permission denied)") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, BadBatchFile):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise BadBatchFile(f"{path}: not a readable Parquet file (truncated or corrupt?): {reason}") from exc
    df: pd.DataFrame = table.to_pandas()
    # pandas turns both null and NaN into NaN; keep NaN (a bad value) apart from null (a missing value).
    for name in table.column_names:
        column = table.column(name)
        if pa.types.is_floating(column.type) and pc.any(pc.is_nan(column)).as_py():
            df[name] = pd.Series(column.to_pylist(), index=df.index, dtype=object)
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    head = _first_bytes(path, 4)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or head[:4] in (b"\x00\x00\xfe\xff", b"\xff\xfe\x00\x00"):
        raise BadBatchFile(f"{path}: file is UTF-16/UTF-32 encoded; batch CSV files must be UTF-8")
    try:
        df = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding="utf-8-sig",
            encoding_errors="strict",
            skip_blank_lines=True,
        )
    except UnicodeDecodeError as exc:
        raise BadBatchFile(
            f"{path}: not valid UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "re-encode the file as UTF-8"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise BadBatchFile(f"{path}: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise BadBatchFile(f"{path}: not a well-formed CSV file: {str(exc).splitlines()[0][:200]}") from exc
    except PermissionError as exc:
        raise BadBatchFile(f"{path}: cannot be read (permission denied)") from exc
    except OSError as exc:
        raise BadBatchFile(f"{path}: cannot be read ({exc})") from exc
    if df.empty and len(df.columns) > 0:
        raise BadBatchFile(f"{path}: has a header but no rows")
    if any("\x00" in str(c) for c in df.columns):
        raise BadBatchFile(f"{path}: holds NUL bytes (binary or UTF-16 data?); batch CSV files must be UTF-8")
    return df


def _first_bytes(path: Path, n: int) -> bytes:
    with path.open("rb") as fh:
        return fh.read(n)


def _read_manifest(path: Path) -> tuple[dict[str, Any], datetime | None, datetime | None]:
    if not path.is_file():
        return {}, None, None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadBatchFile(f"{path}: not a valid UTF-8 JSON file: {exc}") from exc
    except OSError as exc:
        raise BadBatchFile(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(manifest, dict):
        raise BadBatchFile(f"{path}: must hold a JSON object")
    start = _manifest_time(path, manifest, "window_start")
    end = _manifest_time(path, manifest, "window_end")
    if start is not None and end is not None and not start < end:
        raise BadBatchFile(f"{path}: window_start must be before window_end")
    return manifest, start, end


def _manifest_time(path: Path, manifest: dict[str, Any], key: str) -> datetime | None:
    value = manifest.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadBatchFile(f"{path}: {key} must be an ISO-8601 timestamp string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadBatchFile(f"{path}: {key}={value!r} is not an ISO-8601 timestamp") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)
