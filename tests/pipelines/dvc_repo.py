"""A throw-away git + DVC repository for tests (never the project's own repo, data/ or .dvc/config).

Its shape copies the project's: ``core.autostage``, a default remote ``local`` with ``verify = true``.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from pipelines.dvc_ops import run_dvc


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def make_dvc_repo(root: Path, remote_dir: Path | None = None) -> Path:
    """``root/repo`` with git and DVC initialised and a local default remote at ``root/remote``."""
    repo = root / "repo"
    repo.mkdir(parents=True)
    git(repo, "init", "-q")
    run_dvc(["init", "-q"], repo)
    remote = remote_dir or root / "remote"
    # Written directly (one DVC call less per setting); same shape as the project's .dvc/config.
    (repo / ".dvc" / "config").write_text(
        "[core]\n    autostage = true\n    remote = local\n    analytics = false\n"
        f"['remote \"local\"']\n    url = {remote}\n    verify = true\n"
    )
    return repo


def tree_digest(folder: Path) -> str:
    """SHA-256 over every file's relative path and bytes under ``folder`` ("" if it does not exist)."""
    if not folder.exists():
        return ""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def dvc_file_md5(dvc_file: Path) -> str:
    """The ``md5`` of the single output recorded in a ``.dvc`` file."""
    import yaml

    outs = yaml.safe_load(dvc_file.read_text())["outs"]
    assert len(outs) == 1
    return str(outs[0]["md5"])
