"""The installed ``recops`` console script, run as a person or a DVC stage would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pipelines.params import load_params

REPO = Path(__file__).resolve().parents[3]
RECOPS = Path(sys.executable).parent / "recops"


def run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``recops ARGS`` in ``tmp_path`` with no inherited RECOPS_* settings and state kept in tmp."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    clean.update(COLUMNS="200", NO_COLOR="1", RECOPS_RUNTIME_DIR=str(tmp_path / "runtime"), **env)
    return subprocess.run(
        [str(RECOPS), *args],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_console_script_is_installed() -> None:
    assert RECOPS.is_file(), f"{RECOPS} missing: run `make setup`"


def test_help_lists_the_registered_commands(tmp_path: Path) -> None:
    from pipelines.cli import app

    result = run(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    names = [c.name for c in app.registered_commands] + [g.name for g in app.registered_groups]
    assert "info" in names
    assert "data" in names
    listed = {line.strip("│ ").split(" ", 1)[0] for line in result.stdout.splitlines()}
    for name in names:
        assert name in listed, f"{name} missing from --help:\n{result.stdout}"


def test_version_matches_pyproject(tmp_path: Path) -> None:
    expected = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = run(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"recops {expected}"


def test_info_json_redacts_secrets(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        "info",
        "--json",
        RECOPS_PSEUDONYMIZATION_KEY="supersecret",
        RECOPS_REDIS_URL="redis://u:pw@h:1/0",
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["pseudonymization_key"] == "**********"
    assert info["redis_url"] == "redis://u:***@h:1/0"
    assert info["runtime_dir"] == str(tmp_path / "runtime")
    assert info["params_hash"] == load_params(REPO / "params.yaml").digest()
    assert info["model_families"] == list(load_params(REPO / "params.yaml").train.families)
    output = result.stdout + result.stderr
    assert "supersecret" not in output
    assert ":pw@" not in output


def test_info_table_redacts_secrets(tmp_path: Path) -> None:
    result = run(tmp_path, "info", RECOPS_PSEUDONYMIZATION_KEY="supersecret")
    assert result.returncode == 0, result.stderr
    assert "pseudonymization_key" in result.stdout
    assert "supersecret" not in result.stdout + result.stderr


def test_info_with_broken_params_prints_error_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("train:\n  als:\n    factorz: 3\n")
    result = run(tmp_path, "info", RECOPS_PARAMS_FILE=str(bad))
    assert result.returncode == 2
    assert result.stderr.startswith("error:"), result.stderr
    assert "train.als.factorz" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RECOPS_ENV": "production"}, "RECOPS_PSEUDONYMIZATION_KEY"),
        ({"RECOPS_LOG_LEVEL": "LOUD"}, "RECOPS_LOG_LEVEL"),
    ],
)
def test_invalid_settings_print_error_and_exit_2(tmp_path: Path, env: dict[str, str], named: str) -> None:
    result = run(tmp_path, "info", **env)
    assert result.returncode == 2
    assert result.stderr.startswith("error:"), result.stderr
    assert named in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, "no-such-command")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
