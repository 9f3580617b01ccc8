"""Lineage: the code hash sees uncommitted changes, so a dirty tree gives a new lineage key."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pipelines.lineage import code_files, code_hash, lineage_tags
from registry.register import lineage_key

GIT = ("git", "-c", "user.name=t", "-c", "user.email=t@example.invalid")


def _git(repo: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A committed project: model code, kernel code, DVC stages, params, a README and an ignored file."""
    root = tmp_path / "project"
    for rel, text in {
        "models/als.py": "FACTORS = 32\n",
        "core/schema.py": "COLUMNS = ('a',)\n",
        "pipelines/train.py": "def run(): ...\n",
        "dvc.yaml": "stages: {}\n",
        "params.yaml": "seed: 1\n",
        "README.md": "# project\n",
        ".gitignore": "scratch/\n",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "initial")
    return root


def _key(tags: dict[str, str]) -> str:
    return lineage_key(tags["git_commit"], tags["data_md5"], tags["params_hash"], tags["code_hash"])


def test_an_uncommitted_change_to_model_code_gives_a_new_lineage_key(repo: Path) -> None:
    clean = lineage_tags(repo, "p1")
    assert not clean["git_commit"].endswith("-dirty")
    assert code_files(repo) == [
        "core/schema.py",
        "dvc.yaml",
        "models/als.py",
        "params.yaml",
        "pipelines/train.py",
    ]

    (repo / "models" / "als.py").write_text("FACTORS = 64\n")  # modified, not committed
    first_edit = lineage_tags(repo, "p1")
    (repo / "models" / "als.py").write_text("FACTORS = 128\n")  # another uncommitted edit, same HEAD
    second_edit = lineage_tags(repo, "p1")
    # the commit alone cannot tell the two dirty trees apart (what made register reuse the old version)...
    assert first_edit["git_commit"] == second_edit["git_commit"] == clean["git_commit"] + "-dirty"
    assert lineage_key(first_edit["git_commit"], "d", "p1") == lineage_key(
        second_edit["git_commit"], "d", "p1"
    )
    # ...the code hash can: three different keys
    assert len({_key(clean), _key(first_edit), _key(second_edit)}) == 3
    (repo / "models" / "als.py").write_text("FACTORS = 32\n")  # back to the committed content
    assert lineage_tags(repo, "p1")["code_hash"] == clean["code_hash"]


def test_the_code_hash_covers_new_and_deleted_modules_but_not_docs_or_ignored_files(repo: Path) -> None:
    base = code_hash(repo)
    (repo / "README.md").write_text("# changed docs\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "notes.py").write_text("x = 1\n")
    assert code_hash(repo) == base
    (repo / "models" / "sasrec.py").write_text("class SASRec: ...\n")  # new, untracked: counts
    with_new = code_hash(repo)
    assert with_new != base and "models/sasrec.py" in code_files(repo)
    (repo / "models" / "sasrec.py").unlink()
    (repo / "core" / "schema.py").unlink()  # a tracked file deleted from the working tree
    assert code_hash(repo) not in (base, with_new)


def test_outside_git_the_code_folders_are_walked(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    (tmp_path / "registry" / "a.py").write_text("A = 1\n")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    assert code_files(tmp_path) == ["dvc.yaml", "registry/a.py"]
    before = code_hash(tmp_path)
    (tmp_path / "registry" / "a.py").write_text("A = 2\n")
    assert code_hash(tmp_path) != before
