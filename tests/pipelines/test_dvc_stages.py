"""The orchestration rule for DVC stages: a task runs ``dvc repro --single-item STAGE`` so dvc.lock records
what produced the outputs; the context reaches the stage command through the environment."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from core.errors import RecopsError
from core.settings import Settings
from pipelines.dvc_ops import run_dvc
from pipelines.dvc_stages import locked_outputs, repro_stage
from pipelines.params import Params
from pipelines.steps import PIPELINE_RUN_ENV, StepContext
from tests.pipelines.dvc_repo import make_dvc_repo

# The stage writes its output from its input and records the run id it was given (outside its outputs).
STAGE_SCRIPT = f"""\
import os, pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/copy.txt").write_text(pathlib.Path("in.txt").read_text().upper())
pathlib.Path("seen_run_id.txt").write_text(os.environ.get("{PIPELINE_RUN_ENV}", "<unset>"))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    repo = make_dvc_repo(tmp_path)
    (repo / "in.txt").write_text("hello\n")
    (repo / "stage.py").write_text(STAGE_SCRIPT)
    pipeline = {
        "stages": {
            "upper": {"cmd": f"{sys.executable} stage.py", "deps": ["in.txt", "stage.py"], "outs": ["out"]},
            "count": {"cmd": f"{sys.executable} -c \"open('n.txt','w').write('1')\"", "deps": ["out"],
                      "outs": ["n.txt"]},
        }
    }  # fmt: skip
    (repo / "dvc.yaml").write_text(yaml.safe_dump(pipeline))
    (repo / ".gitignore").write_text("seen_run_id.txt\n")
    return repo


def context(project: Path, run_id: str) -> StepContext:
    settings = Settings(project_dir=project, runtime_dir=project / "runtime")
    return StepContext(settings, Params(), pipeline_run_id=run_id)


def status(project: Path) -> dict[str, object]:
    out = run_dvc(["status", "--json"], project)
    loaded: dict[str, object] = json.loads(out.stdout or "{}")
    return loaded


def test_repro_stage_runs_one_stage_and_dvc_lock_records_it(project: Path) -> None:
    result = repro_stage(context(project, "scheduled__2026-03-02"), "upper")
    assert result.info["ran"] is True
    assert (project / "out" / "copy.txt").read_text() == "HELLO\n"
    assert result.outputs == locked_outputs(project, "upper")
    assert result.outputs["out"].endswith(".dir")
    # the context reached the stage command through the environment
    assert (project / "seen_run_id.txt").read_text() == "scheduled__2026-03-02"
    # one task, one stage: the downstream stage did not run, and `upper` itself is up to date
    assert not (project / "n.txt").exists()
    assert "upper" not in status(project)
    assert "count" in status(project)


def test_an_up_to_date_stage_does_not_run_again(project: Path) -> None:
    first = repro_stage(context(project, "run-1"), "upper")
    again = repro_stage(context(project, "run-2"), "upper")
    assert again.info["ran"] is False and again.outputs == first.outputs
    assert (project / "seen_run_id.txt").read_text() == "run-1"
    forced = repro_stage(context(project, "run-3"), "upper", force=True)
    assert forced.info["ran"] is True and forced.outputs == first.outputs  # same inputs, same output
    assert (project / "seen_run_id.txt").read_text() == "run-3"


def test_writing_outputs_behind_dvcs_back_is_what_the_rule_prevents(project: Path) -> None:
    repro_stage(context(project, "run-1"), "upper")
    (project / "out" / "copy.txt").write_text("written by a task that called the step directly\n")
    assert "upper" in status(project)  # DVC no longer vouches for the workspace
    repro_stage(context(project, "run-2"), "upper")  # DVC restores the recorded output (its run cache)
    assert (project / "out" / "copy.txt").read_text() == "HELLO\n" and "upper" not in status(project)


def test_an_unknown_stage_is_refused_with_the_known_ones(project: Path) -> None:
    with pytest.raises(RecopsError, match=r"'train@nope' is not a stage of dvc.yaml; stages: count, upper"):
        repro_stage(context(project, "x"), "train@nope")
    assert locked_outputs(project, "upper") == {}
