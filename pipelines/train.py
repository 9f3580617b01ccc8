"""Train one model family on the current features, save its two packages and track them in MLflow.

Honest model selection needs two fits per family (both DVC outputs under ``artifacts/models/<family>/``):

* ``selection/``: fitted on the train split only (the validation split is passed for early stopping); the
  evaluate stage scores it on validation to choose hyper-parameters and the family to register;
* ``package/``: refitted on train + validation, i.e. everything before the test period; what is registered,
  served and reported on test.

Each package records its ``training_cutoff`` (the first instant not in its training data: the validation
start for ``selection``, the test start for ``package``).

The step follows the contract of :mod:`pipelines.steps`: a pure core (:func:`fit_family`,
:func:`build_package`), then the DVC outputs, then tracking. The packages are a pure function of data, code
and params: run ids and lineage go to the MLflow child run's tags and to a non-cached side file
``<runtime>/pipeline/train-<family>.json`` (run id, parent run id, model URI, package digest) that
:func:`read_train_record` reads back, falling back to MLflow when DVC restored a package from its cache.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import ModelFamily, Params
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from models.base import Device, EpochCallback, FitContext, IntArray, Recommender
    from models.package import ModelPackage
    from pipelines.features import FeatureSet

log = logging.getLogger(__name__)

PACKAGE_DIR = "package"
SELECTION_DIR = "selection"
#: Tag on the child run: :func:`models.package.package_digest` of its ``package/`` folder.
TAG_PACKAGE_DIGEST = "recops.package_digest"
TAG_SELECTION_DIGEST = "recops.selection_digest"
TAG_MODEL_URI = "recops.model_uri"
TAG_MODEL_ID = "recops.model_id"
TAG_TRAINING_CUTOFF = "recops.training_cutoff"
PYFUNC_CODE = Path(__file__).resolve().parent.parent / "models" / "pyfunc.py"
PIP_REQUIREMENTS = [
    "mlflow==3.17.2",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "pyarrow==25.0.0",
    "scipy",
    "safetensors==0.8.0",
    "implicit==0.7.3",
]

#: Added to the logged model's requirements for families that run on torch.
TORCH_REQUIREMENTS = ["torch==2.13.0"]

#: Which events a fit sees: ``train`` (the selection fit) or ``train_valid`` (the package refit).
FitSplit = Literal["train", "train_valid"]


# ------------------------------------------------------------------------------------------- pure core


def model_hyperparameters(family: ModelFamily, params: Params) -> dict[str, Any]:
    """The ``train.<family>`` config as JSON values (what MLflow logs as ``hp.*``)."""
    return params.train.family_params(family)


def fit_context(params: Params, threads: int = 0, device: Device = "cpu") -> FitContext:
    """Seed from params.yaml, ``device``, ``threads`` worker threads (0: every available core) and the
    evaluation's seen-item filter (early stopping scores as the evaluation does)."""
    from models.base import FitContext

    return FitContext(
        seed=params.seed, device=device, threads=threads, exclude_seen=params.evaluate.exclude_seen
    )


def training_device(family: ModelFamily) -> Device:
    """``cuda`` for a torch family when torch sees a GPU, else ``cpu`` (other families never import torch)."""
    from models import family_class

    if not family_class(family).uses_torch:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def item_features(fs: FeatureSet) -> dict[str, IntArray]:
    """The item table's categorical codes (-1 = unknown) that families may embed (see ``Interactions``)."""
    import numpy as np

    columns = [c for c in ("category_idx", "brand_idx", "price_bucket") if c in fs.item_table.columns]
    return {c: fs.item_table[c].to_numpy(dtype=np.int64) for c in columns}


def training_cutoff(fs: FeatureSet, fitted_on: FitSplit) -> datetime:
    """The first instant not in the ``fitted_on`` data: validation start (``train``), else test start."""
    seconds = fs.split_info.valid_start if fitted_on == "train" else fs.split_info.test_start
    return datetime.fromtimestamp(seconds, tz=UTC)


def fit_family(
    family: ModelFamily,
    fs: FeatureSet,
    params: Params,
    fitted_on: FitSplit = "train_valid",
    ctx: FitContext | None = None,
    on_epoch: EpochCallback | None = None,
    selected: Recommender | None = None,
) -> Recommender:
    """Fit ``family`` with its params.yaml config.

    ``fitted_on="train"`` fits on the train split and hands the validation split to the family for early
    stopping; ``"train_valid"`` fits on everything before the test period (no validation data left), with
    what validation chose for ``selected`` (the selection fit: e.g. its best epoch as ``max_epochs``).
    """
    from dataclasses import replace

    from models import create_model

    config = params.train.config(family) if selected is None else selected.refit_config()
    model = create_model(family, config)
    ctx = ctx or fit_context(params)
    features = item_features(fs)
    if fitted_on == "train":
        train = replace(fs.interactions("train"), item_features=features)
        return model.fit(train, fs.interactions("valid"), ctx, on_epoch)
    return model.fit(replace(fs.interactions("train_valid"), item_features=features), None, ctx, on_epoch)


def build_package(model: Recommender, fs: FeatureSet, fitted_on: FitSplit = "train_valid") -> ModelPackage:
    """Wrap a fitted model with the item index, the catalogue snapshot and its training cut-off."""
    from models.package import ITEM_COLUMNS, ModelPackage

    items = fs.item_table.loc[:, list(ITEM_COLUMNS)].reset_index(drop=True)
    return ModelPackage(model=model, items=items, training_cutoff=training_cutoff(fs, fitted_on))


# ------------------------------------------------------------------------------------------- paths


def model_dir(settings: Settings, family: str) -> Path:
    """``artifacts/models/<family>``: the DVC output of ``train@<family>``."""
    return settings.artifacts_dir / "models" / family


def record_path(settings: Settings, family: str) -> Path:
    """The non-cached side file naming the MLflow run of the family's last training."""
    return settings.runtime_dir / "pipeline" / f"train-{family}.json"


def pyfunc_signature() -> Any:
    """Signature of the logged pyfunc: a history of item ids in, ranked ids and scores out, ``k`` as param."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema
    from mlflow.types.schema import Array

    return ModelSignature(
        inputs=Schema([ColSpec(Array("string"), "history")]),
        outputs=Schema([ColSpec(Array("string"), "item_ids"), ColSpec(Array("double"), "scores")]),
        params=ParamSchema([ParamSpec("k", "long", 10), ParamSpec("exclude_seen", "boolean", False)]),
    )


# ------------------------------------------------------------------------------------------- the step


def run_train(ctx: StepContext, family_name: str) -> StepResult:
    """The ``train@<family>`` DVC stage: fit twice, write both packages, log one MLflow child run."""
    from models.threads import limit_threads
    from pipelines.features import read_features

    settings, params = ctx.settings, ctx.params
    if family_name not in params.train.families:
        raise RecopsError(
            f"family {family_name!r} is not listed in params.yaml train.families {params.train.families}"
        )
    family: ModelFamily = family_name
    threads = limit_threads()  # once per process: one BLAS thread, the cores for the family's own workers
    fit_ctx = fit_context(params, threads, training_device(family))
    fs = read_features(settings.artifacts_dir / "features")

    # Pure core: the two fits (per-epoch metrics are kept and logged with the run below).
    epochs: dict[str, list[tuple[int, dict[str, float]]]] = {"selection_train": [], "train": []}
    started = time.perf_counter()
    selection = fit_family(
        family, fs, params, "train", fit_ctx, lambda e, m: epochs["selection_train"].append((e, m))
    )
    selection_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model = fit_family(
        family, fs, params, "train_valid", fit_ctx, lambda e, m: epochs["train"].append((e, m)), selection
    )
    fit_seconds = time.perf_counter() - started
    from models.sequential.distributed import is_primary_process

    if not is_primary_process():  # a torchrun rank other than 0: rank 0 writes and tracks
        return StepResult(step=f"train@{family}", metrics={"fit_seconds": fit_seconds})

    # I/O: both packages replace the family's folder at once.
    from models.package import package_digest

    out = model_dir(settings, family)
    staging = out.with_name(f".{out.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    build_package(selection, fs, "train").save(staging / SELECTION_DIR)
    package = build_package(model, fs, "train_valid")
    package.save(staging / PACKAGE_DIR)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    digest = package_digest(out / PACKAGE_DIR)

    # Tracking: one child run with both fits; only package/ is the logged model.
    record = _track(
        ctx,
        family,
        fs,
        out,
        metrics={"fit_seconds": fit_seconds, "selection_fit_seconds": selection_seconds},
        epochs=epochs,
        tags={
            TAG_PACKAGE_DIGEST: digest,
            TAG_SELECTION_DIGEST: package_digest(out / SELECTION_DIR),
            TAG_TRAINING_CUTOFF: str(package.meta.get("training_cutoff", "")),
        },
        threads=threads,
        refit_hyperparameters=model.hyperparameters(),
    )
    _write_json_atomic(record_path(settings, family), record)
    log.info("trained %s in %.1fs (selection %.1fs) -> %s", family, fit_seconds, selection_seconds, out)
    return StepResult(
        step=f"train@{family}",
        outputs={
            "package": project_relative(out / PACKAGE_DIR, settings),
            "selection": project_relative(out / SELECTION_DIR, settings),
            "model_uri": record["model_uri"],
        },
        run_ids={"parent": record["parent_run_id"], "model": record["run_id"]},
        metrics={"fit_seconds": fit_seconds, "selection_fit_seconds": selection_seconds},
        info={"package_digest": digest, "training_cutoff": record["training_cutoff"]},
    )


def _track(
    ctx: StepContext,
    family: str,
    fs: FeatureSet,
    out: Path,
    *,
    metrics: dict[str, float],
    epochs: dict[str, list[tuple[int, dict[str, float]]]],
    tags: dict[str, str],
    threads: int,
    refit_hyperparameters: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Log the child run of ``family`` under the pipeline's parent run; returns the run record.

    ``refit_hyperparameters``: the package refit's config; where validation changed a value (e.g. the best
    epoch as ``max_epochs``) it is logged as ``refit.<name>`` beside ``hp.<name>``.
    """
    import mlflow
    import pandas as pd

    from pipelines.lineage import lineage_tags
    from pipelines.tracking import child_run, configure_mlflow, get_or_create_parent

    settings, params = ctx.settings, ctx.params
    lineage = lineage_tags(settings.project_dir, params.digest())
    client = configure_mlflow(settings)
    parent = get_or_create_parent(client, settings, lineage, ctx.pipeline_run_id)
    with child_run(client, settings, parent, family, lineage) as run:
        hyper = model_hyperparameters(family, params)
        mlflow.log_params({"family": family, **{f"hp.{k}": v for k, v in hyper.items()}})
        refit = refit_hyperparameters or {}
        changed = {f"refit.{k}": v for k, v in refit.items() if k in hyper and hyper[k] != v}
        if changed:
            mlflow.log_params(changed)
        mlflow.log_params(
            {
                "seed": params.seed,
                "threads": threads,
                "train_interactions": len(fs.interactions("train_valid")),
                "selection_interactions": len(fs.interactions("train")),
                "valid_interactions": len(fs.interactions("valid")),
                "n_items": fs.n_items,
            }
        )
        for prefix, history in epochs.items():
            for epoch, values in history:
                mlflow.log_metrics({f"{prefix}_{k}": float(v) for k, v in values.items()}, step=epoch)
        if any(epochs.values()):
            mlflow.log_figure(training_curve_figure(family, epochs), "training_curve.png")
        mlflow.log_metrics(metrics)
        example = pd.DataFrame({"history": [[str(fs.item_ids[0])]]})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={PACKAGE_DIR: str(out / PACKAGE_DIR)},
            signature=pyfunc_signature(),
            input_example=(example, {"k": 10}),
            pip_requirements=PIP_REQUIREMENTS + (TORCH_REQUIREMENTS if _uses_torch(family) else []),
        )
        model_id = str(getattr(info, "model_id", "") or "")
        mlflow.set_tags(
            {
                **tags,
                TAG_MODEL_URI: info.model_uri,
                TAG_MODEL_ID: model_id,
                "recops.package_path": f"artifacts/{PACKAGE_DIR}",
            }
        )
    return {
        "family": family,
        "run_id": run.info.run_id,
        "parent_run_id": parent,
        "model_uri": info.model_uri,
        "model_id": model_id,
        "package_digest": tags[TAG_PACKAGE_DIGEST],
        "training_cutoff": tags[TAG_TRAINING_CUTOFF],
    }


def training_curve_figure(family: str, epochs: dict[str, list[tuple[int, dict[str, float]]]]) -> Any:
    """Per-epoch loss and validation NDCG@10 of both fits as a matplotlib figure (an MLflow artifact)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = ["loss", "valid_ndcg_at_10"]
    fig, axes = plt.subplots(1, len(names), figsize=(10, 3.5))
    for ax, name in zip(axes, names, strict=True):
        for fit, history in epochs.items():
            points = [(epoch, values[name]) for epoch, values in history if name in values]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=fit)
        ax.set_xlabel("epoch")
        ax.set_title(name)
        if ax.has_data():
            ax.legend()
    fig.suptitle(f"{family}: training curve")
    fig.tight_layout()
    plt.close(fig)
    return fig


def _uses_torch(family: str) -> bool:
    from models import family_class

    return family_class(family).uses_torch


# ------------------------------------------------------------------------------------------- records


def read_train_record(settings: Settings, family: str, package_dir: Path) -> dict[str, str]:
    """The MLflow run that produced the package now in ``package_dir``.

    The side file of the family's last training is used when its ``package_digest`` matches the folder on
    disk. Otherwise (no side file, or DVC restored an older package from its run cache) the newest MLflow
    child run of ``family`` tagged with that digest is used.

    Returns:
        ``family``, ``run_id``, ``parent_run_id``, ``model_uri``, ``model_id``, ``package_digest`` and
        ``training_cutoff``.
    Raises:
        RecopsError: no package in ``package_dir``, or no run is known to have produced it.
    """
    from models.base import ModelLoadError
    from models.package import package_digest

    try:
        digest = package_digest(package_dir)
    except ModelLoadError as exc:
        raise RecopsError(f"{exc}: run `recops train --family {family}` (or `dvc repro`)") from exc
    path = record_path(settings, family)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = None
    if isinstance(record, dict) and record.get("package_digest") == digest and record.get("family") == family:
        return {str(k): str(v) for k, v in record.items()}
    return _record_from_mlflow(settings, family, digest, package_dir)


def _record_from_mlflow(settings: Settings, family: str, digest: str, package_dir: Path) -> dict[str, str]:
    from registry.client import mlflow_client
    from registry.tags import TAG_FAMILY

    client = mlflow_client(settings)
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    runs: list[Any] = []
    if experiment is not None:
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{TAG_FAMILY}` = '{family}' and tags.`{TAG_PACKAGE_DIGEST}` = '{digest}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not runs:
        raise RecopsError(
            f"no MLflow run of {family!r} produced the package in {package_dir} (digest {digest[:12]}), "
            f"and {record_path(settings, family)} names another one; retrain it with "
            f"`dvc repro --force --single-item train@{family}`"
        )
    run = runs[0]
    tags = run.data.tags
    return {
        "family": family,
        "run_id": str(run.info.run_id),
        "parent_run_id": str(tags.get("mlflow.parentRunId", "")),
        "model_uri": str(tags.get(TAG_MODEL_URI, "")),
        "model_id": str(tags.get(TAG_MODEL_ID, "")),
        "package_digest": digest,
        "training_cutoff": str(tags.get(TAG_TRAINING_CUTOFF, "")),
    }


def _write_json_atomic(path: Path, payload: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
