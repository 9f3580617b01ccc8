"""core.privacy deny-list: pseudonyms only, deterministic bytes, and what every writer of events applies."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.errors import RecopsError
from core.privacy import (
    FORGOTTEN_FILE,
    DenyListError,
    drop_forgotten,
    forgotten_text,
    pseudonymize_id,
    read_forgotten,
)

A, B = pseudonymize_id("alice", "k"), pseudonymize_id("bob", "k")


def test_the_list_is_sorted_pseudonyms_and_round_trips(tmp_path: Path) -> None:
    assert read_forgotten(tmp_path) == frozenset()  # nobody forgotten yet
    text = forgotten_text({B, A})
    assert text == "".join(f"{p}\n" for p in sorted((A, B)))
    (tmp_path / FORGOTTEN_FILE).write_text(text)
    assert read_forgotten(tmp_path) == {A, B}
    with pytest.raises(DenyListError, match="only pseudonyms"):
        forgotten_text({A, "alice"})  # a raw id never goes on the list


def test_a_damaged_list_is_refused_not_ignored(tmp_path: Path) -> None:
    (tmp_path / FORGOTTEN_FILE).write_text(f"{A}\nalice\n")
    with pytest.raises(DenyListError, match=r"line\(s\) 2 are not pseudonyms") as info:
        read_forgotten(tmp_path)
    assert isinstance(info.value, RecopsError)


def test_drop_forgotten_keeps_everyone_else() -> None:
    events = pd.DataFrame({"user_id": pd.array([A, B, None, A], dtype="string"), "n": [1, 2, 3, 4]})
    kept, dropped = drop_forgotten(events, frozenset({A}))
    assert dropped == 2
    assert kept["n"].tolist() == [2, 3]
    same, none = drop_forgotten(events, frozenset())
    assert none == 0 and same is events
