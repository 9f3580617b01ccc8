"""Lineage facts recorded on every MLflow run and model version: code, data and parameter versions."""

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
    }
    if pipeline_run_id:
        tags["pipeline_run_id"] = pipeline_run_id
    return tags
