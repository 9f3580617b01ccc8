"""The feature set: encoded events with both splits, id maps and the item table, plus views for models."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from core.errors import RecopsError
from models.base import IntArray, Interactions
from pipelines.features.split import TEST, TRAIN, VALID, SplitInfo
from pipelines.params import FeatureParams, SplitProtocol

Split = Literal["train", "train_valid", "valid", "test", "all"]
Protocol = SplitProtocol

#: Column of :attr:`FeatureSet.events` holding each protocol's split label (TRAIN=0, VALID=1, TEST=2).
SPLIT_COLUMNS: dict[str, str] = {"temporal": "split", "loo": "loo_split"}
_SPLIT_CODES: dict[str, tuple[int, ...]] = {
    "train": (TRAIN,),
    "valid": (VALID,),
    "test": (TEST,),
    "train_valid": (TRAIN, VALID),
    "all": (TRAIN, VALID, TEST),
}

#: Columns and dtypes of :attr:`FeatureSet.events`.
EVENT_FRAME_DTYPES: dict[str, str] = {
    "user_idx": "int32",
    "item_idx": "int32",
    "event_type": "int8",  # code into core.schema.EVENT_TYPES
    "weight": "float32",
    "ts": "int64",  # unix seconds, UTC
    "session_idx": "int32",
    "split": "int8",
    "loo_split": "int8",
}


@dataclass(frozen=True, eq=False)
class FeatureSet:
    """Everything the training and evaluation steps need, built by :func:`pipelines.features.build_features`.

    Attributes:
        events: one row per cleaned, deduplicated event, sorted by time; columns and dtypes as in
            :data:`EVENT_FRAME_DTYPES`. ``split``/``loo_split`` hold 0 (train), 1 (valid) or 2 (test).
        item_ids: item index -> ``item_id`` (the whole catalogue, sorted).
        user_ids: user index -> (pseudonymised) ``user_id``, sorted.
        item_table: one row per item index: ``item_idx, item_id, category, brand, price, in_stock,
            created_at, category_idx, brand_idx, price_bucket`` and statistics of the events before the
            test boundary (``n_<event type>, n_events, n_users, popularity, popularity_<d>d, first_seen,
            last_seen``).
        split_info: temporal boundaries and per-protocol counts.
        summary: counts of every step (also written as ``summary.json``).
        params: the feature params the set was built with.
    """

    events: pd.DataFrame
    item_ids: NDArray[np.str_]
    user_ids: NDArray[np.str_]
    item_table: pd.DataFrame
    split_info: SplitInfo
    summary: dict[str, Any]
    params: FeatureParams

    # ------------------------------------------------------------------------------------------ sizes
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def protocol(self) -> Protocol:
        """The split protocol the set was built for (``features.protocol``); views default to it."""
        return self.params.protocol

    def resolve_protocol(self, protocol: Protocol | None = None) -> Protocol:
        """``protocol`` (default: :attr:`protocol`), checked to be one this set has split labels for.

        Raises:
            RecopsError: for an unknown protocol, or ``temporal`` on a set built with ``protocol: loo``.
        """
        chosen = self.protocol if protocol is None else protocol
        if chosen not in SPLIT_COLUMNS:
            raise RecopsError(f"unknown protocol {chosen!r}: use one of {sorted(SPLIT_COLUMNS)}")
        if chosen not in self.split_info.counts:
            raise RecopsError(
                f"this feature set was built with features.protocol={self.protocol}, which does not "
                f"compute the {chosen} split: set features.protocol: {chosen} and rebuild the features"
            )
        return chosen

    # ------------------------------------------------------------------------------------------ views
    def split_mask(self, split: Split, protocol: Protocol | None = None) -> NDArray[np.bool_]:
        """Mask over :attr:`events` selecting one split of one protocol (default: :attr:`protocol`)."""
        protocol = self.resolve_protocol(protocol)
        if split not in _SPLIT_CODES:
            raise RecopsError(f"unknown split {split!r}: use one of {list(get_args(Split))}")
        labels = self.events[SPLIT_COLUMNS[protocol]].to_numpy()
        if split == "all":
            return np.ones(len(labels), dtype=bool)
        return np.isin(labels, _SPLIT_CODES[split])

    def interactions(self, split: Split = "train", protocol: Protocol | None = None) -> Interactions:
        """The events of one split as :class:`models.base.Interactions` (time order, all users and items)."""
        ev = self.events[self.split_mask(split, protocol)]
        return Interactions(
            user_idx=ev["user_idx"].to_numpy(dtype=np.int64),
            item_idx=ev["item_idx"].to_numpy(dtype=np.int64),
            weight=ev["weight"].to_numpy(dtype=np.float32),
            ts=ev["ts"].to_numpy(dtype=np.int64),
            session_idx=ev["session_idx"].to_numpy(dtype=np.int64),
            n_users=self.n_users,
            n_items=self.n_items,
        )

    def histories(self, split: Split = "train_valid", protocol: Protocol | None = None) -> list[IntArray]:
        """Every user's chronological item indices within ``split`` (empty for users without events)."""
        return self.interactions(split, protocol).histories()

    def sequence_lists(
        self, split: Split, protocol: Protocol | None = None, max_len: int | None = None
    ) -> tuple[IntArray, IntArray]:
        """Each user's last ``max_len`` items (default ``params.max_sequence_length``) of ``split``, as CSR.

        ``split`` has no default on purpose: ``"test"`` and ``"all"`` include the test period, so a model
        must never be fitted on them; fit on ``"train"`` (selection) or ``"train_valid"`` (the refit).

        Returns:
            ``(offsets, items)``: user ``u``'s sequence, oldest first, is ``items[offsets[u]:offsets[u+1]]``.
        """
        from pipelines.features.sessions import position_from_end

        length = self.params.max_sequence_length if max_len is None else max_len
        ev = self.events[self.split_mask(split, protocol)]
        user = ev["user_idx"].to_numpy(dtype=np.int64)
        order = np.argsort(user, kind="stable")  # events are in time order already
        user, item = user[order], ev["item_idx"].to_numpy(dtype=np.int64)[order]
        keep = position_from_end(user) < length
        offsets = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(user[keep], minlength=self.n_users), out=offsets[1:])
        return offsets, item[keep]

    def sequences(
        self, split: Split, protocol: Protocol | None = None, max_len: int | None = None
    ) -> IntArray:
        """Each user's last ``max_len`` items of ``split`` as an ``(n_users, max_len)`` matrix, right-aligned,
        -1 padded (no default split: see :meth:`sequence_lists`).

        Shorter sequences are padded on the left with -1, so the latest item is always in the last column.
        """
        length = self.params.max_sequence_length if max_len is None else max_len
        offsets, items = self.sequence_lists(split, protocol, length)
        sizes = np.diff(offsets)
        out = np.full((self.n_users, length), -1, dtype=np.int64)
        rows = np.repeat(np.arange(self.n_users), sizes)
        cols = length - np.repeat(sizes, sizes) + (np.arange(len(items)) - np.repeat(offsets[:-1], sizes))
        out[rows, cols] = items
        return out

    def test_users(self, protocol: Protocol | None = None) -> IntArray:
        """Sorted indices of users with at least one test event."""
        users = self.events["user_idx"].to_numpy()[self.split_mask("test", protocol)]
        return np.unique(users).astype(np.int64)

    def users_with_history(self, protocol: Protocol | None = None) -> NDArray[np.bool_]:
        """Per user: whether they have a train or validation event (i.e. history before the test period)."""
        users = self.events["user_idx"].to_numpy()[self.split_mask("train_valid", protocol)]
        return np.bincount(users, minlength=self.n_users) > 0

    def cold_users(self, protocol: Protocol | None = None) -> IntArray:
        """Test users without any train or validation event (no history before the test period)."""
        test = self.test_users(protocol)
        return test[~self.users_with_history(protocol)[test]]

    def warm_users(self, protocol: Protocol | None = None) -> IntArray:
        """Test users with history before the test period."""
        test = self.test_users(protocol)
        return test[self.users_with_history(protocol)[test]]

    def item_popularity(
        self, split: Split = "train_valid", protocol: Protocol | None = None, weighted: bool = False
    ) -> NDArray[np.float64]:
        """Per item: number of events (or sum of their weights) in ``split``."""
        ev = self.events[self.split_mask(split, protocol)]
        weights = ev["weight"].to_numpy(dtype=np.float64) if weighted else None
        return np.bincount(ev["item_idx"].to_numpy(), weights=weights, minlength=self.n_items).astype(
            np.float64
        )

    # ------------------------------------------------------------------------------------------ items
    @property
    def item_categories(self) -> NDArray[np.int32]:
        """Category code of each item (-1 unknown); names in :attr:`category_names`."""
        return self.item_table["category_idx"].to_numpy(dtype=np.int32)

    @cached_property
    def category_names(self) -> list[str]:
        """Category code -> category name (sorted distinct catalogue categories)."""
        return sorted(str(c) for c in self.item_table["category"].dropna().unique())

    @cached_property
    def _item_index(self) -> pd.Index:
        return pd.Index(self.item_ids)

    def encode_items(self, item_ids: Sequence[str] | pd.Series) -> IntArray:
        """Item index of each external ``item_id``; -1 for ids outside the catalogue."""
        return np.asarray(self._item_index.get_indexer(pd.Index(item_ids).astype(str)), dtype=np.int64)

    def decode_items(self, item_idx: NDArray[np.integer[Any]]) -> NDArray[np.str_]:
        """``item_id`` of each index; padding (-1) becomes the empty string."""
        idx = np.asarray(item_idx)
        out = np.where(idx >= 0, self.item_ids[np.maximum(idx, 0)], "")
        return np.asarray(out, dtype=np.str_)
