"""Throw-away project copies for the end-to-end tests, driven by the REAL ``recops`` and ``dvc`` commands.

:func:`make_project` copies every file ``git ls-files`` lists (their working-tree versions) into a temporary
folder, shrinks the synthetic dataset in its ``params.yaml`` and commits it into a fresh git repository.
``.dvc/config`` is kept as it is: the default remote ``local`` (``../runtime/dvc-remote``) resolves inside
the copy. Commands run there with ``RECOPS_PROJECT_DIR`` pointing at the copy and the venv's ``bin`` first
on ``PATH``; the venv's ``recops`` is an editable install, so the code runs from the repository while every
piece of state (``data/``, ``artifacts/``, ``runtime/``, ``data.dvc``, ``dvc.lock``) lands in the copy.

The tests of one module are steps of one flow: once a step fails, the later steps of that module are
skipped (they would only fail for the same reason).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from mlflow import MlflowClient

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
GIT_IDENTITY = ("-c", "user.name=recops-e2e", "-c", "user.email=recops-e2e@example.invalid")
COMMAND_TIMEOUT_S = 300
TAIL_CHARS = 4000


# ------------------------------------------------------------------------------------- step ordering


def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Remember the first failed step of a module (setup or call) so the later steps can be skipped."""
    if call.excinfo is not None and not call.excinfo.errisinstance(pytest.skip.Exception):
        module = item.getparent(pytest.Module)
        if module is not None and not hasattr(module, "_e2e_failed_step"):
            module._e2e_failed_step = item.name  # type: ignore[attr-defined]


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Skip a step when an earlier step of the same module failed."""
    module = item.getparent(pytest.Module)
    failed = getattr(module, "_e2e_failed_step", None)
    if failed is not None:
        pytest.skip(f"an earlier step of this flow failed: {failed}")


# ------------------------------------------------------------------------------------- commands


@dataclass(frozen=True)
class Result:
    """One finished command: its exit status, output and wall time."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def describe(self) -> str:
        """The command, its exit status and the tails of its output, for assertion messages."""
        return (
            f"$ {' '.join(self.args)}  -> exit {self.returncode} in {self.seconds:.1f}s\n"
            f"--- stdout (tail) ---\n{self.stdout[-TAIL_CHARS:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-TAIL_CHARS:]}"
        )


def project_env(root: Path) -> dict[str, str]:
    """The caller's environment without any ``RECOPS_*`` variable, plus what the e2e commands need."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_")}
    env.update(
        {
            "RECOPS_PROJECT_DIR": str(root),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
            "OPENBLAS_NUM_THREADS": "1",
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
            "COLUMNS": "160",
        }
    )
    return env


@dataclass(repr=False)
class E2EProject:
    """A project copy and the way to run commands in it."""

    root: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:  # short, and never the environment in a failure report
        return f"E2EProject({self.root})"

    def run(self, *args: str, expect: int | None = 0, timeout: int = COMMAND_TIMEOUT_S) -> Result:
        """Run ``args`` in the copy; with ``expect`` set, assert the exit status (output tails on failure)."""
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                list(args),
                cwd=self.root,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            pytest.fail(
                f"$ {' '.join(args)} ran past {timeout}s\n--- stdout ---\n{out[-TAIL_CHARS:]}\n"
                f"--- stderr ---\n{err[-TAIL_CHARS:]}"
            )
        result = Result(tuple(args), proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - started)
        label = " ".join(args[:3])
        self.timings[label] = self.timings.get(label, 0.0) + result.seconds
        if expect is not None:
            assert result.returncode == expect, f"expected exit {expect}\n{result.describe()}"
        return result

    def dvc_json(self, *args: str) -> Any:
        """Run ``dvc ARGS --json`` and parse its stdout."""
        result = self.run("dvc", *args, "--json")
        try:
            return json.loads(result.stdout)
        except json.JSONDecodeError as exc:
            raise AssertionError(f"not JSON: {exc}\n{result.describe()}") from exc

    # ---- params.yaml

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    def params(self) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load(self.params_file.read_text(encoding="utf-8"))
        return loaded

    def set_params(self, updates: Mapping[str, Any]) -> None:
        """Set dotted keys (``train.als.factors``) in the copy's params.yaml (comments are not kept)."""
        doc = self.params()
        for dotted, value in updates.items():
            *path, last = dotted.split(".")
            node = doc
            for key in path:
                node = node[key]
            assert last in node, f"params.yaml has no {dotted}"
            node[last] = value
        self.params_file.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")

    # ---- state

    def mlflow_client(self) -> MlflowClient:
        from mlflow import MlflowClient

        uri = f"sqlite:///{self.root / 'runtime' / 'mlflow.db'}"
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def run_record(self, family: str) -> dict[str, str]:
        """The MLflow run the workspace's ``artifacts/models/<family>/package`` came from (the train step's
        side file ``runtime/pipeline/train-<family>.json``, or MLflow when DVC restored an older package)."""
        from core.settings import Settings
        from pipelines.train import PACKAGE_DIR, read_train_record

        uri = f"sqlite:///{self.root / 'runtime' / 'mlflow.db'}"
        settings = Settings(
            project_dir=self.root,
            runtime_dir=self.root / "runtime",
            mlflow_tracking_uri=uri,
            mlflow_registry_uri=uri,
        )
        return read_train_record(settings, family, self.root / "artifacts" / "models" / family / PACKAGE_DIR)

    def metrics(self) -> dict[str, dict[str, float]]:
        path = self.root / "artifacts" / "metrics" / "metrics.json"
        metrics: dict[str, dict[str, float]] = json.loads(path.read_text(encoding="utf-8"))
        return metrics

    def timing_report(self) -> str:
        total = sum(self.timings.values())
        lines = [f"{seconds:7.1f}s  {label}" for label, seconds in self.timings.items()]
        return "\n".join([*lines, f"{total:7.1f}s  total in commands"])


# ------------------------------------------------------------------------------------- project copy


def tracked_files(repo: Path) -> list[Path]:
    """Paths ``git ls-files`` lists in ``repo`` that exist in the working tree."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, check=True, timeout=60
    ).stdout.decode()
    return [Path(p) for p in out.split("\0") if p and (repo / p).is_file()]


def copy_tracked(repo: Path, dest: Path) -> None:
    """Copy the working-tree version of every tracked file of ``repo`` into ``dest``."""
    for rel in tracked_files(repo):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=root, capture_output=True, text=True, check=True, timeout=60
    ).stdout


def make_project(dest: Path, params: Mapping[str, Any]) -> E2EProject:
    """A committed copy of the repository in ``dest`` with ``params`` (dotted keys) set in params.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    copy_tracked(REPO_ROOT, dest)
    assert (dest / ".dvc" / "config").is_file(), "the copy has no .dvc/config"
    project = E2EProject(root=dest.resolve(), env=project_env(dest.resolve()))
    project.set_params(params)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "e2e copy of recops")
    return project


@pytest.fixture(scope="module")
def project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EProject]:
    """A fresh project copy for the module, with the module's ``PROJECT_PARAMS`` set in its params.yaml.

    The command timings are printed at the end (``pytest -s`` shows them).
    """
    params: Mapping[str, Any] = request.module.PROJECT_PARAMS
    made = make_project(tmp_path_factory.mktemp("e2e") / "project", params)
    yield made
    print(f"\n[e2e] {request.module.__name__}: command timings\n{made.timing_report()}")
