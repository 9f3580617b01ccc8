"""The online-store seed: each known shopper's recent items and bought set, as one file the scorer loads.

The ``recops online seed`` step (:mod:`pipelines.online.seed`) writes it from the published data; the scoring
service loads it into its online store at start-up, so a known shopper has a history without the service
reading the whole data layer per request. Both sides meet here, in the kernel, because ``pipelines`` and
``service`` never import each other.

Files (:func:`seed_paths`): ``<runtime>/online/seed.parquet`` (one row per shopper) and ``seed.json``, the
manifest ``{"digest": str, "rows": int, "created_at": iso}``. Columns:

* ``user_id``: the shopper's pseudonym (``p_`` + 20 hex, :mod:`core.privacy`), unique;
* ``recent_items``: the last item ids the shopper touched, oldest first (at most
  ``features.max_sequence_length``);
* ``bought_items``: every item the shopper bought, sorted;
* ``last_ts``: the shopper's latest event (UTC).

The digest is a SHA-256 over the rows in a canonical text form, so the same data gives the same digest
whatever the Parquet library writes. Both files are written atomically (the Parquet file first, the
manifest last: a reader that finds a manifest finds its file); :func:`read_seed` checks the digest when the
manifest is there and raises :class:`SeedError` naming the file for anything malformed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import pandas as pd

from core.errors import RecopsError
from core.fsio import atomic_file, atomic_write_text
from core.privacy import is_pseudonymized

if TYPE_CHECKING:
    from core.settings import Settings

SEED_FOLDER: Final = "online"
SEED_FILE: Final = "seed.parquet"
MANIFEST_FILE: Final = "seed.json"
SEED_COLUMNS: Final[tuple[str, ...]] = ("user_id", "recent_items", "bought_items", "last_ts")


class SeedError(RecopsError, ValueError):
    """The seed file or its manifest is missing, malformed or does not match its digest."""


def seed_paths(settings: Settings) -> tuple[Path, Path]:
    """``(<runtime>/online/seed.parquet, <runtime>/online/seed.json)``."""
    folder = settings.runtime_dir / SEED_FOLDER
    return folder / SEED_FILE, folder / MANIFEST_FILE


def _as_list(value: Any) -> list[str] | None:
    """A list cell as a list of str, or None when it is not a list of non-null strings."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        items = list(value)
    except TypeError:
        return None
    if any(not isinstance(item, str) or not item for item in items):
        return None
    return items


def canonical_seed(
    frame: pd.DataFrame, *, max_length: int | None = None, where: str = "seed"
) -> pd.DataFrame:
    """Validate ``frame`` and return it in the canonical form: the four columns, rows sorted by user id,
    list cells as Python lists of str, ``last_ts`` as ``datetime64[us, UTC]``.

    Raises:
        SeedError: a column is missing, a user id is not a unique pseudonym, a list cell is not a list of
            item ids (or is longer than ``max_length``), or a timestamp is missing or not UTC-aware.
    """
    missing = [c for c in SEED_COLUMNS if c not in frame.columns]
    if missing:
        raise SeedError(
            f"{where}: missing column(s) {', '.join(missing)} (expected {', '.join(SEED_COLUMNS)})"
        )
    users = frame["user_id"]
    if users.isna().any() or not is_pseudonymized(users.astype("string")):
        raise SeedError(f"{where}: user_id must hold pseudonyms ('p_' + 20 hex) with no nulls")
    if users.duplicated().any():
        raise SeedError(f"{where}: user_id {users[users.duplicated()].iloc[0]!r} appears more than once")
    lists: dict[str, list[list[str]]] = {}
    for column in ("recent_items", "bought_items"):
        cells = []
        for row, value in enumerate(frame[column].tolist()):
            items = _as_list(value)
            if items is None:
                raise SeedError(f"{where}: row {row} {column} is not a list of item ids (got {value!r:.80})")
            if column == "recent_items" and max_length is not None and len(items) > max_length:
                raise SeedError(f"{where}: row {row} recent_items holds {len(items)} items > {max_length}")
            cells.append(items)
        lists[column] = cells
    ts = frame["last_ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise SeedError(f"{where}: last_ts must be a timezone-aware (UTC) timestamp column, got {ts.dtype}")
    if ts.isna().any():
        raise SeedError(f"{where}: last_ts has missing values")
    out = pd.DataFrame(
        {
            "user_id": users.astype(str).tolist(),
            "recent_items": lists["recent_items"],
            "bought_items": lists["bought_items"],
            "last_ts": ts.dt.tz_convert(UTC).astype("datetime64[us, UTC]").reset_index(drop=True),
        }
    )
    return out.sort_values("user_id", kind="stable").reset_index(drop=True)


def seed_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of the canonical rows (``frame`` must be canonical: see :func:`canonical_seed`)."""
    digest = hashlib.sha256()
    micros = frame["last_ts"].dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype("int64").tolist()
    rows: Iterable[tuple[str, Sequence[str], Sequence[str], int]] = zip(
        frame["user_id"], frame["recent_items"], frame["bought_items"], micros, strict=True
    )
    for user, recent, bought, ts in rows:
        line = json.dumps([user, list(recent), list(bought), int(ts)], separators=(",", ":"))
        digest.update(line.encode("utf-8") + b"\n")
    return digest.hexdigest()


def _arrow_table(frame: pd.DataFrame) -> Any:
    import pyarrow as pa

    utc_micros = frame["last_ts"].dt.tz_convert(None).to_numpy().astype("datetime64[us]")
    return pa.table(
        {
            "user_id": pa.array(frame["user_id"].tolist(), type=pa.string()),
            "recent_items": pa.array(frame["recent_items"].tolist(), type=pa.list_(pa.string())),
            "bought_items": pa.array(frame["bought_items"].tolist(), type=pa.list_(pa.string())),
            "last_ts": pa.array(utc_micros, type=pa.timestamp("us", tz="UTC")),
        }
    )


def write_seed(frame: pd.DataFrame, settings: Settings, *, now: datetime | None = None) -> dict[str, Any]:
    """Validate ``frame``, write ``seed.parquet`` then ``seed.json`` atomically; return the manifest.

    Raises:
        SeedError: ``frame`` is not a valid seed (nothing is written).
    """
    import pyarrow.parquet as pq

    canonical = canonical_seed(frame, where="seed to write")
    parquet_path, manifest_path = seed_paths(settings)
    parquet_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(parquet_path) as tmp:
        pq.write_table(_arrow_table(canonical), tmp, compression="zstd", write_page_checksum=True)
    created = (now or datetime.now(UTC)).astimezone(UTC)
    manifest = {"digest": seed_digest(canonical), "rows": len(canonical), "created_at": created.isoformat()}
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def read_manifest(path: Path) -> dict[str, Any]:
    """The seed manifest at ``path`` (``{"digest", "rows", "created_at"}``).

    Raises:
        SeedError: the file is missing, not JSON, or lacks a field.
    """
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SeedError(f"{path}: seed manifest not found: run `recops online seed`") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SeedError(f"{path}: unreadable seed manifest ({exc}): run `recops online seed` again") from exc
    if (
        not isinstance(manifest, dict)
        or not isinstance(manifest.get("digest"), str)
        or not isinstance(manifest.get("rows"), int)
        or not isinstance(manifest.get("created_at"), str)
    ):
        raise SeedError(f"{path}: seed manifest must hold digest (str), rows (int) and created_at (str)")
    return manifest


def read_seed(path: Path, *, max_length: int | None = None, verify: bool = True) -> pd.DataFrame:
    """Read and validate a seed file (columns as in the module docstring, lists as Python lists).

    With ``verify`` (the default) and a ``seed.json`` beside the file, the rows must match its digest and
    row count, so a file that changed after it was written is refused rather than loaded.

    Raises:
        SeedError: the file is missing, not a readable Parquet file, malformed, or does not match the
            manifest's digest (the message names the file and what to do).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except FileNotFoundError as exc:
        raise SeedError(f"{path}: online seed not found: run `recops online seed`") from exc
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise SeedError(
            f"{path}: not a readable seed file ({reason}): run `recops online seed` again"
        ) from exc
    frame = canonical_seed(table.to_pandas(), max_length=max_length, where=str(path))
    manifest_path = path.with_name(MANIFEST_FILE)
    if verify and manifest_path.exists():
        manifest = read_manifest(manifest_path)
        if manifest["rows"] != len(frame) or manifest["digest"] != seed_digest(frame):
            raise SeedError(
                f"{path}: content does not match {manifest_path.name} (digest or row count differs): the "
                "seed changed after it was written; run `recops online seed` again"
            )
    return frame
