"""Reading the loaders' source files: CSV/TSV (delimiter sniffed) or Parquet, with clear errors.

Reading never guesses silently: CSV cells are read as text (only empty cells are missing, so ``nan``,
``inf`` or ``NULL`` reach the parsers as written), Parquet columns keep their stored types, and every
problem raises :class:`DataFileError` with a message that names the file. The Parquet and CSV readers are
the landing-batch readers of :mod:`pipelines.batch_io`, so both sides read files the same way.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import pandas as pd

from core.errors import RecopsError
from pipelines.batch_io import read_csv_raw, read_parquet_raw

_PARQUET_MAGIC: Final = b"PAR1"
_PARQUET_SUFFIXES: Final = (".parquet", ".pq")
_CSV_DELIMITERS: Final = ",;\t|"


class DataFileError(RecopsError, ValueError):
    """An input file cannot be loaded; the message names the file and, where it applies, the column."""


def shared_data_dir() -> Path:
    """Folder of the public raw datasets: ``$RECOPS_SHARED_DATA``, else ``<repo>/../shared/data/raw``.

    A checkout nested deeper (e.g. a CI clone in a sub-folder) also finds the first ``shared/data/raw`` next
    to one of its ancestors; when none exists the conventional path is returned for the error message.
    """
    env = os.environ.get("RECOPS_SHARED_DATA")
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parents[3]
    for root in (repo, _origin_checkout(repo)):
        if root is None:
            continue
        for folder in (root, *root.parents):
            candidate = folder.parent / "shared" / "data" / "raw"
            if candidate.is_dir():
                return candidate
    return repo.parent / "shared" / "data" / "raw"


def _origin_checkout(repo: Path) -> Path | None:
    """The folder a local clone was cloned from (``git remote get-url origin`` when it is a local path), so
    a throw-away clone elsewhere still finds the shared data next to the checkout it came from."""
    import subprocess

    try:
        url = subprocess.run(
            ["git", "remote", "get-url", "origin"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    url = url.removeprefix("file://")
    if not url or "://" in url or ":" in url.split("/")[0]:
        return None  # a remote URL (https://, git@host:...), not a folder on this machine
    origin = (repo / url).resolve() if not Path(url).is_absolute() else Path(url)
    return origin if origin.is_dir() else None


def read_table(
    path: Path,
    *,
    encoding: str | None = None,
    sep: str | None = None,
    names: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a CSV/TSV text file or a Parquet file into a DataFrame, with clear errors.

    Parquet is recognised by its suffix (``.parquet``, ``.pq``) or its magic bytes; anything else is read as
    delimited text whose delimiter is sniffed among ``, ; TAB |`` unless ``sep`` is given.

    Args:
        path: the file.
        encoding: text encoding of a CSV file; default UTF-8 (a UTF-8 byte-order mark is accepted).
        sep: the delimiter of a text file (skips sniffing).
        names: column names of a text file without a header line.
        columns: columns that must be present; only these are returned.

    Returns:
        The table. Text columns hold strings (empty cells are missing); Parquet columns keep their types,
        except float columns holding NaN (not null), which come back as objects so NaN stays visible.

    Raises:
        DataFileError: missing, empty (0 bytes), header-only, undecodable, ragged or corrupt file, or a
            required column is absent.
    """
    path = Path(path)
    if path.is_dir():
        raise DataFileError(f"{path}: is a folder, expected a file")
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(65536)
    except FileNotFoundError as exc:
        raise DataFileError(f"{path}: file not found") from exc
    except OSError as exc:
        raise DataFileError(f"{path}: cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise DataFileError(f"{path}: file is empty (0 bytes)")
    if path.suffix.lower() in _PARQUET_SUFFIXES or head.startswith(_PARQUET_MAGIC):
        df = read_parquet_raw(path, columns=tuple(columns) if columns else None, error=DataFileError)
    else:
        df = _read_text(path, head, encoding=encoding, sep=sep, names=names)
        if columns is not None:
            require_columns(df, columns, path)
            df = df[list(columns)]
    if df.empty:
        raise DataFileError(f"{path}: has a header but no data rows")
    return df


def require_columns(df: pd.DataFrame, columns: Sequence[str], source: object) -> None:
    """Raise :class:`DataFileError` naming every column of ``columns`` that ``df`` lacks."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(repr(str(c)) for c in list(df.columns)[:20])
        raise DataFileError(
            f"{source}: missing column(s) {', '.join(repr(c) for c in missing)} (the file has: {have})"
        )


def _read_text(
    path: Path, head: bytes, *, encoding: str | None, sep: str | None, names: Sequence[str] | None
) -> pd.DataFrame:
    codec = encoding or "utf-8-sig"
    if encoding is None and head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataFileError(
            f"{path}: file is UTF-16 encoded (byte-order mark); "
            "re-encode it as UTF-8 or pass --encoding utf-16"
        )
    try:
        sample = head.decode(codec, errors="ignore")
    except LookupError as exc:
        raise DataFileError(f"{path}: unknown encoding {codec!r}") from exc
    if "\x00" in sample:
        raise DataFileError(
            f"{path}: holds NUL bytes (binary data, or UTF-16 without a byte-order mark?); "
            "pass the right --encoding"
        )
    df = read_csv_raw(
        path,
        sep=sep or _sniff_delimiter(sample),
        encoding=codec,
        names=tuple(names) if names is not None else None,
        error=DataFileError,
        encoding_hint="re-encode the file as UTF-8 or pass --encoding (e.g. latin-1)",
    )
    df.columns = [str(c).strip() for c in df.columns]
    duplicated = sorted({c for c in df.columns if list(df.columns).count(c) > 1})
    if duplicated:
        raise DataFileError(f"{path}: duplicate column name(s) {', '.join(map(repr, duplicated))}")
    return df


def _sniff_delimiter(sample: str) -> str:
    lines = [line for line in sample.splitlines()[:50] if line.strip()]
    if not lines:
        return ","
    if len(lines) > 1 and len(sample) == 65536:
        lines = lines[:-1]  # the last line of a truncated sample may be cut
    try:
        return csv.Sniffer().sniff("\n".join(lines), delimiters=_CSV_DELIMITERS).delimiter
    except csv.Error:
        counts = {d: lines[0].count(d) for d in _CSV_DELIMITERS}
        best = max(counts, key=lambda d: counts[d])
        return best if counts[best] > 0 else ","
