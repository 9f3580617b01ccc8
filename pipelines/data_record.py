"""What ``data.dvc`` records about ``data/``, and whether ``data/`` still matches it.

``data.dvc`` holds the MD5 of a *directory listing* (``<md5>.dir`` in the DVC cache: a JSON list of
``{"md5", "relpath"}``, one per file). :func:`recorded_data` reads that listing; :func:`workspace_listing`
re-hashes every file under ``data/`` (never trusting mtimes, unlike DVC); :func:`compare` names the files
that were deleted, modified or added by hand. Publish, forget and unpublish call
:func:`ensure_matches_record` before they change anything, so ``dvc add data`` can only record the batches
the command itself wrote; ``recops data verify`` reports the same comparison.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import RecopsError
from pipelines.dvc_objects import cache_object_path, fetch_dir_listing
from pipelines.dvc_ops import DvcError

log = logging.getLogger(__name__)

RESTORE = (
    "restore the recorded data: delete the files listed as modified, then run `dvc checkout --force "
    "data.dvc` (it also removes what is not recorded; `dvc pull --force data.dvc` when the DVC cache lacks "
    "a file); this discards the changes listed"
)


class DataDrift(RecopsError):
    """``data/`` differs from what ``data.dvc`` records outside the batches the command may change."""


@dataclass(frozen=True)
class Recorded:
    """What ``data.dvc`` records.

    Attributes:
        dvc_file: ``data.dvc`` beside ``data/``.
        md5: the recorded ``<md5>.dir``; ``None`` when there is no ``data.dvc`` yet.
        files: relative path -> MD5 of each recorded file; ``None`` when the listing is in neither the DVC
            cache nor on the remote (a fresh clone whose remote is empty).
        remote_error: why the remote could not be asked for a listing missing from the cache (``None``: it
            was not needed, or the remote answered).
    """

    dvc_file: Path
    md5: str | None
    files: dict[str, str] | None
    remote_error: str | None = None


@dataclass(frozen=True)
class Drift:
    """Files of ``data/`` that differ from the record (relative to ``data/``)."""

    deleted: tuple[str, ...] = ()
    modified: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    actual: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __bool__(self) -> bool:
        return bool(self.deleted or self.modified or self.added)

    def describe(self, prefix: str = "data", limit: int = 6) -> str:
        """``deleted: data/a/events.parquet, ...; modified: ...; not recorded: ...`` (``limit`` each)."""
        parts = []
        for label, paths in (
            ("deleted", self.deleted),
            ("modified", self.modified),
            ("not recorded", self.added),
        ):
            if paths:
                shown = ", ".join(f"{prefix}/{p}" for p in paths[:limit])
                more = f" and {len(paths) - limit} more" if len(paths) > limit else ""
                parts.append(f"{label}: {shown}{more}")
        return "; ".join(parts)


def dvc_file_for(data_dir: Path) -> Path:
    """``data.dvc`` of ``data_dir`` (beside it, as ``dvc add`` writes it)."""
    return data_dir.parent / f"{data_dir.name}.dvc"


def recorded_md5(dvc_file: Path) -> str | None:
    """The ``md5`` of the single output of a ``.dvc`` file (``None`` when the file does not exist)."""
    try:
        doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, yaml.YAMLError) as exc:
        raise RecopsError(f"{dvc_file} is unreadable ({exc}): restore it from git") from exc
    try:
        return str(doc["outs"][0]["md5"])
    except (KeyError, IndexError, TypeError) as exc:
        raise RecopsError(f"{dvc_file} records no output md5: restore it from git") from exc


def read_listing(repo_root: Path, md5: str) -> dict[str, str] | None:
    """The ``.dir`` listing ``md5`` from the DVC cache (relpath -> md5), or ``None`` if the cache lacks it."""
    path = cache_object_path(repo_root, md5)
    try:
        entries = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RecopsError(f"DVC cache object {path} is unreadable ({exc}): delete it and `dvc pull`") from exc
    if hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest() != md5.removesuffix(".dir"):
        raise RecopsError(
            f"DVC cache object {path} does not match its MD5 (damaged cache): delete it, then `dvc pull`"
        )
    return {str(e["relpath"]): str(e["md5"]) for e in entries}


def recorded_data(data_dir: Path, repo_root: Path, *, remote: str | None = None) -> Recorded:
    """Read ``data.dvc`` and its listing; fetch the listing from ``remote`` when the local cache lacks it."""
    dvc_file = dvc_file_for(data_dir)
    md5 = recorded_md5(dvc_file)
    if md5 is None:
        return Recorded(dvc_file, None, {})
    files = read_listing(repo_root, md5)
    if files is not None:
        return Recorded(dvc_file, md5, files)
    try:
        fetched = fetch_dir_listing(repo_root, remote, md5)
    except DvcError as exc:
        return Recorded(dvc_file, md5, None, remote_error=str(exc))
    return Recorded(dvc_file, md5, read_listing(repo_root, md5) if fetched else None)


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (what DVC records for it)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_md5(listing: dict[str, str]) -> str:
    """The ``<md5>.dir`` DVC records for a folder with these files (relpath -> md5)."""
    entries = [{"md5": listing[rel], "relpath": rel} for rel in sorted(listing)]
    return hashlib.md5(json.dumps(entries).encode(), usedforsecurity=False).hexdigest() + ".dir"


def workspace_files(data_dir: Path) -> list[str]:
    """Every file under ``data_dir`` as a POSIX path relative to it, sorted."""
    if not data_dir.is_dir():
        return []
    return sorted(p.relative_to(data_dir).as_posix() for p in data_dir.rglob("*") if p.is_file())


def workspace_listing(data_dir: Path, paths: Iterable[str] | None = None) -> dict[str, str]:
    """relpath -> MD5 of the files under ``data_dir`` (all of them, or ``paths``), re-hashed now."""
    chosen = workspace_files(data_dir) if paths is None else paths
    return {rel: file_md5(data_dir / rel) for rel in chosen}


def _allowed(rel: str, allow: Collection[str]) -> bool:
    return rel in allow or any(a.endswith("/") and rel.startswith(a) for a in allow)


def compare(data_dir: Path, recorded: dict[str, str], allow: Collection[str] = ()) -> Drift:
    """The files of ``data_dir`` that differ from ``recorded``, ignoring paths in ``allow``.

    ``allow`` holds relative paths, and folder prefixes ending in ``/`` (``2026-01-01/``).
    """
    on_disk = [rel for rel in workspace_files(data_dir) if not _allowed(rel, allow)]
    actual = workspace_listing(data_dir, on_disk)
    expected = {rel: md5 for rel, md5 in recorded.items() if not _allowed(rel, allow)}
    return Drift(
        deleted=tuple(sorted(set(expected) - set(actual))),
        modified=tuple(sorted(rel for rel in set(expected) & set(actual) if expected[rel] != actual[rel])),
        added=tuple(sorted(set(actual) - set(expected))),
        actual=actual,
    )


def ensure_matches_record(
    data_dir: Path,
    repo_root: Path,
    *,
    allow: Collection[str] = (),
    remote: str | None = None,
    action: str = "this command",
) -> Recorded:
    """Refuse (:class:`DataDrift`) unless ``data/`` matches ``data.dvc`` outside the paths in ``allow``.

    So the ``dvc add data`` that follows records only what the command itself changes. When the recorded
    listing is in neither the cache nor on the remote (a fresh clone rebuilding its data), ``data/`` must
    hold nothing outside ``allow``, or exactly the recorded version.

    Returns:
        What ``data.dvc`` records.
    """
    recorded = recorded_data(data_dir, repo_root, remote=remote)
    if recorded.files is not None:
        drift = compare(data_dir, recorded.files, allow)
        if drift:
            raise DataDrift(
                f"data/ does not match {recorded.dvc_file.name} outside what {action} may change, so "
                f"nothing was changed: {drift.describe(data_dir.name)}. If an earlier publish, forget "
                f"or unpublish was interrupted, re-run it to record its batches; otherwise {RESTORE}"
            )
        return recorded
    if recorded.remote_error is not None:
        raise DataDrift(
            f"cannot check data/ against {recorded.dvc_file.name}: the listing of its version "
            f"({recorded.md5}) is not in the DVC cache and remote {remote or '(default)'} could not be asked "
            f"({recorded.remote_error}); nothing was changed: run `dvc pull data.dvc` once the remote works"
        )
    outside = [rel for rel in workspace_files(data_dir) if not _allowed(rel, allow)]
    if not outside:
        log.warning(
            "%s records %s, whose listing is neither in the DVC cache nor on the remote: data/ is rebuilt "
            "from the batches published now",
            recorded.dvc_file.name,
            recorded.md5,
        )
        return recorded
    if tree_md5(workspace_listing(data_dir)) == recorded.md5:
        return recorded
    raise DataDrift(
        f"cannot check data/ against {recorded.dvc_file.name}: the listing of its version ({recorded.md5}) "
        f"is neither in the DVC cache nor on remote {remote or '(default)'}, and data/ holds "
        f"{len(outside)} other file(s) that differ from it; fetch it with `dvc pull data.dvc`, or "
        "move data/ away and publish every batch again"
    )
