"""The scorer's model loader: alias resolution, package-only download, checksummed cache, no pickle."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from core.settings import Settings
from registry.client import mlflow_client
from registry.loader import (
    AliasNotFoundError,
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


def test_planted_pickle_is_never_executed(recops_settings: Settings, fs, tmp_path: Path) -> None:
    marker = tmp_path / "pwned.txt"
    bomb = pickle_bomb(marker)
    # control: the payload is live (unpickling it creates the marker)
    control = tmp_path / "control.txt"
    pickle.loads(pickle_bomb(control))
    assert control.exists()

    logged = log_package(
        recops_settings, fit_package(fs, "good"), tmp_path, metrics={"ndcg_at_10": 0.3},
        extra_files={"weights.pkl": bomb, "python_model.pkl": bomb},
    )  # fmt: skip
    version = register_run(recops_settings, logged, "champion")
    # also plant pickles at the root of the logged model, where pyfunc would look for them
    client = mlflow_client(recops_settings)
    root = Path(
        client.get_model_version_download_uri(recops_settings.model_name, str(version)).removeprefix(
            "file://"
        )
    )
    for name in ("python_model.pkl", "model.pkl"):
        (root / name).write_bytes(bomb)
    (root / "artifacts" / "package" / "model" / "weights.pt").write_bytes(bomb)

    loaded = load_alias("champion", settings=recops_settings)
    assert loaded.version == version
    assert loaded.package.recommend_ids([[]], k=3)[0]
    assert not marker.exists()


def test_corrupt_package_fails_to_load_and_is_not_cached(
    recops_settings: Settings, fs, tmp_path: Path
) -> None:
    good = _version(recops_settings, fs, tmp_path)
    load_alias("champion", settings=recops_settings)
    broken = _version(recops_settings, fs, tmp_path, alias=None)
    client = mlflow_client(recops_settings)
    root = Path(
        client.get_model_version_download_uri(recops_settings.model_name, str(broken)).removeprefix("file://")
    )
    (root / "artifacts" / "package" / "model" / "weights.safetensors").write_bytes(b"not safetensors")
    client.set_registered_model_alias(recops_settings.model_name, "champion", str(broken))
    with pytest.raises(ModelLoaderError, match="does not load"):
        load_alias("champion", settings=recops_settings)
    assert not (cache_root(recops_settings, recops_settings.model_name) / str(broken)).exists()
    # the pointer still names the last good version, so a registry outage falls back to it
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
