"""MLflow pyfunc wrapper around a :class:`models.package.ModelPackage` ("models from code").

MLflow stores this file, not a pickled object, and the package folder as the artifact ``package``; loading
goes through :meth:`ModelPackage.load` (JSON, Parquet, safetensors). The scorer does not use pyfunc at all
(see ``registry.loader``); this wrapper exists so ``mlflow models serve`` and the MLflow UI work.

Input: a DataFrame with a ``history`` column (list of item ids, oldest first). Params: ``k`` (default 10),
``exclude_seen`` (default False). Output: ``item_ids`` and ``scores`` lists per row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from models.package import ModelPackage


class RecopsRecommenderModel(PythonModel):
    """Top-K recommendations from a model package."""

    def load_context(self, context: PythonModelContext) -> None:
        self.package = ModelPackage.load(Path(context.artifacts["package"]))

    def predict(
        self, context: PythonModelContext, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        params = params or {}
        k = int(params.get("k", 10))
        exclude_seen = bool(params.get("exclude_seen", False))
        histories = [[str(i) for i in (h if h is not None else [])] for h in model_input["history"]]
        recs = self.package.recommend_ids(histories, k, exclude_seen=exclude_seen)
        return pd.DataFrame(
            {"item_ids": [[i for i, _ in r] for r in recs], "scores": [[s for _, s in r] for r in recs]}
        )


mlflow.models.set_model(RecopsRecommenderModel())
