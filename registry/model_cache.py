"""The loader's on-disk cache of verified model packages (``<runtime>/model-cache/<model>/``).

``<version>/package/`` holds the files exactly as downloaded and verified, ``<version>/checksum.json`` their
sha256 and package digest, and ``aliases/<alias>.json`` the last version each alias resolved to and loaded.
Only :mod:`registry.loader` writes here; deleting the folder is always safe (it is downloaded again).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from core.settings import Settings
from models.base import ModelLoadError
from models.package import digest_of, file_checksums
from registry.fetch import PACKAGE_DIR
from registry.integrity import ExpectedChecksums, mismatches

CACHE_DIR = "model-cache"
ALIASES_DIR = "aliases"
CHECKSUM_FILE = "checksum.json"
#: Version of ``checksum.json``; copies written by older code fail the check and are downloaded again.
CACHE_FORMAT = 2


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def cache_root(settings: Settings, name: str) -> Path:
    """``<runtime>/model-cache/<model name>``."""
    return settings.runtime_dir / CACHE_DIR / _safe(name)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None when it is missing or unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``path`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_manifest(target: Path) -> dict[str, Any] | None:
    """The ``checksum.json`` of a cached version folder."""
    return read_json(target / CHECKSUM_FILE)


def install(staging: Path, target: Path) -> None:
    """Move a verified staging folder to ``target`` (replacing a stale copy; a concurrent winner is kept)."""
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        if not (target / CHECKSUM_FILE).is_file():
            raise
        shutil.rmtree(staging, ignore_errors=True)  # another process installed the same version first


def local_problems(target: Path, manifest: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Re-hash a cached copy: its files and what differs from its own ``checksum.json`` (empty: intact)."""
    if manifest.get("format") != CACHE_FORMAT:
        return {}, ["it was written by an older recops"]
    try:
        files = file_checksums(target / PACKAGE_DIR)
    except ModelLoadError:
        return {}, ["its package folder is missing"]
    recorded = manifest.get("files")
    if not isinstance(recorded, dict):
        return files, ["its checksum.json lists no files"]
    problems = mismatches(files, ExpectedChecksums(files=recorded, digest=None, source="checksum.json"))
    if not problems and digest_of(files) != manifest.get("checksum"):
        problems.append("its checksum.json digest does not match its files")
    verified = str(manifest.get("verified_against") or "")
    if not problems and verified and verified != manifest.get("checksum"):
        problems.append("it does not match the checksums it was verified with")
    return files, problems


def pointer_path(settings: Settings, name: str, alias: str) -> Path:
    """``aliases/<alias>.json``: the last version ``alias`` resolved to and loaded."""
    return cache_root(settings, name) / ALIASES_DIR / f"{_safe(alias)}.json"
