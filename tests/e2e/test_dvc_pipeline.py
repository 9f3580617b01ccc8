"""How the DVC pipeline behaves in a throw-away project copy, through the real ``dvc`` and ``recops`` CLIs.

The stage graph, what each kind of change invalidates (one model's code, shared code, one section of
params.yaml, new data), that outputs go to the remote and come back with ``dvc checkout``, and that a
parameter set back is restored from DVC's run cache without leaving MLflow pointing at another model.

The tests are ordered steps sharing one project (see ``conftest.py``); a failed step skips the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import E2EProject

pytestmark = pytest.mark.e2e

DAYS = 14
PROJECT_PARAMS = {
    "generate.days": DAYS,
    "generate.users": 500,
    "generate.items": 250,
    "features.valid_days": 3,
    "features.test_days": 4,
}
LANDING = "runtime/landing/d"
TOUCH = "\n# e2e: touched to change the file's hash\n"
#: Every family the repository's params.yaml trains (models/base.py is a dependency of each train stage).
REPO_PARAMS = yaml.safe_load((Path(__file__).parents[2] / "params.yaml").read_text(encoding="utf-8"))
FAMILIES_IN_PARAMS = list(REPO_PARAMS["train"]["families"])


@pytest.fixture(scope="module")
def first(project: E2EProject) -> dict[str, Any]:
    """What the first full ``dvc repro`` produced (filled in by the step that runs it)."""
    return {}


def families(project: E2EProject) -> list[str]:
    return list(project.params()["train"]["families"])


def ran_stages(stdout: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", stdout))


def tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def data_md5(project: E2EProject) -> str:
    doc = yaml.safe_load((project.root / "data.dvc").read_text(encoding="utf-8"))
    return str(doc["outs"][0]["md5"])


def test_01_publish(project: E2EProject) -> None:
    project.run("recops", "data", "generate", "--out", LANDING)
    batches = sorted(str(p.relative_to(project.root)) for p in (project.root / LANDING).iterdir())
    assert len(batches) == DAYS
    project.run("recops", "publish", *batches)
    doc = yaml.safe_load((project.root / "data.dvc").read_text(encoding="utf-8"))
    assert doc["outs"][0]["nfiles"] == 2 * DAYS, doc


def test_02_stage_graph(project: E2EProject) -> None:
    trains = [f"train@{f}" for f in families(project)]
    listed = project.run("dvc", "stage", "list", "--name-only").stdout.split()
    assert listed == ["features", *trains, "evaluate"], listed
    dot = project.run("dvc", "dag", "--dot").stdout
    edges = set(re.findall(r'"([^"]+)" -> "([^"]+)"', dot))
    expected = {("data.dvc", "features"), ("features", "evaluate")}
    expected |= {("features", t) for t in trains} | {(t, "evaluate") for t in trains}
    assert edges == expected, dot


def test_03_first_repro_records_every_stage(project: E2EProject, first: dict[str, Any]) -> None:
    result = project.run("dvc", "repro")
    trains = {f"train@{f}" for f in families(project)}
    assert ran_stages(result.stdout) == {"features", "evaluate", *trains}, result.describe()

    lock = yaml.safe_load((project.root / "dvc.lock").read_text(encoding="utf-8"))["stages"]
    assert set(lock) == {"features", "evaluate", *trains}, lock.keys()
    params = project.params()
    assert lock["features"]["params"]["params.yaml"]["features"] == params["features"]
    for family in families(project):
        recorded = lock[f"train@{family}"]["params"]["params.yaml"]
        assert recorded["seed"] == params["seed"], family
        assert recorded[f"train.{family}"] == params["train"][family], family
        outs = lock[f"train@{family}"]["outs"]
        assert outs[0]["path"] == f"artifacts/models/{family}" and outs[0]["md5"].endswith(".dir"), outs
    assert project.dvc_json("status") == {}

    first["metrics"] = project.metrics()
    first["runs"] = {f: project.run_record(f) for f in families(project)}
    first["als_digest"] = tree_digest(project.root / "artifacts" / "models" / "als")


def test_03b_a_forced_rerun_reproduces_dvc_lock_and_metrics(
    project: E2EProject, first: dict[str, Any]
) -> None:
    """DVC outputs are a pure function of data, code and params: forcing every stage again on the same
    inputs leaves dvc.lock and the metrics byte-identical (lineage and run ids live in MLflow instead)."""
    tracked = ["dvc.lock", "artifacts/metrics/metrics.json", "artifacts/metrics/details.json"]
    before = {name: (project.root / name).read_bytes() for name in tracked}
    plots = sorted((project.root / "artifacts" / "plots").glob("*.json"))
    plots_before = {p.name: p.read_bytes() for p in plots}
    result = project.run("dvc", "repro", "--force")
    trains = {f"train@{f}" for f in families(project)}
    assert ran_stages(result.stdout) == {"features", "evaluate", *trains}, result.describe()
    for name in tracked:
        assert (project.root / name).read_bytes() == before[name], f"{name} changed on a forced rerun"
    for path in plots:
        assert path.read_bytes() == plots_before[path.name], f"{path.name} changed on a forced rerun"
    assert tree_digest(project.root / "artifacts" / "models" / "als") == first["als_digest"]
    rerun = {f: project.run_record(f) for f in families(project)}
    for family in families(project):  # a new MLflow run each time, naming the same package
        assert rerun[family]["run_id"] != first["runs"][family]["run_id"], family
        assert rerun[family]["package_digest"] == first["runs"][family]["package_digest"], family
    first["runs"] = rerun


@pytest.mark.parametrize(
    ("path", "stages"),
    [
        ("models/itemknn.py", {"train@itemknn"}),
        ("models/base.py", {f"train@{family}" for family in FAMILIES_IN_PARAMS}),
        ("pipelines/stages.py", {"features", "evaluate"}),
        ("pipelines/metrics.py", {"evaluate"}),
    ],
)
def test_04_a_code_change_invalidates_the_stages_that_use_it(
    project: E2EProject, path: str, stages: set[str]
) -> None:
    file = project.root / path
    original = file.read_bytes()
    try:
        file.write_bytes(original + TOUCH.encode())
        status = project.dvc_json("status")
        assert set(status) == stages, status
        for stage in stages:
            changed = status[stage][0]["changed deps"]
            assert any(dep == path or path.startswith(dep.rstrip("/") + "/") for dep in changed), status
    finally:
        file.write_bytes(original)
    assert project.dvc_json("status") == {}


@pytest.mark.parametrize(
    ("key", "value", "stages"),
    [
        ("evaluate.ks", [5, 10], {"evaluate"}),
        ("features.session_gap_minutes", 20, {"features"}),
        ("seed", 7, {*(f"train@{family}" for family in FAMILIES_IN_PARAMS), "evaluate"}),
        ("train.itemknn.neighbours", 50, {"train@itemknn"}),
    ],
)
def test_05_a_param_change_invalidates_the_stages_that_read_it(
    project: E2EProject, key: str, value: Any, stages: set[str]
) -> None:
    original = project.params_file.read_text(encoding="utf-8")
    try:
        project.set_params({key: value})
        status = project.dvc_json("status")
        assert set(status) == stages, status
    finally:
        project.params_file.write_text(original, encoding="utf-8")
    assert project.dvc_json("status") == {}


def test_06_outputs_are_pushed_and_checked_out_again(project: E2EProject, first: dict[str, Any]) -> None:
    project.run("dvc", "push")
    assert project.dvc_json("status", "-c", "-r", "local") == {}
    als = project.root / "artifacts" / "models" / "als"
    shutil.rmtree(als)
    status = project.dvc_json("status")
    assert status == {
        "train@als": [{"changed outs": {"artifacts/models/als": "deleted"}}],
        "evaluate": [{"changed deps": {"artifacts/models": "modified"}}],
    }, status
    project.run("dvc", "checkout", "train@als")
    assert tree_digest(als) == first["als_digest"]
    assert project.dvc_json("status") == {}


def test_07_a_param_set_back_comes_from_the_run_cache(project: E2EProject, first: dict[str, Any]) -> None:
    iterations = project.params()["train"]["als"]["iterations"]
    project.set_params({"train.als.iterations": 3})
    diff = project.dvc_json("params", "diff")
    assert diff["params.yaml"].keys() == {"train.als.iterations"}, diff
    assert diff["params.yaml"]["train.als.iterations"]["old"] == iterations, diff
    changed = project.run("dvc", "repro")
    assert ran_stages(changed.stdout) == {"train@als", "evaluate"}, changed.describe()
    assert project.run_record("als")["run_id"] != first["runs"]["als"]["run_id"]

    project.set_params({"train.als.iterations": iterations})
    assert project.dvc_json("params", "diff") == {}
    back = project.run("dvc", "repro")
    assert "Stage 'train@als' is cached - skipping run" in back.stdout, back.describe()
    assert ran_stages(back.stdout) == {"evaluate"}, back.describe()
    assert project.run_record("als") == first["runs"]["als"]
    assert tree_digest(project.root / "artifacts" / "models" / "als") == first["als_digest"]
    metrics = project.metrics()
    for family, values in first["metrics"].items():
        assert metrics[family]["ndcg_at_10"] == pytest.approx(values["ndcg_at_10"]), family


def test_08_mlflow_follows_the_models_in_the_workspace(project: E2EProject) -> None:
    """After a run-cache restore the registry must pick the runs whose models are in the workspace."""
    client = project.mlflow_client()
    metrics = project.metrics()
    for family in families(project):
        record = project.run_record(family)
        siblings = client.search_runs(
            [client.get_run(record["run_id"]).info.experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{record['parent_run_id']}' and tags.`family` = '{family}'"
            ),
        )
        current = [r.info.run_id for r in siblings if r.data.tags.get("recops.superseded") != "true"]
        assert current == [record["run_id"]], f"{family}: current runs {current}, workspace {record}"
        logged = client.get_run(record["run_id"]).data.metrics["ndcg_at_10"]
        assert logged == pytest.approx(metrics[family]["ndcg_at_10"]), family

    result = project.run("recops", "register")
    best = max(metrics, key=lambda f: metrics[f]["valid_ndcg_at_10"])  # selected on validation
    expected = project.run_record(best)["run_id"]
    assert f"run {expected}" in result.stdout, f"expected {best} run {expected}\n{result.describe()}"
    assert f"ndcg_at_10={metrics[best]['ndcg_at_10']:.4f}" in result.stdout, result.describe()


def test_09_a_new_batch_invalidates_features(project: E2EProject) -> None:
    before = data_md5(project)
    more = "runtime/landing/more"
    project.run("recops", "data", "generate", "--out", more, "--days", str(DAYS + 1))
    newest = sorted((project.root / more).iterdir())[-1]
    assert not (project.root / "data" / newest.name).exists()
    project.run("recops", "publish", str(newest.relative_to(project.root)))
    assert data_md5(project) != before
    assert project.dvc_json("status", "-c", "-r", "local", "data.dvc") == {}, "the new data must be pushed"
    status = project.dvc_json("status")
    assert set(status) == {"features"}, status
    assert status["features"] == [{"changed deps": {"data": "modified"}}], json.dumps(status)
