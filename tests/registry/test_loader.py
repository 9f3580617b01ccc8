"""The scorer's model loader: alias resolution, package-only download, checksummed cache, no pickle."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from registry.client import mlflow_client
from registry.loader import (
    AliasNotFoundError,
    ChecksumMismatchError,
    ModelLoaderError,
    RegistryUnavailableError,
    _safe_relative,
    cache_root,
    load_alias,
    load_version,
    peek_alias,
)
from tests.registry_helpers import fit_package, log_package, pickle_bomb, register_run, write_features_for


@pytest.fixture
def fs(recops_settings: Settings):  # type: ignore[no-untyped-def]
    return write_features_for(recops_settings)


def _version(settings: Settings, fs, tmp_path: Path, alias: str | None = "champion", **kw) -> int:  # type: ignore[no-untyped-def]
    logged = log_package(settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.3}, **kw)
    return register_run(settings, logged, alias)


def _unreachable(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9", "mlflow_registry_uri": "http://127.0.0.1:9"}
    )


def test_load_alias_downloads_package_caches_it_and_recommends(
    recops_settings: Settings, fs, tmp_path: Path
) -> None:
    assert peek_alias("champion", settings=recops_settings) is None
    version = _version(recops_settings, fs, tmp_path)
    assert peek_alias("champion", settings=recops_settings) == version
    assert not cache_root(recops_settings, recops_settings.model_name).exists()  # peeking downloads nothing
    loaded = load_alias("champion", settings=recops_settings)
    assert (loaded.version, loaded.alias, loaded.from_cache, loaded.stale) == (
        version,
        "champion",
        False,
        False,
    )
    assert loaded.package.family == "itemknn"
    assert loaded.package.model.n_items == fs.n_items
    history = [str(fs.item_ids[0]), str(fs.item_ids[5])]
    recs = loaded.package.recommend_ids([history], k=5)[0]
    assert len(recs) == 5 and all(item in set(fs.item_ids) for item, _ in recs)

    target = cache_root(recops_settings, recops_settings.model_name) / str(version)
    manifest = json.loads((target / "checksum.json").read_text())
    assert manifest["version"] == version and manifest["checksum"] == loaded.checksum
    assert set(manifest["files"]) == {
        "package.json",
        "items.parquet",
        "model/config.json",
        "model/weights.safetensors",
    }
    # only the package folder was downloaded: no MLmodel, no pyfunc code, no requirements
    assert sorted(p.name for p in target.iterdir()) == ["checksum.json", "package"]

    again = load_alias("champion", settings=recops_settings)
    assert again.from_cache and again.checksum == loaded.checksum
    assert again.package.recommend_ids([history], k=5)[0] == recs


def test_registry_down_serves_last_good_cached_version(recops_settings: Settings, fs, tmp_path: Path) -> None:
    version = _version(recops_settings, fs, tmp_path)
    load_alias("champion", settings=recops_settings)
    down = _unreachable(recops_settings)
    stale = load_alias("champion", settings=down)
    assert stale.stale and stale.version == version
    with pytest.raises(RegistryUnavailableError):
        load_alias("champion", settings=down, allow_stale=False)
    with pytest.raises(RegistryUnavailableError, match="no cached model"):
        load_alias("challenger", settings=down)
    # a tampered cache is never served, not even as a fallback
    weights = (
        cache_root(recops_settings, recops_settings.model_name)
        / str(version)
        / "package"
        / "model"
        / "weights.safetensors"
    )
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(RegistryUnavailableError, match="checksum"):
        load_alias("champion", settings=down)
    # with the registry back, the tampered copy is replaced by a fresh download
    fresh = load_alias("champion", settings=recops_settings)
    assert not fresh.from_cache and fresh.version == version


def test_missing_alias_and_version_are_clear_errors(recops_settings: Settings, fs, tmp_path: Path) -> None:
    with pytest.raises(AliasNotFoundError, match="no version with alias 'champion'"):
        load_alias("champion", settings=recops_settings)  # the registered model does not even exist yet
    _version(recops_settings, fs, tmp_path, alias=None)
    with pytest.raises(AliasNotFoundError, match="challenger"):
        load_alias("challenger", settings=recops_settings)
    with pytest.raises(AliasNotFoundError, match="no version 7"):
        load_version(7, settings=recops_settings)


def _artifact_root(settings: Settings, version: int) -> Path:
    client = mlflow_client(settings)
    uri = client.get_model_version_download_uri(settings.model_name, str(version))
    return Path(uri.removeprefix("file://"))


def test_planted_pickle_is_never_executed(recops_settings: Settings, fs, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    bomb = pickle_bomb(marker)
    # control: the payload is live (unpickling it creates the marker)
    control = tmp_path / "control.txt"
    pickle.loads(pickle_bomb(control))
    assert control.exists()

    # pickles inside the package when it was logged: registered with it, downloaded, never opened
    logged = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.3},
        extra_files={"weights.pkl": bomb, "python_model.pkl": bomb},
    )  # fmt: skip
    version = register_run(recops_settings, logged, "champion")
    # pickles planted later at the root of the logged model, where pyfunc would look: never downloaded
    root = _artifact_root(recops_settings, version)
    for name in ("python_model.pkl", "model.pkl"):
        (root / name).write_bytes(bomb)
    loaded = load_alias("champion", settings=recops_settings)
    assert loaded.version == version
    assert loaded.package.recommend_ids([[]], k=3)[0]
    assert not marker.exists()

    # a pickle planted inside the package after registration is tampering: refused, never opened
    (root / "artifacts" / "package" / "model" / "weights.pt").write_bytes(bomb)
    shutil.rmtree(cache_root(recops_settings, recops_settings.model_name))
    with pytest.raises(ChecksumMismatchError, match=r"model/weights\.pt was not in the registered package"):
        load_alias("champion", settings=recops_settings, allow_stale=False)
    assert not marker.exists()


def test_a_package_that_does_not_load_is_not_cached(recops_settings: Settings, fs, tmp_path: Path) -> None:
    """A version registered before checksums existed (nothing to verify against) whose files are broken:
    the package loader refuses it, nothing is cached, and the alias's last good version stands in."""
    good = _version(recops_settings, fs, tmp_path)
    load_alias("champion", settings=recops_settings)
    logged = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.3}, digest=False
    )
    broken = register_run(recops_settings, logged, None, checksums=False)
    root = _artifact_root(recops_settings, broken)
    (root / "artifacts" / "package" / "model" / "weights.safetensors").write_bytes(b"not safetensors")
    mlflow_client(recops_settings).set_registered_model_alias(
        recops_settings.model_name, "champion", str(broken)
    )
    with pytest.raises(ModelLoaderError, match="does not load"):
        load_alias("champion", settings=recops_settings, allow_stale=False)
    assert not (cache_root(recops_settings, recops_settings.model_name) / str(broken)).exists()
    # the scorer's contract: the last good version keeps serving, marked stale, with the reason
    fallback = load_alias("champion", settings=recops_settings)
    assert (fallback.version, fallback.stale) == (good, True)
    assert f"v{broken} refused" in fallback.fallback_reason and "does not load" in fallback.fallback_reason
    # the pointer still names the last good version, so a registry outage falls back to it too
    assert load_alias("champion", settings=_unreachable(recops_settings)).version == good
    (root / "artifacts" / "package" / "items.parquet").unlink()
    with pytest.raises(ModelLoaderError):
        load_version(broken, settings=recops_settings)


@pytest.mark.parametrize(
    "path", ["../../etc", "/etc/passwd", "artifacts/../../x", "s3://bucket/x", "a\\..\\b", ""]
)
def test_unsafe_package_paths_are_refused(path: str) -> None:
    with pytest.raises(ModelLoaderError, match="unsafe"):
        _safe_relative(path)


def test_safe_package_path_is_kept() -> None:
    assert _safe_relative("artifacts/package") == "artifacts/package"
    assert np.isfinite(1.0)
