"""A model package: everything needed to turn a shopper's history into ranked item ids.

Folder layout (JSON, Parquet and safetensors only; nothing is ever unpickled)::

    package.json    format_version, family, n_items, catalog_sha256, training_cutoff
    model/          config.json + weights.safetensors (see models.base.Recommender.save)
    items.parquet   one row per item index: item_id, category, brand, price, in_stock

The same folder is what DVC stores per family, what MLflow stores for a model version, what the scorer
downloads and what ``recops recommend`` prints from. Its bytes are a pure function of the fitted model, the
item table and the training cut-off (JSON with sorted keys, no timestamps, no run ids, no commits): lineage
lives in MLflow tags, so a forced rerun on the same inputs writes the same files and
:func:`package_digest` recognises them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
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


def file_checksums(path: Path) -> dict[str, str]:
    """sha256 (hex) of every file under the folder ``path``, keyed by its relative POSIX path."""
    if not path.is_dir():
        raise ModelLoadError(f"no model package folder at {path}")
    return {
        file.relative_to(path).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix())
        if file.is_file()
    }


def digest_of(checksums: dict[str, str]) -> str:
    """The package digest of a ``{relative path: sha256}`` manifest (see :func:`package_digest`)."""
    digest = hashlib.sha256()
    for rel in sorted(checksums):
        digest.update(f"{rel}\0{checksums[rel]}\n".encode())
    return digest.hexdigest()


def package_digest(path: Path) -> str:
    """sha256 over every file of the package folder ``path`` (relative path and content, sorted by path).

    Two folders have the same digest exactly when they hold the same files with the same bytes; it is
    ``digest_of(file_checksums(path))``, so a per-file manifest can be checked against it.
    """
    return digest_of(file_checksums(path))


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _parse_cutoff(value: Any, where: Path) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise ModelLoadError(f"{where}: training_cutoff {value!r} is not an ISO-8601 date-time") from exc
    if moment.tzinfo is None:
        raise ModelLoadError(f"{where}: training_cutoff {value!r} has no time zone")
    return moment.astimezone(UTC)


@dataclass
class ModelPackage:
    """A fitted recommender plus its item index and catalogue snapshot.

    Attributes:
        model: the fitted recommender.
        items: one row per item index (:data:`ITEM_COLUMNS`).
        meta: what ``package.json`` holds (filled by :meth:`save` and :meth:`load`).
        training_cutoff: the first instant (UTC) *not* in the training data: every event the model learned
            from is earlier. None for packages saved before it was recorded.
    """

    model: Recommender
    items: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)
    training_cutoff: datetime | None = None

    def __post_init__(self) -> None:
        if self.training_cutoff is not None:
            if self.training_cutoff.tzinfo is None:
                raise ValueError(
                    f"training_cutoff must be timezone-aware (UTC), got {self.training_cutoff!r}"
                )
            self.training_cutoff = self.training_cutoff.astimezone(UTC)
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

    def save(self, path: Path) -> None:
        """Write the package folder (created if needed); the same package always gives the same bytes."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / MODEL_DIR)
        table = pa.Table.from_pandas(self.items, preserve_index=False)
        pq.write_table(table, path / ITEMS_FILE, compression="snappy")
        self.meta = {
            "format_version": PACKAGE_FORMAT_VERSION,
            "family": self.family,
            "n_items": self.model.n_items,
            "catalog_sha256": catalog_sha256(self.items),
        }
        if self.training_cutoff is not None:
            self.meta["training_cutoff"] = _iso_utc(self.training_cutoff)
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
        cutoff = _parse_cutoff(meta.get("training_cutoff"), path / PACKAGE_FILE)
        try:
            package = cls(model=model, items=items, meta=meta, training_cutoff=cutoff)
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
