"""params.yaml: the repository file loads, bad files are refused naming the key, the digest is stable."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from core.errors import RecopsError
from pipelines.params import ParamsError, load_params

REPO_PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def write(tmp_path: Path, data: Any, name: str = "params.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def repo_raw() -> dict[str, Any]:
    raw = yaml.safe_load(REPO_PARAMS.read_text())
    assert isinstance(raw, dict)
    return raw


def assert_contains(loaded: Any, written: Any, where: str) -> None:
    """Every key written in the YAML is in the loaded params with an equal value (5 == 5.0)."""
    if isinstance(written, dict):
        assert isinstance(loaded, dict), where
        for key, value in written.items():
            assert key in loaded, f"{where}{key} was not loaded"
            assert_contains(loaded[key], value, f"{where}{key}.")
    else:
        assert loaded == written, where


def test_repository_params_file_loads_with_its_values() -> None:
    raw = repo_raw()
    params = load_params(REPO_PARAMS)
    dumped = params.model_dump(mode="json", by_alias=True)
    assert_contains(dumped, raw, "")
    assert list(params.train.families) == raw["train"]["families"]
    assert params.validation is params.validate_
    assert params.validation.max_duplicate_rate == raw["validate"]["max_duplicate_rate"]


def test_family_params_returns_the_section_as_a_dict() -> None:
    raw = repo_raw()
    params = load_params(REPO_PARAMS)
    assert params.train.family_params("als") == raw["train"]["als"]
    assert params.train.family_params("popularity") == {}
    with pytest.raises(KeyError, match="no_such_family"):
        params.train.family_params("no_such_family")  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["", "\n# all commented out\n", "{}\n"])
def test_an_empty_file_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ParamsError, match="is empty: it must hold the pipeline parameters"):
        load_params(write(tmp_path, text))


@pytest.mark.parametrize("windows", [[-1], [7, 0], [1, -30]])
def test_recent_windows_must_be_positive(tmp_path: Path, windows: list[int]) -> None:
    with pytest.raises(ParamsError, match=r"features\.recent_windows_days\.\d: Input should be greater"):
        load_params(write(tmp_path, yaml.safe_dump({"features": {"recent_windows_days": windows}})))
    fine = load_params(write(tmp_path, "features: {recent_windows_days: [1, 7]}"))
    assert fine.features.recent_windows_days == [1, 7]


def test_params_are_frozen() -> None:
    params = load_params(REPO_PARAMS)
    with pytest.raises(ValidationError):
        params.train.als.factors = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"train": {"als": {"factorz": 3}}}, "train.als.factorz"),
        ({"bogus_section": 1}, "bogus_section"),
        ({"validate": {"max_dupe_rate": 0.1}}, "validate.max_dupe_rate"),
    ],
)
def test_unknown_key_is_an_error_naming_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, data))
    assert key in str(info.value)
    assert isinstance(info.value, RecopsError)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"validate": {"max_duplicate_rate": 2}}, "validate.max_duplicate_rate"),
        ({"train": {"als": {"factors": "many"}}}, "train.als.factors"),
        ({"train": {"families": ["als", "deep-magic"]}}, "train.families.1"),
        ({"features": {"event_weights": {"view": 1.0}}}, "features.event_weights"),
    ],
)
def test_invalid_value_is_an_error_naming_the_key(tmp_path: Path, data: dict[str, Any], key: str) -> None:
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, data))
    assert re.search(rf"^\s*{re.escape(key)}:", str(info.value), flags=re.MULTILINE), str(info.value)


def test_bad_yaml_is_a_params_error(tmp_path: Path) -> None:
    path = write(tmp_path, "train:\n  als: [1,\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="mapping"):
        load_params(write(tmp_path, "- seed\n- 42\n"))


def test_missing_file_is_a_params_error(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "absent.yaml")


def test_non_utf8_file_is_a_params_error(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(b"seed: \xff\xfe\n")
    with pytest.raises(ParamsError, match="UTF-8"):
        load_params(path)


def test_digest_is_stable_and_ignores_key_order(tmp_path: Path) -> None:
    raw = repo_raw()
    first = load_params(REPO_PARAMS).digest()
    assert first == load_params(REPO_PARAMS).digest()
    assert re.fullmatch(r"[0-9a-f]{16}", first)
    reordered = dict(reversed(list(raw.items())))
    assert load_params(write(tmp_path, reordered)).digest() == first


def test_digest_changes_when_a_value_changes(tmp_path: Path) -> None:
    raw = repo_raw()
    base = load_params(write(tmp_path, raw, "a.yaml")).digest()
    raw["train"]["als"]["factors"] = int(raw["train"]["als"]["factors"]) + 1
    changed = load_params(write(tmp_path, raw, "b.yaml")).digest()
    assert changed != base
    raw["train"]["als"]["factors"] -= 1
    assert load_params(write(tmp_path, raw, "c.yaml")).digest() == base
