"""Train one model family on the current features, save its package and track it in MLflow.

``fit_family`` is pure (features + params in, fitted model out); ``run_train`` does the I/O: it reads the
features, writes ``artifacts/models/<family>/package`` (DVC output) and logs a child run under the pipeline's
parent run with hyper-parameters, per-epoch metrics and the model as a pyfunc.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from core.settings import Settings
from pipelines.params import ModelFamily, Params
from pipelines.steps import StepContext, StepResult, project_relative

if TYPE_CHECKING:
    from models.base import EpochCallback, Recommender
    from models.package import ModelPackage
    from pipelines.features import FeatureSet

log = logging.getLogger(__name__)

PACKAGE_DIR = "package"
RUN_FILE = "mlflow_run.json"
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


def model_hyperparameters(family: ModelFamily, params: Params) -> dict[str, Any]:
    """Constructor arguments of ``family`` from params.yaml (plus the global seed where it applies)."""
    hyper = dict(params.train.family_params(family))
    if family == "als":
        hyper["random_state"] = params.seed
    return hyper


def fit_family(
    family: ModelFamily, fs: FeatureSet, params: Params, on_epoch: EpochCallback | None = None
) -> Recommender:
    """Fit ``family`` on everything before the test period (train + valid)."""
    from models import create_model

    model = create_model(family, model_hyperparameters(family, params))
    return model.fit(fs.interactions("train_valid"), on_epoch=on_epoch)


def build_package(model: Recommender, fs: FeatureSet) -> ModelPackage:
    """Wrap a fitted model with the item index and catalogue snapshot it was trained on."""
    from models.package import ITEM_COLUMNS, ModelPackage

    items = fs.item_table.loc[:, list(ITEM_COLUMNS)].reset_index(drop=True)
    return ModelPackage(model=model, items=items)


def model_dir(settings: Settings, family: str) -> Path:
    return settings.artifacts_dir / "models" / family


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


def run_train(ctx: StepContext, family_name: str) -> StepResult:
    """The ``train`` DVC stage for one family."""
    import mlflow
    import pandas as pd

    from pipelines.features import read_features
    from pipelines.lineage import lineage_tags
    from pipelines.tracking import configure_mlflow, get_or_create_parent

    settings, params = ctx.settings, ctx.params
    if family_name not in params.train.families:
        raise RecopsError(
            f"family {family_name!r} is not listed in params.yaml train.families {params.train.families}"
        )
    family: ModelFamily = family_name  # narrowed by the membership check above
    fs = read_features(settings.artifacts_dir / "features")
    out = model_dir(settings, family)
    lineage = lineage_tags(settings.project_dir, params.digest())
    client = configure_mlflow(settings)
    parent = get_or_create_parent(client, settings, lineage, ctx.pipeline_run_id)

    from pipelines.tracking import child_run

    with child_run(client, settings, parent, family, lineage) as run:
        hyper = model_hyperparameters(family, params)
        mlflow.log_params({"family": family, **{f"hp.{k}": v for k, v in hyper.items()}})
        mlflow.log_params(
            {"train_interactions": len(fs.interactions("train_valid")), "n_items": len(fs.item_ids)}
        )

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            mlflow.log_metrics({f"train_{k}": float(v) for k, v in metrics.items()}, step=epoch)

        started = time.perf_counter()
        model = fit_family(family, fs, params, on_epoch=on_epoch)
        fit_seconds = time.perf_counter() - started
        mlflow.log_metric("fit_seconds", fit_seconds)
        package = build_package(model, fs)
        package_dir = out / PACKAGE_DIR
        if out.exists():
            import shutil

            shutil.rmtree(out)
        package.save(package_dir, lineage={**lineage, "pipeline_run_id": parent}, params_hash=params.digest())
        example = pd.DataFrame({"history": [[str(fs.item_ids[0])]]})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts={PACKAGE_DIR: str(package_dir)},
            signature=pyfunc_signature(),
            input_example=(example, {"k": 10}),
            pip_requirements=PIP_REQUIREMENTS,
        )
        mlflow.set_tags(
            {"recops.model_uri": info.model_uri, "recops.package_path": f"artifacts/{PACKAGE_DIR}"}
        )
        record = {
            "run_id": run.info.run_id,
            "parent_run_id": parent,
            "model_uri": info.model_uri,
            "model_id": getattr(info, "model_id", ""),
            "family": family,
        }
    (out / RUN_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    log.info("trained %s in %.1fs -> %s (run %s)", family, fit_seconds, out, record["run_id"])
    return StepResult(
        step=f"train@{family}",
        outputs={"model": project_relative(out, settings), "model_uri": record["model_uri"]},
        run_ids={"parent": parent, "model": record["run_id"]},
        metrics={"fit_seconds": fit_seconds},
    )
