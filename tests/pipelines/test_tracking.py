"""The key that ties the stages of one pipeline run to one MLflow parent run."""

from __future__ import annotations

from pipelines.tracking import pipeline_key

LINEAGE = {"git_commit": "a" * 40, "code_hash": "c" * 16, "data_md5": "d" * 32 + ".dir", "params_hash": "p"}


def test_orchestrated_runs_are_keyed_by_the_orchestrator_run_id() -> None:
    assert pipeline_key(LINEAGE, "manual__2026-01-01") == "orchestrated:manual__2026-01-01"
    assert pipeline_key(LINEAGE, "  ") == pipeline_key(LINEAGE)


def test_local_key_is_stable_for_the_same_code_and_data() -> None:
    assert pipeline_key(dict(LINEAGE)) == pipeline_key(dict(LINEAGE))
    assert pipeline_key(LINEAGE).startswith("local:")


def test_edited_code_on_the_same_commit_gets_another_parent() -> None:
    edited = {**LINEAGE, "code_hash": "e" * 16}
    assert pipeline_key(edited) != pipeline_key(LINEAGE)


def test_other_data_gets_another_parent() -> None:
    assert pipeline_key({**LINEAGE, "data_md5": "f" * 32 + ".dir"}) != pipeline_key(LINEAGE)
