"""A model package: everything needed to turn a shopper's history into ranked item ids.

Folder layout (JSON, Parquet and safetensors only; nothing is ever unpickled)::

    package.json    format_version, family, n_items, catalog_sha256, params_hash, lineage
    model/          config.json + weights.safetensors (see models.base.Recommender.save)
    items.parquet   one row per item index: item_id, category, brand, price, in_stock

The same folder is what MLflow stores for a model version, what the scorer downloads and what
``recops recommend`` prints from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.base import ModelLoadError, Recommender

PACKAGE_FILE = "package.json"
MODEL_DIR = "model"
ITEMS_FILE = "items.parquet"
PACKAGE_FORMAT_VERSION = 1
ITEM_COLUMNS = ("item_id", "category", "brand", "price", "in_stock")


def catalog_sha256(items: pd.DataFrame) -> str:
    """Content hash of the item table (order matters: it is the model's item index)."""
    canonical = items.loc[:, list(ITEM_COLUMNS)].astype(str).to_csv(index=False, lineterminator="\n")
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass
class ModelPackage:
    """A fitted recommender plus its item index and catalogue snapshot."""

    model: Recommender
    items: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [c for c in ITEM_COLUMNS if c not in self.items.columns]
        if missing:
            raise ValueError(f"item table lacks column(s): {', '.join(missing)}")
        if len(self.items) != self.model.n_items:
            raise ValueError(
                f"item table has {len(self.items)} rows but the model knows {self.model.n_items} items"
            )
        self.items = self.items.loc[:, list(ITEM_COLUMNS)].reset_index(drop=True)
        self.item_index: dict[str, int] = {str(item): i for i, item in enumerate(self.items["item_id"])}
        self.in_stock_mask: np.ndarray = self.items["in_stock"].to_numpy(dtype=bool)

    @property
    def family(self) -> str:
        return self.model.family

    def save(self, path: Path, lineage: dict[str, str] | None = None, params_hash: str = "") -> None:
        """Write the package folder (created if needed)."""
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / MODEL_DIR)
        self.items.to_parquet(path / ITEMS_FILE, index=False)
        self.meta = {
            "format_version": PACKAGE_FORMAT_VERSION,
            "family": self.family,
            "n_items": self.model.n_items,
            "catalog_sha256": catalog_sha256(self.items),
            "params_hash": params_hash or str(self.meta.get("params_hash", "")),
            "lineage": dict(lineage or self.meta.get("lineage", {})),
        }
        (path / PACKAGE_FILE).write_text(
            json.dumps(self.meta, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    @classmethod
    def load(cls, path: Path) -> ModelPackage:
        """Load and verify a package folder; any problem raises :class:`ModelLoadError`."""
        from models import load_model

        try:
            meta = json.loads((path / PACKAGE_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"no {PACKAGE_FILE} in {path}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path / PACKAGE_FILE} is not valid JSON: {exc}") from exc
        if not isinstance(meta, dict) or meta.get("format_version") != PACKAGE_FORMAT_VERSION:
            raise ModelLoadError(f"{path / PACKAGE_FILE}: unsupported package format")
        model = load_model(path / MODEL_DIR)
        try:
            items = pd.read_parquet(path / ITEMS_FILE)
        except Exception as exc:  # pyarrow raises several types for missing/corrupt files
            raise ModelLoadError(f"cannot read {path / ITEMS_FILE}: {exc}") from exc
        if meta.get("family") != model.family:
            raise ModelLoadError(f"{path}: package says {meta.get('family')!r}, model is {model.family!r}")
        try:
            package = cls(model=model, items=items, meta=meta)
        except ValueError as exc:
            raise ModelLoadError(f"{path}: {exc}") from exc
        expected = meta.get("catalog_sha256")
        if expected and catalog_sha256(package.items) != expected:
            raise ModelLoadError(f"{path}: item table does not match its recorded checksum")
        return package

    def encode_history(self, item_ids: Sequence[str]) -> np.ndarray:
        """Item ids -> this package's indices, in order; items it does not know are dropped."""
        idx = [self.item_index[i] for i in item_ids if i in self.item_index]
        return np.asarray(idx, dtype=np.int64)

    def recommend_ids(
        self,
        histories: Sequence[Sequence[str]],
        k: int,
        exclude_seen: bool = False,
        in_stock_only: bool = True,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` (item_id, score) per history of item ids; unknown items in a history are ignored."""
        encoded = [self.encode_history(h) for h in histories]
        ids, scores = self.model.recommend(
            encoded,
            k,
            exclude=encoded if exclude_seen else None,
            item_mask=self.in_stock_mask if in_stock_only else None,
        )
        item_ids = self.items["item_id"].astype(str).to_numpy()
        out: list[list[tuple[str, float]]] = []
        for row_ids, row_scores in zip(ids, scores, strict=True):
            keep = row_ids >= 0
            out.append(
                [(str(item_ids[i]), float(s)) for i, s in zip(row_ids[keep], row_scores[keep], strict=True)]
            )
        return out
