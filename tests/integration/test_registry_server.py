"""Registry flows against a real `mlflow server` (PostgreSQL backend, artifacts proxied to moto S3) with the
audit trail and lock in PostgreSQL: idempotent registration, gate, rollback, audit, races, pickle safety."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.settings import Settings
from pipelines.params import Params
from pipelines.promote import promote
from registry.aliases import CHALLENGER, CHAMPION, PREVIOUS, alias_version
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.loader import cache_root, load_alias
from registry.register import register_best
from registry.rollback import rollback
from tests.conftest import MLflowServer, S3Endpoint
from tests.registry_helpers import (
    fit_package,
    log_package,
    pickle_bomb,
    race_two_promotions,
    register_run,
    write_features_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def server_settings(
    recops_settings: Settings, mlflow_server: MLflowServer, make_pg_database: Callable[[], str]
) -> Settings:
    """Settings on the shared server with a model name and experiment of this test, audit in PostgreSQL."""
    tag = secrets.token_hex(4)
    return recops_settings.model_copy(
        update={
            "mlflow_tracking_uri": mlflow_server.tracking_uri,
            "mlflow_registry_uri": mlflow_server.tracking_uri,
            "mlflow_experiment": f"recops-it-{tag}",
            "model_name": f"recops-it-{tag}",
            "metadata_db_url": make_pg_database(),
        }
    )


def test_register_gate_rollback_and_audit_on_server(server_settings: Settings, tmp_path: Path) -> None:
    settings = server_settings
    fs = write_features_for(settings)
    seed = log_package(
        settings,
        fit_package(fs, "popularity"),
        tmp_path,
        metrics={"ndcg_at_10": 0.2, "valid_ndcg_at_10": 0.2},
    )
    v1 = register_run(settings, seed, CHAMPION)  # an existing champion, deployed before this tooling
    good = log_package(
        settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.4, "valid_ndcg_at_10": 0.4}
    )
    log_package(
        settings, fit_package(fs, "popularity"), tmp_path,
        metrics={"ndcg_at_10": 0.3, "valid_ndcg_at_10": 0.3},
        lineage=good.lineage, parent_run_id=good.parent_run_id,
    )  # fmt: skip

    first = register_best(
        good.parent_run_id, settings=settings, primary_metric=Params().promote.primary_metric, actor="it"
    )
    second = register_best(
        None, settings=settings, primary_metric=Params().promote.primary_metric, actor="it"
    )
    assert first.created and not second.created and first.version == second.version
    v2 = first.version
    client = mlflow_client(settings)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    assert sorted(int(v.version) for v in versions) == [v1, v2]
    assert client.get_model_version(settings.model_name, str(v2)).tags["family"] == "itemknn"

    better = promote(settings=settings, params=Params(), actor="it")
    assert better.outcome == "promoted", better.reasons
    assert alias_version(client, settings.model_name, CHAMPION) == v2
    assert alias_version(client, settings.model_name, PREVIOUS) == v1
    t_promoted = datetime.now(UTC)
    assert client.get_run(better.promotion_run_id).data.tags["decision"] == "promoted"

    bad = log_package(
        settings, fit_package(fs, "bad"), tmp_path, metrics={"ndcg_at_10": 0.5, "valid_ndcg_at_10": 0.5}
    )
    v3 = register_best(
        bad.parent_run_id, settings=settings, primary_metric=Params().promote.primary_metric, actor="it"
    ).version
    assert alias_version(client, settings.model_name, CHALLENGER) == v3
    worse = promote(settings=settings, params=Params(), actor="it")  # logged 0.5, but worse on today's data
    assert worse.outcome == "blocked"
    assert alias_version(client, settings.model_name, CHAMPION) == v2

    back = rollback(settings=settings, actor="oncall", reason="it")
    assert (back.from_version, back.to_version) == (v2, v1)
    assert alias_version(client, settings.model_name, CHAMPION) == v1
    assert alias_version(client, settings.model_name, PREVIOUS) == v2
    assert load_alias(CHAMPION, settings=settings).version == v1

    log = audit_log(settings)
    assert log.champion_at(t_promoted, settings.model_name) == v2
    assert log.champion_at(datetime.now(UTC), settings.model_name) == v1
    actions = [(r.alias, r.action, r.to_version) for r in log.history(settings.model_name)]
    assert actions == [
        ("challenger", "register", v2),
        ("previous", "promote", v1),
        ("champion", "promote", v2),
        ("challenger", "register", v3),
        ("champion", "blocked", v3),
        ("previous", "rollback", v2),
        ("champion", "rollback", v1),
    ]
    log.dispose()


def test_concurrent_promotions_on_server_have_one_winner(
    server_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = server_settings
    fs = write_features_for(settings)
    v1 = register_run(
        settings, log_package(settings, fit_package(fs, "popularity"), tmp_path, metrics={}), CHAMPION
    )
    v2 = register_run(
        settings, log_package(settings, fit_package(fs, "good"), tmp_path, metrics={}), CHALLENGER
    )
    outcomes, errors = race_two_promotions(settings, monkeypatch)
    assert not errors, errors
    assert sorted(outcomes) == ["lost_race", "promoted"]
    client = mlflow_client(settings)
    assert alias_version(client, settings.model_name, CHAMPION) == v2
    assert alias_version(client, settings.model_name, PREVIOUS) == v1
    rows = audit_log(settings).history(settings.model_name)
    assert [r.action for r in rows].count("promote") == 2
    assert [r.action for r in rows].count("blocked") == 1


def test_planted_pickle_never_runs_when_loading_from_server(
    server_settings: Settings, tmp_path: Path
) -> None:
    settings = server_settings
    fs = write_features_for(settings)
    marker = tmp_path / "pwned.txt"
    bomb = pickle_bomb(marker)
    logged = log_package(
        settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.3, "valid_ndcg_at_10": 0.3},
        extra_files={"weights.pkl": bomb, "python_model.pkl": bomb},
        extra_artifacts={"python_model": bomb},
    )  # fmt: skip
    version = register_run(settings, logged, CHAMPION)
    loaded = load_alias(CHAMPION, settings=settings)
    assert loaded.version == version and loaded.package.family == "itemknn"
    assert loaded.package.recommend_ids([[str(fs.item_ids[3])]], k=5)[0]
    assert not marker.exists()
    cached = cache_root(settings, settings.model_name) / str(version)
    assert (cached / "checksum.json").is_file() and not (cached / "python_model.pkl").exists()


def test_corrupt_weights_in_the_artifact_store_are_refused_on_server(
    server_settings: Settings, mlflow_server: MLflowServer, s3_server: S3Endpoint, tmp_path: Path
) -> None:
    """Checksums recorded at registration from the proxied S3 store; bytes flipped in S3 afterwards are
    refused by the loader, nothing is cached, and the last good champion keeps serving."""
    import shutil

    from registry.loader import ChecksumMismatchError

    settings = server_settings
    fs = write_features_for(settings)
    first = log_package(settings, fit_package(fs, "popularity"), tmp_path, metrics={"valid_ndcg_at_10": 0.2})
    v1 = register_best(first.parent_run_id, settings=settings, primary_metric="ndcg_at_10").version
    client = mlflow_client(settings)
    client.set_registered_model_alias(settings.model_name, CHAMPION, str(v1))
    assert load_alias(CHAMPION, settings=settings).version == v1
    second = log_package(settings, fit_package(fs, "good"), tmp_path, metrics={"valid_ndcg_at_10": 0.4})
    v2 = register_best(second.parent_run_id, settings=settings, primary_metric="ndcg_at_10").version
    assert client.get_model_version(settings.model_name, str(v2)).tags["recops.package_files"]

    s3 = s3_server.client()
    keys = [
        obj["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=mlflow_server.artifacts_bucket)
        for obj in page.get("Contents", [])
        if second.model_id in obj["Key"] and obj["Key"].endswith("package/model/weights.safetensors")
    ]
    assert len(keys) == 1, keys
    body = bytearray(s3.get_object(Bucket=mlflow_server.artifacts_bucket, Key=keys[0])["Body"].read())
    body[-8:] = bytes(b ^ 0x5A for b in body[-8:])
    s3.put_object(Bucket=mlflow_server.artifacts_bucket, Key=keys[0], Body=bytes(body))

    client.set_registered_model_alias(settings.model_name, CHAMPION, str(v2))
    with pytest.raises(ChecksumMismatchError, match=r"model/weights\.safetensors has sha256"):
        load_alias(CHAMPION, settings=settings, allow_stale=False)
    assert not (cache_root(settings, settings.model_name) / str(v2)).exists()
    served = load_alias(CHAMPION, settings=settings)
    assert (served.version, served.stale) == (v1, True) and f"v{v2} refused" in served.fallback_reason
    shutil.rmtree(cache_root(settings, settings.model_name))
    with pytest.raises(ChecksumMismatchError):
        load_alias(CHAMPION, settings=settings)  # no last good copy left: the refusal itself
