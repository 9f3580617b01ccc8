"""The name a worker records on the task instances it runs (``[core] hostname_callable``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pipelines.orchestration.workers import WORKER_NAME_VARIABLE, machine_name, worker_name

HOSTNAME_CALLABLE = "AIRFLOW__CORE__HOSTNAME_CALLABLE"


def airflow_hostname() -> Callable[[], str]:
    """What Airflow's task runner calls for the ``hostname`` it reports when a task starts."""
    from airflow.sdk.api.client import get_hostname

    hostname: Callable[[], str] = get_hostname  # untyped in the SDK
    return hostname


def test_the_worker_name_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKER_NAME_VARIABLE, "  recops-worker-7 ")
    assert worker_name() == "recops-worker-7"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_without_a_name_it_is_the_machine_name(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv(WORKER_NAME_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(WORKER_NAME_VARIABLE, value)
    assert worker_name() == machine_name() != ""


def test_airflow_resolves_it_as_its_hostname_callable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker ``stack.sh`` starts reports the name; without the setting Airflow's default is the same
    machine name this module falls back to."""
    hostname = airflow_hostname()
    monkeypatch.setenv(HOSTNAME_CALLABLE, "pipelines.orchestration.workers.worker_name")
    monkeypatch.setenv(WORKER_NAME_VARIABLE, "celery-worker-3")
    assert hostname() == "celery-worker-3"
    monkeypatch.delenv(WORKER_NAME_VARIABLE)
    assert hostname() == machine_name()
    monkeypatch.delenv(HOSTNAME_CALLABLE, raising=False)
    assert hostname() == machine_name()
