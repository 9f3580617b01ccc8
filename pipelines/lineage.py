"""Lineage facts recorded on every MLflow run and model version: code, data and parameter versions.

The git commit alone does not identify the code that trained a model: a working tree with uncommitted
changes has the same ``HEAD``. :func:`code_hash` hashes the *contents* of the files the stages depend on
(every ``.py`` file of ``core/``, ``models/``, ``pipelines/`` and ``registry/``, tracked or not-ignored, plus
``dvc.yaml`` and ``params.yaml``) as they are in the working tree, so a modified file gives a new hash and
therefore a new lineage key at registration.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml


def git_commit(repo_root: Path) -> str:
    """``HEAD`` commit, with ``-dirty`` when tracked files differ from it; ``unknown`` outside git."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=repo_root,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


#: Folders whose Python files the stages run; files at the root that shape what they do.
CODE_DIRS = ("core", "models", "pipelines", "registry")
CODE_FILES = ("dvc.yaml", "params.yaml")


def code_files(repo_root: Path) -> list[str]:
    """Project-relative paths hashed by :func:`code_hash`, sorted.

    In a git work tree: the tracked and the untracked-but-not-ignored files (``git ls-files --cached
    --others --exclude-standard``), so a new module counts as soon as it exists; outside git: a walk.
    """
    try:
        listed = subprocess.run(
            [
                "git",
                "ls-files",
                "--cached",
                "--others",
                "--exclude-standard",
                "-z",
                "--",
                *CODE_DIRS,
                *CODE_FILES,
            ],
            cwd=repo_root,
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout.decode("utf-8", "surrogateescape")
        names = {name for name in listed.split("\0") if name}
    except (OSError, subprocess.SubprocessError):
        names = {
            path.relative_to(repo_root).as_posix()
            for folder in CODE_DIRS
            for path in (repo_root / folder).rglob("*.py")
            if "__pycache__" not in path.parts
        }
        names |= {name for name in CODE_FILES if (repo_root / name).is_file()}
    return sorted(name for name in names if name.endswith(".py") or name in CODE_FILES)


def code_hash(repo_root: Path) -> str:
    """sha256 (first 16 hex) over the working-tree contents of :func:`code_files`; a listed file deleted
    from the working tree counts as deleted."""
    digest = hashlib.sha256()
    for name in code_files(repo_root):
        path = repo_root / name
        content = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "<deleted>"
        digest.update(f"{name}\0{content}\n".encode())
    return digest.hexdigest()[:16]


def data_md5(repo_root: Path) -> str:
    """The md5 DVC recorded for ``data/`` in ``data.dvc`` (``none`` when data is not tracked yet)."""
    path = repo_root / "data.dvc"
    if not path.is_file():
        return "none"
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    outs = doc.get("outs") or [{}]
    return str(outs[0].get("md5", "none"))


def file_sha256(path: Path) -> str:
    """Short content hash of a file such as ``dvc.lock`` (``none`` when absent)."""
    if not path.is_file():
        return "none"
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def lineage_tags(repo_root: Path, params_hash: str, pipeline_run_id: str = "") -> dict[str, str]:
    """The tag set shared by runs and model versions."""
    tags = {
        "git_commit": git_commit(repo_root),
        "data_md5": data_md5(repo_root),
        "dvc_lock_hash": file_sha256(repo_root / "dvc.lock"),
        "params_hash": params_hash,
        "code_hash": code_hash(repo_root),
    }
    if pipeline_run_id:
        tags["pipeline_run_id"] = pipeline_run_id
    return tags
