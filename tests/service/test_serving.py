"""A serving version's encoders: item ids to indices, in order or as a sorted set."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.package import ModelPackage
from tests.service.conftest import serving_of


def test_encode_keeps_order_and_repeats_and_drops_unknown_ids(package: ModelPackage, tmp_path: Path) -> None:
    serving = serving_of(package, 1, tmp_path)
    ids = serving.item_ids
    encoded = serving.encode([ids[5], "nope", ids[2], ids[5]])
    assert encoded.tolist() == [5, 2, 5] and encoded.dtype == np.int64


def test_encode_set_is_sorted_without_repeats(package: ModelPackage, tmp_path: Path) -> None:
    serving = serving_of(package, 1, tmp_path)
    ids = serving.item_ids
    encoded = serving.encode_set({ids[9], ids[1], "nope", ids[4]} | {ids[1]})
    assert encoded.tolist() == [1, 4, 9] and encoded.dtype == np.int64
    empty = serving.encode_set(set())
    assert empty.shape == (0,) and empty.dtype == np.int64
