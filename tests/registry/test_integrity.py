"""Package checksums: recorded at registration from the logged package, verified by the loader before it
opens or caches anything, re-checked on every cached load; the last good model keeps serving."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from models.package import ModelPackage, digest_of, file_checksums, package_digest
from pipelines.params import Params
from registry.aliases import CHAMPION, RegistryError
from registry.client import mlflow_client
from registry.integrity import ExpectedChecksums, expected_checksums, manifest_tags, mismatches
from registry.loader import (
    ChecksumMismatchError,
    UnverifiableModelError,
    cache_root,
    load_alias,
    load_version,
)
from registry.register import register_best
from registry.tags import TAG_PACKAGE_DIGEST, TAG_PACKAGE_FILES
from tests.registry_helpers import fit_package, log_package, register_run, write_features_for

WEIGHTS = "model/weights.safetensors"
SELECTED = {"valid_ndcg_at_10": 0.4, "ndcg_at_10": 0.4}


@pytest.fixture
def fs(recops_settings: Settings) -> Any:
    return write_features_for(recops_settings)


def _package_folder(settings: Settings, version: int) -> Path:
    uri = mlflow_client(settings).get_model_version_download_uri(settings.model_name, str(version))
    return Path(uri.removeprefix("file://")) / "artifacts" / "package"


def _flip_last_bytes(path: Path, n: int = 16) -> None:
    """Bit rot in the tensor data at the end of a safetensors file: the header still parses."""
    data = bytearray(path.read_bytes())
    for i in range(len(data) - n, len(data)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def _register(settings: Settings, fs: Any, tmp_path: Path, kind: str = "good") -> int:
    logged = log_package(settings, fit_package(fs, kind), tmp_path, metrics=SELECTED)
    return register_best(logged.parent_run_id, settings=settings, primary_metric="ndcg_at_10").version


# ------------------------------------------------------------------------------------------ pure parts


def test_package_digest_is_the_digest_of_the_per_file_manifest(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "model" / "w.bin").write_bytes(b"\0\1")
    files = file_checksums(tmp_path)
    assert sorted(files) == ["a.json", "model/w.bin"]
    assert digest_of(files) == package_digest(tmp_path)
    tags = manifest_tags(files)
    assert json.loads(tags[TAG_PACKAGE_FILES]) == files and tags[TAG_PACKAGE_DIGEST] == digest_of(files)


def test_mismatches_name_the_files() -> None:
    expected = ExpectedChecksums(files={"a": "1" * 64, "b": "2" * 64}, digest=None, source="x")
    assert mismatches({"a": "1" * 64, "b": "2" * 64}, expected) == []
    problems = mismatches({"a": "3" * 64, "c": "4" * 64}, expected)
    assert problems == [
        "a has sha256 333333333333..., expected 111111111111...",
        "b is missing",
        "c was not in the registered package",
    ]
    only_digest = ExpectedChecksums(files=None, digest=digest_of({"a": "1" * 64}), source="run")
    assert mismatches({"a": "1" * 64}, only_digest) == []
    assert "one of a differs" in mismatches({"a": "2" * 64}, only_digest)[0]


def test_tampered_version_tags_are_refused() -> None:
    files = {"a": "1" * 64}
    tags = manifest_tags(files)
    assert expected_checksums(tags, None, "m v1").files == files
    with pytest.raises(ValueError, match="do not match the recorded digest"):
        expected_checksums({**tags, TAG_PACKAGE_DIGEST: "0" * 64}, None, "m v1")
    with pytest.raises(ValueError, match="not valid JSON"):
        expected_checksums({TAG_PACKAGE_FILES: "{"}, None, "m v1")
    run_only = expected_checksums({}, {TAG_PACKAGE_DIGEST: "abc"}, "m v1")
    assert (run_only.files, run_only.digest) == (None, "abc")
    assert not expected_checksums({}, {}, "m v1").known


# ------------------------------------------------------------------------------------------ registration


def test_registration_records_the_checksums_of_the_logged_package(
    recops_settings: Settings, fs: Any, tmp_path: Path
) -> None:
    logged = log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics=SELECTED)
    result = register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    mv = mlflow_client(recops_settings).get_model_version(recops_settings.model_name, str(result.version))
    files = json.loads(mv.tags[TAG_PACKAGE_FILES])
    assert set(files) == {"package.json", "items.parquet", "model/config.json", WEIGHTS}
    assert files == file_checksums(_package_folder(recops_settings, result.version))
    run = mlflow_client(recops_settings).get_run(logged.run_id)
    assert mv.tags[TAG_PACKAGE_DIGEST] == run.data.tags[TAG_PACKAGE_DIGEST] == digest_of(files)


def test_registration_refuses_a_logged_package_that_changed_since_training(
    recops_settings: Settings, fs: Any, tmp_path: Path
) -> None:
    logged = log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics=SELECTED)
    client = mlflow_client(recops_settings)
    stored = Path(str(client.get_logged_model(logged.model_id).artifact_location).removeprefix("file://"))
    _flip_last_bytes(stored / "artifacts" / "package" / WEIGHTS)
    with pytest.raises(RegistryError, match="not the one training wrote"):
        register_best(None, settings=recops_settings, primary_metric="ndcg_at_10")
    assert client.search_model_versions(f"name = '{recops_settings.model_name}'") == []


# ------------------------------------------------------------------------------------------ loading


def test_flipped_weight_bytes_are_refused_and_the_last_good_model_keeps_serving(
    recops_settings: Settings, fs: Any, tmp_path: Path
) -> None:
    settings = recops_settings
    client = mlflow_client(settings)
    good = _register(settings, fs, tmp_path, "good")
    client.set_registered_model_alias(settings.model_name, CHAMPION, str(good))
    assert load_alias(CHAMPION, settings=settings).version == good  # cached, pointer written

    rotten = _register(settings, fs, tmp_path, "popularity")
    folder = _package_folder(settings, rotten)
    pristine = ModelPackage.load(folder)
    _flip_last_bytes(folder / WEIGHTS)
    # control: without checksums these bytes load fine and give different scores (what used to be served)
    corrupt = ModelPackage.load(folder)
    history = [np.array([0, 1, 2], dtype=np.int64)]
    assert not np.array_equal(corrupt.model.score(history), pristine.model.score(history))

    client.set_registered_model_alias(settings.model_name, CHAMPION, str(rotten))
    with pytest.raises(ChecksumMismatchError, match=rf"{WEIGHTS} has sha256 .* expected"):
        load_alias(CHAMPION, settings=settings, allow_stale=False)
    assert not (cache_root(settings, settings.model_name) / str(rotten)).exists()  # never cached
    with pytest.raises(ChecksumMismatchError, match=WEIGHTS):
        load_version(rotten, settings=settings)
    served = load_alias(CHAMPION, settings=settings)  # the scorer's call: the last good model
    assert (served.version, served.stale, served.from_cache) == (good, True, True)
    assert f"v{rotten} refused" in served.fallback_reason and WEIGHTS in served.fallback_reason
    assert not (cache_root(settings, settings.model_name) / str(rotten)).exists()


def test_a_cached_copy_is_checked_against_the_registry(
    recops_settings: Settings, fs: Any, tmp_path: Path
) -> None:
    settings = recops_settings
    version = _register(settings, fs, tmp_path)
    mlflow_client(settings).set_registered_model_alias(settings.model_name, CHAMPION, str(version))
    first = load_alias(CHAMPION, settings=settings)
    assert not first.from_cache and first.checksum == digest_of(
        json.loads(
            mlflow_client(settings)
            .get_model_version(settings.model_name, str(version))
            .tags[TAG_PACKAGE_FILES]
        )
    )
    # rewrite the cached weights AND its checksum.json consistently: only the registry can tell
    target = cache_root(settings, settings.model_name) / str(version)
    _flip_last_bytes(target / "package" / WEIGHTS)
    manifest = json.loads((target / "checksum.json").read_text())
    manifest["files"] = file_checksums(target / "package")
    manifest["checksum"] = manifest["verified_against"] = digest_of(manifest["files"])
    (target / "checksum.json").write_text(json.dumps(manifest))
    again = load_alias(CHAMPION, settings=settings)
    assert not again.from_cache and again.checksum == first.checksum  # downloaded again, verified
    assert file_checksums(target / "package") == json.loads(
        mlflow_client(settings).get_model_version(settings.model_name, str(version)).tags[TAG_PACKAGE_FILES]
    )
    assert load_alias(CHAMPION, settings=settings).from_cache


def test_a_version_without_its_own_checksums_is_checked_against_its_training_run(
    recops_settings: Settings, fs: Any, tmp_path: Path
) -> None:
    settings = recops_settings
    logged = log_package(settings, fit_package(fs, "good"), tmp_path, metrics={})  # run has the digest
    version = register_run(settings, logged, CHAMPION, checksums=False)
    assert load_alias(CHAMPION, settings=settings).version == version
    _flip_last_bytes(_package_folder(settings, version) / WEIGHTS)
    assert load_version(version, settings=settings).from_cache  # the verified cached copy is intact
    shutil.rmtree(cache_root(settings, settings.model_name))
    with pytest.raises(ChecksumMismatchError, match="training run's package digest"):
        load_version(version, settings=settings)


def test_unverifiable_versions_load_with_a_warning_in_dev_and_are_refused_in_production(
    recops_settings: Settings, fs: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = recops_settings
    logged = log_package(settings, fit_package(fs, "good"), tmp_path, metrics={}, digest=False)
    version = register_run(settings, logged, CHAMPION, checksums=False)
    production = settings.model_copy(update={"env": "production"})
    with pytest.raises(UnverifiableModelError, match="refused in production"):
        load_alias(CHAMPION, settings=production, allow_stale=False)
    with caplog.at_level(logging.WARNING, logger="registry.loader"):
        assert load_alias(CHAMPION, settings=settings).version == version
    assert "records no package checksums" in caplog.text and "unverified" in caplog.text
    assert Params().promote.primary_metric  # the gate's metric exists (used by register_best above)


def test_training_records_the_digest_under_the_tag_registration_reads() -> None:
    from pipelines.train import TAG_PACKAGE_DIGEST as TRAIN_TAG

    assert TRAIN_TAG == TAG_PACKAGE_DIGEST
