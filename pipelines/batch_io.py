"""The one reader and the one writer of landing batches (generator, loaders, gate and publish use them).

A batch folder holds ``events.parquet|csv`` and ``catalog.parquet|csv`` (see
:func:`core.schema.batch_file`) and may hold a ``manifest.json`` with the batch's time window.

**Reading** (:func:`read_batch`, :func:`read_table`) never converts values, so that validation (not
parsing) judges them: CSV cells stay text (only empty cells are null, so ``nan``, ``inf`` or ``NULL`` reach
the checks as written), and Parquet float columns keep ``NaN`` apart from null. Files that cannot be read at
all raise :class:`BadBatchFile` naming the file; everything that can be read goes to the gate. The loaders
read their source files through the same Parquet and CSV readers (:func:`read_parquet_raw`,
:func:`read_csv_raw`) with their own error class.

**Writing** (:func:`write_batch`) coerces both tables to the schema, refuses tables that break the
schema's column rules (:func:`core.schema.text_rule_problems`, the rules the gate checks), and writes
``events.parquet``, ``catalog.parquet`` and ``manifest.json`` with fixed Parquet options
(:data:`PARQUET_OPTIONS`) into a hidden folder that is renamed into place (:func:`core.fsio.staged_dir`):
a reader sees no batch or the whole batch. The same tables give the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from core.errors import RecopsError
from core.fsio import atomic_file, staged_dir
from core.schema import (
    CATALOG_FILE,
    EVENTS_FILE,
    batch_file,
    coerce_catalog,
    coerce_events,
    text_rule_problems,
)
from pipelines.datastore import check_batch_id

MANIFEST_FILE: Final = "manifest.json"
#: pyarrow options of every Parquet file recops writes (landing batches and published data), so the same
#: frame and library versions always give the same bytes. Every page carries a CRC32 checksum, which the
#: readers verify (:func:`read_parquet_raw`, :func:`pipelines.datastore.read_published_table`): a flipped
#: bit on disk, in the DVC cache or on a remote is an error naming the file, never silently wrong data.
PARQUET_OPTIONS: Final[dict[str, Any]] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "write_page_checksum": True,
}


class BadBatchFile(RecopsError, ValueError):
    """A batch file is missing, empty, corrupt or not UTF-8; the message names the file."""


class BatchRuleError(RecopsError, ValueError):
    """Tables about to be written as a batch break the schema's column rules (the gate would refuse them)."""


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
    if batch_dir.is_file():
        raise BadBatchFile(
            f"{batch_dir} is a file; a batch folder (named after the batch id, holding the events and "
            "catalog files) is expected"
        )
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
    return read_parquet_raw(path)


def read_parquet_raw(
    path: Path, *, columns: tuple[str, ...] | list[str] | None = None, error: type[RecopsError] = BadBatchFile
) -> pd.DataFrame:
    """Read a Parquet file as stored; float columns holding NaN come back as objects (NaN apart from null).

    Page checksums are verified where the file has them (every file recops writes does).

    Args:
        path: the file.
        columns: columns that must be present; only these are returned (default: all).
        error: the exception raised for an unreadable file, a repeated column name or a missing column.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path, page_checksum_verification=True)
        names = [str(n) for n in parquet.schema_arrow.names]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise error(f"{path}: duplicate column name(s): {', '.join(repeated)}")
        if columns is not None:
            missing = [c for c in columns if c not in names]
            if missing:
                raise error(
                    f"{path}: missing column(s) {', '.join(repr(c) for c in missing)} "
                    f"(the file has: {', '.join(repr(c) for c in names[:20])})"
                )
        table = parquet.read(columns=list(columns) if columns is not None else None)
    except PermissionError as exc:
        raise error(f"{path}: cannot be read (permission denied)") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        if isinstance(exc, RecopsError):
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise error(f"{path}: not a readable Parquet file (truncated or corrupt?): {reason}") from exc
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
    df = read_csv_raw(path)
    if df.empty and len(df.columns) > 0:
        raise BadBatchFile(f"{path}: has a header but no rows")
    if any("\x00" in str(c) for c in df.columns):
        raise BadBatchFile(f"{path}: holds NUL bytes (binary or UTF-16 data?); batch CSV files must be UTF-8")
    return df


def read_csv_raw(
    path: Path,
    *,
    sep: str = ",",
    encoding: str = "utf-8-sig",
    names: tuple[str, ...] | list[str] | None = None,
    error: type[RecopsError] = BadBatchFile,
    encoding_hint: str = "re-encode the file as UTF-8",
) -> pd.DataFrame:
    """Read a delimited text file with every cell as text (only empty cells are null).

    Args:
        path: the file.
        sep: the delimiter.
        encoding: the text encoding (decoding errors are refused, never replaced).
        names: column names of a file without a header line.
        error: the exception raised for an unreadable or malformed file.
        encoding_hint: what the message tells a person to do about undecodable bytes.
    """
    try:
        return pd.read_csv(
            path,
            sep=sep,
            header=None if names is not None else "infer",
            names=list(names) if names is not None else None,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            encoding=encoding,
            encoding_errors="strict",
            skip_blank_lines=True,
            engine="c",
        )
    except UnicodeDecodeError as exc:
        codec = "UTF-8" if encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8") else encoding
        raise error(
            f"{path}: not valid {codec} (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            f"{encoding_hint}"
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise error(f"{path}: no header and no rows") from exc
    except pd.errors.ParserError as exc:
        raise error(f"{path}: not a well-formed delimited file: {str(exc).splitlines()[0][:200]}") from exc
    except PermissionError as exc:
        raise error(f"{path}: cannot be read (permission denied)") from exc
    except OSError as exc:
        raise error(f"{path}: cannot be read ({exc})") from exc


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


# --------------------------------------------------------------------------------------------- writing

IfExists = Literal["refuse", "replace"]


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """``df`` as Parquet bytes written with :data:`PARQUET_OPTIONS` (no index)."""
    import io

    buffer = io.BytesIO()
    df.to_parquet(buffer, engine="pyarrow", index=False, **PARQUET_OPTIONS)
    return buffer.getvalue()


def write_parquet(df: pd.DataFrame, path: Path, *, tmp_dir: Path | None = None) -> None:
    """Write ``df`` to ``path`` atomically and durably with :data:`PARQUET_OPTIONS`.

    ``tmp_dir`` (same filesystem) holds the temporary file instead of ``path``'s folder.
    """
    with atomic_file(path, tmp_dir=tmp_dir) as tmp:
        df.to_parquet(tmp, engine="pyarrow", index=False, **PARQUET_OPTIONS)


def batch_files(
    events: pd.DataFrame, catalog: pd.DataFrame, manifest: dict[str, Any] | None = None
) -> dict[str, bytes]:
    """The files of a landing batch: schema-coerced Parquet tables and the optional manifest.

    Raises:
        BatchRuleError: a table breaks the schema's column rules (each problem is listed).
        SchemaError: a table does not fit the schema at all.
    """
    events, catalog = coerce_events(events), coerce_catalog(catalog)
    problems = text_rule_problems("events", events) + text_rule_problems("catalog", catalog)
    if problems:
        raise BatchRuleError(
            "the batch would fail the validation gate, nothing written: " + "; ".join(problems[:6])
        )
    files = {
        f"{EVENTS_FILE}.parquet": parquet_bytes(events),
        f"{CATALOG_FILE}.parquet": parquet_bytes(catalog),
    }
    if manifest is not None:
        files[MANIFEST_FILE] = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
    return files


def same_content(folder: Path, files: dict[str, bytes]) -> bool:
    """Whether ``folder`` holds exactly ``files`` (names and bytes)."""
    if not folder.is_dir():
        return False
    if {p.name for p in folder.iterdir()} != set(files):
        return False
    return all((folder / name).read_bytes() == data for name, data in files.items())


def write_batch_files(target: Path, files: dict[str, bytes], *, if_exists: IfExists = "refuse") -> bool:
    """Write ``files`` as the batch folder ``target`` in one rename; return False if it already held them.

    Args:
        target: the batch folder (its name is the batch id).
        files: file name -> bytes, as :func:`batch_files` returns them.
        if_exists: ``refuse`` keeps an identical folder and refuses a different one; ``replace`` swaps a
            different one out (readers see the old or the new batch, never a mix).

    Raises:
        RecopsError: ``target`` exists with different content and ``if_exists`` is ``refuse``.
    """
    check_batch_id(target.name)
    if target.exists() and same_content(target, files):
        return False
    if target.exists() and if_exists == "refuse":
        raise RecopsError(
            f"batch folder {target} already exists with different content; remove it or choose another --out"
        )
    with staged_dir(target, if_exists=if_exists) as tmp:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
    return True


def write_batch(
    target: Path,
    events: pd.DataFrame,
    catalog: pd.DataFrame,
    manifest: dict[str, Any] | None = None,
    *,
    if_exists: IfExists = "refuse",
) -> Path:
    """Write one landing batch folder ``target`` (see the module docstring); return it.

    Raises:
        BatchRuleError: the tables break the schema's column rules.
        RecopsError: a bad batch id, or ``target`` holds a different batch and ``if_exists`` is ``refuse``.
    """
    write_batch_files(target, batch_files(events, catalog, manifest), if_exists=if_exists)
    return target
