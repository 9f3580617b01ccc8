"""core.fsio under SIGKILL: a folder swap killed at each step is rolled back or forward by recover_staging.

A real ``python`` process runs :func:`core.fsio.staged_dir` (``if_exists="replace"``) and is killed inside
the exact ``os.rename`` / ``os.replace`` that matters (``tests/pipelines/crash.py``); this process then
recovers the staging folder and checks what is on disk.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

import pytest

from core.fsio import SWAP_JOURNAL_SUFFIX, SwapRecoveryError, recover_staging
from tests.pipelines.crash import KILLED, kill_env, run

PROJECT = Path(__file__).resolve().parents[2]
SWAP = """
import sys
from pathlib import Path
from core.fsio import staged_dir
target, staging = Path(sys.argv[1]), Path(sys.argv[2])
with staged_dir(target, if_exists="replace", staging=staging) as work:
    (work / "f").write_text("new")
"""


def _swap_killed(tmp_path: Path, match: str, when: Literal["before", "after"]) -> tuple[Path, Path]:
    target, staging = tmp_path / "data" / "batch", tmp_path / "staging"
    target.mkdir(parents=True)
    (target / "f").write_text("old")
    staging.mkdir()
    env = kill_env({"PATH": "/usr/bin:/bin"}, tmp_path / "killer", match=match, when=when, program="-c")
    done = run([sys.executable, "-c", SWAP, str(target), str(staging)], env, PROJECT)
    assert done.returncode == KILLED, f"not killed at {match!r} ({when}): {done.returncode} {done.stderr}"
    return target, staging


def test_killed_between_the_two_renames_is_rolled_back(tmp_path: Path) -> None:
    target, staging = _swap_killed(tmp_path, r"\.tmp-\w+ -> .*/batch$", "before")
    assert not target.exists()  # the state the issue found: the batch gone, both copies in staging
    assert len(list(staging.glob(f"*{SWAP_JOURNAL_SUFFIX}"))) == 1
    actions = recover_staging(staging)
    assert any("rolled back" in a for a in actions), actions
    assert (target / "f").read_text() == "old"
    assert list(staging.iterdir()) == []  # journal, old and new copies all gone
    assert recover_staging(staging) == []  # nothing left to do


def test_killed_after_the_new_folder_is_in_place_is_rolled_forward(tmp_path: Path) -> None:
    target, staging = _swap_killed(tmp_path, r"\.tmp-\w+ -> .*/batch$", "after")
    assert (target / "f").read_text() == "new"
    assert len(list(staging.iterdir())) == 2  # the journal and the old copy
    actions = recover_staging(staging)
    assert any("rolled forward" in a for a in actions), actions
    assert (target / "f").read_text() == "new"
    assert list(staging.iterdir()) == []


def test_killed_before_the_old_folder_moved_aside_keeps_it(tmp_path: Path) -> None:
    target, staging = _swap_killed(tmp_path, r"/batch -> .*\.old-", "before")
    actions = recover_staging(staging)
    assert any("had not started" in a for a in actions), actions
    assert (target / "f").read_text() == "old"
    assert list(staging.iterdir()) == []


def test_killed_while_writing_the_journal_leaves_only_leftovers(tmp_path: Path) -> None:
    target, staging = _swap_killed(tmp_path, r"swap\.json\.tmp-\w+ -> ", "before")
    assert not list(staging.glob(f"*{SWAP_JOURNAL_SUFFIX}"))
    leftovers = sorted(p.name for p in staging.iterdir())
    assert len(leftovers) == 2 and all(n.startswith(".") for n in leftovers), leftovers
    actions = recover_staging(staging)
    assert len(actions) == 2 and all("leftover temporary copy" in a for a in actions), actions
    assert (target / "f").read_text() == "old"
    assert list(staging.iterdir()) == []


def test_recovery_refuses_a_state_no_swap_leaves(tmp_path: Path) -> None:
    staging, target = tmp_path / "staging", tmp_path / "batch"
    staging.mkdir()
    journal = staging / f"batch.old-abc{SWAP_JOURNAL_SUFFIX}"
    journal.write_text(
        json.dumps({"target": str(target), "new": str(staging / ".n"), "aside": str(staging / ".o")})
    )
    with pytest.raises(SwapRecoveryError, match="cannot be repaired automatically"):
        recover_staging(staging)
    assert journal.is_file()  # kept for a person to inspect
    (staging / "data.lock").write_text("")
    (staging / "other.json").write_text("{}")
    journal.unlink()
    assert recover_staging(staging) == []  # files that are not temporary copies are never touched
    assert sorted(p.name for p in staging.iterdir()) == ["data.lock", "other.json"]
