"""The train step: two honest fits per family, pure DVC outputs, the run record beside them, and a new family
added with one module, one params section and one registry line."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml
from numpy.typing import NDArray
from pydantic import Field, ValidationError

import models
from core.errors import RecopsError
from core.settings import Settings
from models.base import (
    EpochCallback,
    FitContext,
    FloatArray,
    IntArray,
    Interactions,
    ModelConfig,
    Recommender,
)
from models.package import ModelPackage, package_digest
from pipelines.params import Params, ParamsError, TrainParams, load_params
from pipelines.steps import StepContext
from pipelines.train import (
    PACKAGE_DIR,
    SELECTION_DIR,
    TAG_PACKAGE_DIGEST,
    build_package,
    fit_context,
    fit_family,
    item_features,
    model_dir,
    read_train_record,
    record_path,
    run_train,
    training_curve_figure,
    training_device,
)
from registry.client import mlflow_client
from tests.registry_helpers import write_features_for

PARAMS_FILE = Path(__file__).resolve().parents[2] / "params.yaml"

# ------------------------------------------------------------------------------------------- a new family


class SpyConfig(ModelConfig):
    """A family added by a test: one config class is its params section and its constructor input."""

    boost: float = Field(1.0, gt=0)


class SpyRecommender(Recommender):
    """Remembers what ``fit`` handed it."""

    family = "spy"
    config_class = SpyConfig
    config: SpyConfig
    seen: ClassVar[dict[str, Any]] = {}

    def _fit(
        self, train: Interactions, valid: Interactions | None, ctx: FitContext, on_epoch: EpochCallback | None
    ) -> None:
        SpyRecommender.seen = {
            "train": len(train),
            "valid": None if valid is None else len(valid),
            "ctx": ctx,
        }
        if on_epoch is not None:
            on_epoch(0, {"loss": 1.0})

    def score(self, histories: Sequence[IntArray]) -> FloatArray:
        return np.broadcast_to(
            self.config.boost * self.item_popularity, (len(histories), self.n_items)
        ).copy()

    def _weights(self) -> dict[str, NDArray[Any]]:
        return {}

    def _from_weights(self, weights: dict[str, NDArray[Any]]) -> None:
        pass


@pytest.fixture
def spy_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(models.FAMILIES, "spy", f"{__name__}:SpyRecommender")


def spy_params(boost: float) -> Params:
    """params.yaml with the spy as the only family."""
    params = load_params(PARAMS_FILE)
    return params.model_copy(
        update={"train": TrainParams.model_validate({"families": ["spy"], "spy": {"boost": boost}})}
    )


# ------------------------------------------------------------------------------------------- pure core


def test_selection_fits_on_train_with_valid_and_the_package_on_train_valid(
    recops_settings: Settings, spy_family: None
) -> None:
    fs = write_features_for(recops_settings)
    params = spy_params(boost=2.0)
    ctx = FitContext(seed=9, threads=1)
    selection = fit_family("spy", fs, params, "train", ctx)
    assert SpyRecommender.seen == {
        "train": len(fs.interactions("train")),
        "valid": len(fs.interactions("valid")),
        "ctx": ctx,
    }
    assert isinstance(selection.config, SpyConfig) and selection.config.boost == 2.0
    fit_family("spy", fs, params, "train_valid", ctx)
    assert SpyRecommender.seen["train"] == len(fs.interactions("train_valid"))
    assert SpyRecommender.seen["valid"] is None, "the refit has no validation data left"
    assert len(fs.interactions("valid")) > 0 and len(fs.interactions("train")) < len(
        fs.interactions("train_valid")
    )


def test_the_refit_takes_what_validation_chose_for_the_selection_fit(
    recops_settings: Settings, spy_family: None
) -> None:
    fs = write_features_for(recops_settings)
    params = spy_params(boost=2.0)
    ctx = FitContext(seed=9, threads=1)
    selection = fit_family("spy", fs, params, "train", ctx)
    chosen = SpyConfig(boost=5.0)  # what an early-stopping family would have settled on validation
    selection.refit_config = lambda: chosen  # type: ignore[method-assign]
    refit = fit_family("spy", fs, params, "train_valid", ctx, selected=selection)
    assert isinstance(refit.config, SpyConfig) and refit.config.boost == 5.0, (
        "the refit must use the selection's refit_config, not params.yaml's setting"
    )
    assert SpyRecommender.seen["valid"] is None
    assert fit_family("spy", fs, params, "train_valid", ctx).config.boost == 2.0  # type: ignore[attr-defined]


def test_packages_record_their_training_cutoff(recops_settings: Settings) -> None:
    fs = write_features_for(recops_settings)
    params = load_params(PARAMS_FILE)
    info = fs.split_info
    selection = build_package(fit_family("popularity", fs, params, "train"), fs, "train")
    package = build_package(fit_family("popularity", fs, params, "train_valid"), fs, "train_valid")
    assert selection.training_cutoff == datetime.fromtimestamp(info.valid_start, UTC)
    assert package.training_cutoff == datetime.fromtimestamp(info.test_start, UTC)
    assert int(fs.interactions("train").ts.max()) < info.valid_start, (
        "every event the selection model saw is before its cut-off"
    )
    train = fs.interactions("train")
    expected = np.bincount(train.item_idx, weights=train.weight, minlength=fs.n_items)
    np.testing.assert_allclose(selection.model.item_popularity, expected, rtol=1e-6)


def test_a_new_family_is_validated_by_its_config_class(spy_family: None) -> None:
    train = TrainParams.model_validate({"families": ["spy", "popularity"], "spy": {"boost": 3.0}})
    assert train.config("spy") == SpyConfig(boost=3.0)
    assert train.family_params("spy") == {"boost": 3.0}
    assert train.config("popularity") == models.config_class("popularity")()
    with pytest.raises(ValidationError) as info:
        TrainParams.model_validate({"families": ["spy"], "spy": {"boost": 0}})
    assert [(e["loc"], e["msg"]) for e in info.value.errors()] == [
        (("spy", "boost"), "Input should be greater than 0")
    ]


@pytest.mark.parametrize(
    ("train", "message"),
    [
        (
            {"families": ["als", "nope"]},
            r"train\.families\.1: unknown model family 'nope'; known families: als",
        ),
        ({"families": ["als", "als"]}, r"train\.families: lists 'als' more than once"),
        ({"families": []}, r"train\.families: is empty"),
        ({"nope": {}}, r"train\.nope: not a model family"),
        ({"als": {"factors": 0}}, r"train\.als\.factors: Input should be greater than or equal to 1"),
        ({"itemknn": {"neighbors": 5}}, r"train\.itemknn\.neighbors: Extra inputs are not permitted"),
    ],
)
def test_params_yaml_train_section_is_checked_with_clear_messages(
    tmp_path: Path, train: dict[str, Any], message: str
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"train": train}), encoding="utf-8")
    with pytest.raises(ParamsError, match=message):
        load_params(path)


def test_repository_params_match_the_family_configs() -> None:
    """params.yaml's sections are the families' configs: every written value lands in the config."""
    raw = yaml.safe_load(PARAMS_FILE.read_text(encoding="utf-8"))
    params = load_params(PARAMS_FILE)
    for family in params.train.families:
        written = raw["train"].get(family) or {}
        config = params.train.config(family)
        assert isinstance(config, models.config_class(family))
        assert {k: v for k, v in config.model_dump().items() if k in written} == written


# ------------------------------------------------------------------------------------------- the step


def test_run_train_writes_two_pure_packages_and_a_side_record(recops_settings: Settings) -> None:
    settings = recops_settings
    fs = write_features_for(settings)
    params = load_params(PARAMS_FILE)
    ctx = StepContext(settings, params, pipeline_run_id="dag-run-1")

    result = run_train(ctx, "popularity")
    out = model_dir(settings, "popularity")
    assert sorted(p.name for p in out.iterdir()) == [PACKAGE_DIR, SELECTION_DIR], "no run record inside"
    assert set(result.outputs) == {"package", "selection", "model_uri"}
    assert result.outputs["package"].endswith("artifacts/models/popularity/package")
    assert set(result.metrics) == {"fit_seconds", "selection_fit_seconds"}
    assert json.loads(json.dumps(result.to_dict())) == result.to_dict()

    package = ModelPackage.load(out / PACKAGE_DIR)
    selection = ModelPackage.load(out / SELECTION_DIR)
    assert package.training_cutoff == datetime.fromtimestamp(fs.split_info.test_start, UTC)
    assert selection.training_cutoff == datetime.fromtimestamp(fs.split_info.valid_start, UTC)
    meta = json.loads((out / PACKAGE_DIR / "package.json").read_text())
    assert "lineage" not in meta and "params_hash" not in meta

    record = json.loads(record_path(settings, "popularity").read_text())
    assert record["run_id"] == result.run_ids["model"]
    assert record["package_digest"] == package_digest(out / PACKAGE_DIR)
    assert record["model_uri"] == result.outputs["model_uri"]
    run = mlflow_client(settings).get_run(record["run_id"])
    assert run.data.tags[TAG_PACKAGE_DIGEST] == record["package_digest"]
    assert run.data.tags["mlflow.parentRunId"] == record["parent_run_id"]
    assert {"fit_seconds", "selection_fit_seconds"} <= set(run.data.metrics)
    assert read_train_record(settings, "popularity", out / PACKAGE_DIR) == record

    # A forced rerun on the same inputs: the same bytes, a new run named by the side file.
    before = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    again = run_train(ctx, "popularity")
    after = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    assert after == before
    assert again.run_ids["model"] != result.run_ids["model"]
    assert read_train_record(settings, "popularity", out / PACKAGE_DIR)["run_id"] == again.run_ids["model"]


def test_run_train_logs_what_validation_changed_for_the_refit(
    recops_settings: Settings, spy_family: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_features_for(recops_settings)
    params = spy_params(boost=2.0)
    monkeypatch.setattr(SpyRecommender, "refit_config", lambda self: SpyConfig(boost=5.0))
    result = run_train(StepContext(recops_settings, params), "spy")
    package = ModelPackage.load(model_dir(recops_settings, "spy") / PACKAGE_DIR)
    assert isinstance(package.model.config, SpyConfig) and package.model.config.boost == 5.0
    run = mlflow_client(recops_settings).get_run(result.run_ids["model"])
    assert run.data.params["hp.boost"] == "2.0", "hp.* stays the params.yaml setting"
    assert run.data.params["refit.boost"] == "5.0", "the refit's own setting is logged beside it"


def test_read_train_record_finds_the_run_of_a_restored_package(
    recops_settings: Settings, tmp_path: Path
) -> None:
    """DVC may restore an older package from its run cache: the side file then names another run."""
    settings = recops_settings
    write_features_for(settings)
    params = load_params(PARAMS_FILE)
    ctx = StepContext(settings, params)
    first = run_train(ctx, "recent_popularity")
    out = model_dir(settings, "recent_popularity")
    saved = tmp_path / "first-package"
    shutil.copytree(out / PACKAGE_DIR, saved)

    other = params.model_copy(
        update={"train": TrainParams.model_validate({"recent_popularity": {"half_life_days": 1.0}})}
    )
    second = run_train(StepContext(settings, other), "recent_popularity")
    assert (
        read_train_record(settings, "recent_popularity", out / PACKAGE_DIR)["run_id"]
        == second.run_ids["model"]
    )

    shutil.rmtree(out / PACKAGE_DIR)
    shutil.copytree(saved, out / PACKAGE_DIR)  # what `dvc repro` does when the params are set back
    restored = read_train_record(settings, "recent_popularity", out / PACKAGE_DIR)
    assert restored["run_id"] == first.run_ids["model"]
    assert restored["model_uri"] == first.outputs["model_uri"]
    assert restored["package_digest"] == package_digest(saved)

    record_path(settings, "recent_popularity").unlink()
    assert (
        read_train_record(settings, "recent_popularity", out / PACKAGE_DIR)["run_id"]
        == first.run_ids["model"]
    )

    (out / PACKAGE_DIR / "package.json").write_text("{}\n")  # a package no run produced
    with pytest.raises(RecopsError, match="no MLflow run of 'recent_popularity' produced the package"):
        read_train_record(settings, "recent_popularity", out / PACKAGE_DIR)
    with pytest.raises(RecopsError, match="no model package folder"):
        read_train_record(settings, "recent_popularity", tmp_path / "missing")


def test_run_train_refuses_a_family_not_in_params(recops_settings: Settings) -> None:
    params = load_params(PARAMS_FILE)
    params = params.model_copy(update={"train": TrainParams.model_validate({"families": ["popularity"]})})
    with pytest.raises(RecopsError, match=r"not listed in params\.yaml train\.families"):
        run_train(StepContext(recops_settings, params), "als")


@pytest.mark.parametrize("family", ["itemknn", "als"])
def test_two_fits_of_the_feature_set_save_the_same_bytes(
    recops_settings: Settings, tmp_path: Path, family: str
) -> None:
    fs = write_features_for(recops_settings)
    params = load_params(PARAMS_FILE)
    for name, threads in (("a", 1), ("b", 2)):
        model = fit_family(family, fs, params, "train_valid", FitContext(seed=params.seed, threads=threads))
        build_package(model, fs).save(tmp_path / name)
    assert package_digest(tmp_path / "a") == package_digest(tmp_path / "b")


# ------------------------------------------------------------------------------------------- torch families


def test_item_features_are_the_item_tables_codes(recops_settings: Settings) -> None:
    fs = write_features_for(recops_settings)
    features = item_features(fs)
    assert sorted(features) == ["brand_idx", "category_idx", "price_bucket"]
    for name, codes in features.items():
        assert codes.shape == (fs.n_items,)
        np.testing.assert_array_equal(codes, fs.item_table[name].to_numpy())


def test_only_torch_families_look_for_a_gpu() -> None:
    import torch

    assert training_device("als") == "cpu"
    assert training_device("sasrec") == ("cuda" if torch.cuda.is_available() else "cpu")


def test_training_curve_plots_loss_and_validation_ndcg_per_fit() -> None:
    epochs = {
        "selection_train": [
            (1, {"loss": 2.0, "valid_ndcg_at_10": 0.1}),
            (2, {"loss": 1.5, "valid_ndcg_at_10": 0.2}),
        ],
        "train": [(1, {"loss": 2.1}), (2, {"loss": 1.4})],
    }
    loss_axis, ndcg_axis = training_curve_figure("sasrec", epochs).axes
    assert len(loss_axis.lines) == 2, "one loss curve per fit"
    assert len(ndcg_axis.lines) == 1, "only the selection fit has validation data"
    assert list(ndcg_axis.lines[0].get_ydata()) == [0.1, 0.2]


def test_the_fit_context_carries_the_evaluations_seen_item_filter_to_early_stopping() -> None:
    params = load_params(PARAMS_FILE)
    for exclude_seen in (False, True):
        evaluate = params.evaluate.model_copy(update={"exclude_seen": exclude_seen})
        ctx = fit_context(params.model_copy(update={"evaluate": evaluate}), threads=1)
        assert ctx.exclude_seen is exclude_seen and ctx.seed == params.seed and ctx.threads == 1
