"""One model version ready to serve: the package plus every per-item array a request needs, built once.

A :class:`Serving` is immutable and built (and smoke-tested) before it is swapped in, so the request path
never touches pandas: item ids, categories, brands, prices and stock are plain arrays and lists indexed by
the package's item index, and the cold-start ranking is precomputed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from models.package import ModelPackage
    from registry.loader import LoadedModel

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float32]

#: Weight of the all-time popularity term that breaks score ties (as ``Recommender.recommend`` does).
TIE_BREAK = 1e-6


class SmokeTestError(RuntimeError):
    """A freshly loaded version could not produce a sane recommendation: it is refused."""


@dataclass(frozen=True)
class Serving:
    """A loaded model version and its precomputed arrays (never mutated after :func:`build_serving`)."""

    name: str
    version: int
    alias: str
    family: str
    checksum: str
    stale: bool
    package: ModelPackage
    item_ids: tuple[str, ...]
    item_index: Mapping[str, int]
    categories: tuple[str, ...]  # per item
    category_codes: IntArray  # per item: the position of its category in category_items
    brands: tuple[str, ...]
    prices: tuple[float | None, ...]
    in_stock: NDArray[np.bool_]
    out_of_stock: IntArray  # ascending indices of items the package marks out of stock
    category_items: Mapping[str, IntArray]  # category -> its item indices, ascending
    tie_break: FloatArray  # TIE_BREAK * normalised all-time popularity
    cold_scores: FloatArray  # normalised cold-start scores + tie_break
    loaded_from: str = field(default="registry")

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def encode(self, item_ids: list[str] | tuple[str, ...]) -> IntArray:
        """Known item ids -> indices, in order (unknown ones dropped)."""
        known = [i for i in map(self.item_index.get, item_ids) if i is not None]
        return np.array(known, dtype=np.int64)

    def encode_set(self, item_ids: Iterable[str]) -> IntArray:
        """Known item ids -> their indices, ascending and without repeats (unknown ones dropped)."""
        index = self.item_index
        return np.array(sorted({i for i in map(index.get, item_ids) if i is not None}), dtype=np.int64)

    def score_many(self, histories: list[IntArray]) -> FloatArray:
        """:meth:`score` of several non-empty histories at once, shape ``(len(histories), n_items)``: one
        product over the item factors for all of them instead of one per shopper."""
        raw = self.package.model.score(histories)
        scores: FloatArray = np.add(raw, self.tie_break, dtype=np.float32)
        return scores

    def score(self, history: IntArray) -> FloatArray:
        """Scores of every item for one history (cold histories get the precomputed cold scores)."""
        if len(history) == 0:
            return self.cold_scores.copy()
        raw = self.package.model.score([history])
        # one pass that also copies: the family's array is never written to (it may be cached state)
        scores: FloatArray = np.add(raw[0], self.tie_break, dtype=np.float32)
        return scores


def _as_text(values: list[Any]) -> tuple[str, ...]:
    return tuple("" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values)


def _as_price(values: list[Any]) -> tuple[float | None, ...]:
    out: list[float | None] = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(number if np.isfinite(number) else None)
    return tuple(out)


def build_serving(loaded: LoadedModel, alias: str) -> Serving:
    """Precompute the arrays of ``loaded`` (pandas is used here, at swap time, never per request)."""
    package = loaded.package
    items = package.items
    model = package.model
    item_ids = tuple(str(i) for i in items["item_id"].tolist())
    categories = _as_text(items["category"].tolist())
    codes: dict[str, list[int]] = {}
    for index, category in enumerate(categories):
        codes.setdefault(category, []).append(index)
    popularity = np.asarray(model.item_popularity, dtype=np.float32)
    tie_break = (TIE_BREAK * popularity / max(float(popularity.max(initial=0.0)), 1.0)).astype(np.float32)
    cold = np.asarray(model.cold_scores(), dtype=np.float32)
    cold = cold / max(float(np.abs(cold).max(initial=0.0)), 1e-12) + tie_break
    in_stock = np.asarray(items["in_stock"].fillna(False).to_numpy(dtype=bool), dtype=np.bool_)
    category_codes = np.empty(len(categories), dtype=np.int64)
    for code, members in enumerate(codes.values()):
        category_codes[members] = code
    for frozen in (in_stock, tie_break, category_codes):
        frozen.setflags(write=False)
    cold.setflags(write=False)
    return Serving(
        name=loaded.name,
        version=loaded.version,
        alias=alias,
        family=package.family,
        checksum=loaded.checksum,
        stale=loaded.stale,
        package=package,
        item_ids=item_ids,
        item_index=MappingProxyType({item: i for i, item in enumerate(item_ids)}),
        categories=categories,
        category_codes=category_codes,
        brands=_as_text(items["brand"].tolist()),
        prices=_as_price(items["price"].tolist()),
        in_stock=in_stock,
        out_of_stock=np.flatnonzero(~in_stock).astype(np.int64),
        category_items=MappingProxyType({c: np.asarray(v, dtype=np.int64) for c, v in codes.items()}),
        tie_break=tie_break,
        cold_scores=cold,
        loaded_from="cache" if loaded.from_cache else "registry",
    )


def smoke_test(serving: Serving) -> None:
    """Score a cold shopper and a shopper with a short history; raise :class:`SmokeTestError` if either
    fails or gives scores of the wrong shape or with NaN (the version is then refused)."""
    if serving.n_items == 0:
        raise SmokeTestError(f"{serving.name} v{serving.version}: the package has no items")
    histories = (np.zeros(0, dtype=np.int64), np.arange(min(3, serving.n_items), dtype=np.int64))
    for history in histories:
        try:
            scores = serving.score(history)
        except Exception as exc:  # any failure of the model code refuses the version
            raise SmokeTestError(
                f"{serving.name} v{serving.version}: smoke prediction raised {exc!r}"
            ) from exc
        if scores.shape != (serving.n_items,) or bool(np.isnan(scores).any()):
            raise SmokeTestError(
                f"{serving.name} v{serving.version}: smoke prediction gave shape {scores.shape} "
                f"or NaN scores (expected ({serving.n_items},) finite)"
            )
