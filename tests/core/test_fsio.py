"""core.fsio: atomic file and folder writes leave the old or the new content, and the lock excludes."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from core.errors import RecopsError
from core.fsio import (
    LockTimeout,
    TargetExists,
    atomic_file,
    atomic_write_bytes,
    atomic_write_text,
    exclusive_lock,
    replace_dir,
    staged_dir,
)


def test_atomic_write_creates_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_file(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_file_can_stage_elsewhere(tmp_path: Path) -> None:
    watched, scratch = tmp_path / "watched", tmp_path / "scratch"
    watched.mkdir()
    scratch.mkdir()
    seen: list[Path] = []
    with atomic_file(watched / "f.bin", tmp_dir=scratch) as tmp:
        seen.append(tmp)
        tmp.write_bytes(b"x")
    assert seen[0].parent == scratch
    assert (watched / "f.bin").read_bytes() == b"x" and not any(scratch.iterdir())


def test_staged_dir_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "batch"
    with staged_dir(target) as work:
        (work / "a").write_text("1")
        assert not target.exists()  # nothing visible before the rename
    assert (target / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["batch"]


def test_staged_dir_refuses_or_replaces_an_existing_folder(tmp_path: Path) -> None:
    target = tmp_path / "batch"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(TargetExists, match="already exists"), staged_dir(target):
        pass
    assert isinstance(TargetExists("x"), RecopsError)
    with staged_dir(target, if_exists="replace") as work:
        (work / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["batch"]


def test_staged_dir_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "batch"
    with pytest.raises(ValueError, match="bad"), staged_dir(target) as work:
        (work / "a").write_text("1")
        raise ValueError("bad")
    assert not any(tmp_path.iterdir())


def test_replace_dir_restores_the_old_folder_when_the_swap_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, new, aside = tmp_path / "t", tmp_path / "n", tmp_path / "aside"
    for folder, content in ((target, "old"), (new, "new")):
        folder.mkdir()
        (folder / "f").write_text(content)
    aside.mkdir()
    real = os.rename
    calls: list[str] = []

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(str(dst))
        if len(calls) == 2:
            raise OSError("disk on fire")
        real(src, dst)

    monkeypatch.setattr("core.fsio.os.rename", flaky)
    with pytest.raises(OSError, match="disk on fire"):
        replace_dir(new, target, aside_dir=aside)
    assert (target / "f").read_text() == "old"
    assert Path(calls[0]).parent == aside  # the old copy went aside outside the watched folder
    assert not any(aside.iterdir())


def _hold(
    lock_file: str, ready: multiprocessing.synchronize.Event, done: multiprocessing.synchronize.Event
) -> None:
    with exclusive_lock(Path(lock_file), timeout_s=5):
        ready.set()
        done.wait(10)


def test_exclusive_lock_excludes_other_processes_and_is_released(tmp_path: Path) -> None:
    lock_file = tmp_path / "locks" / "data.lock"
    ctx = multiprocessing.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(str(lock_file), ready, done))
    holder.start()
    try:
        assert ready.wait(30)
        with (
            pytest.raises(LockTimeout, match="another publish holds"),
            exclusive_lock(lock_file, timeout_s=0.2, busy="another publish"),
        ):
            pass
    finally:
        done.set()
        holder.join(30)
    with exclusive_lock(lock_file, timeout_s=5) as held:  # free again once the holder is gone
        assert held == lock_file
    assert lock_file.is_file()  # kept, never deleted under another waiter


def test_exclusive_lock_excludes_within_one_process(tmp_path: Path) -> None:
    lock_file = tmp_path / "data.lock"
    with (
        exclusive_lock(lock_file, timeout_s=1),
        pytest.raises(LockTimeout),
        exclusive_lock(lock_file, timeout_s=0.1),
    ):
        pass
