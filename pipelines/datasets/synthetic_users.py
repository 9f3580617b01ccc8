"""The synthetic shop's shoppers: arrival, heavy-tailed activity, budgets, and slowly drifting tastes.

Tastes are sparse: each user keeps a few favourite style groups (hidden sub-categories) with Dirichlet
weights and a few favourite brands, so memory stays linear in users (no users x categories matrix). Each day a
small share of users swaps one favourite group or brand (slow drift). Per-user memory between days: the last
item put in a cart (its complements are favoured in the next sessions), the last consumable bought
(re-bought after its cycle), the shopping mission under way (its root item, the next step, the day of
the last progress) and the time of the last event (the next day's first session keeps the session gap).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from pipelines.datasets.sampling import SegmentSampler
from pipelines.datasets.synthetic_catalog import Catalogue

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

TASTE_SLOTS = 4
BRAND_SLOTS = 2
NEVER = -10_000  # "day" of a memory that was never set

#: Mean sessions per user and day (before weekly seasonality); about 65 events per user over 60 days.
MEAN_SESSIONS_PER_DAY = 0.17


class UserPopulation:
    """All users over the period, their static traits and their between-day memory."""

    def __init__(
        self,
        n_users: int,
        n_days: int,
        catalogue: Catalogue,
        rng: np.random.Generator,
        initial_share: float = 0.55,
    ) -> None:
        self.n_users = n_users
        self.arrival_day = np.zeros(n_users, dtype=np.int64)
        if n_days > 1:
            n_new = round(n_users * (1.0 - initial_share))
            if n_new:
                self.arrival_day[n_users - n_new :] = np.sort(rng.integers(1, n_days, n_new))
        sigma = 1.0
        self.activity = MEAN_SESSIONS_PER_DAY * rng.lognormal(-(sigma**2) / 2, sigma, n_users)
        self.activity = np.minimum(self.activity, 3.0)
        self.budget = rng.lognormal(0.0, 0.35, n_users)
        self._sub_p = catalogue.subcategory_weight / catalogue.subcategory_weight.sum()
        self._sub_cat = catalogue.subcategory_category
        self.taste_groups = rng.choice(len(self._sub_p), (n_users, TASTE_SLOTS), p=self._sub_p).astype(
            np.int64
        )
        self.taste_categories = self._sub_cat[self.taste_groups]
        self.taste_weights = rng.dirichlet(np.full(TASTE_SLOTS, 0.6), n_users)
        self._taste_cum = np.cumsum(self.taste_weights, axis=1)
        self._group_sampler = SegmentSampler(catalogue.item_subcategory, catalogue.n_subcategories)
        self._group_sampler.set_weights(catalogue.base_popularity)
        self._item_brand = catalogue.item_brand
        self.favourite_brands = np.stack(
            [self._brand_from_tastes(np.arange(n_users), rng) for _ in range(BRAND_SLOTS)], axis=1
        )
        self.anchor_item = np.full(n_users, -1, dtype=np.int64)
        self.anchor_day = np.full(n_users, NEVER, dtype=np.int64)
        self.consumable_item = np.full(n_users, -1, dtype=np.int64)
        self.consumable_day = np.full(n_users, NEVER, dtype=np.int64)
        self.mission_root = np.full(n_users, -1, dtype=np.int64)  # root item of the mission, -1 none
        self.mission_step = np.zeros(n_users, dtype=np.int64)  # next step (column of mission_items)
        self.mission_day = np.full(n_users, NEVER, dtype=np.int64)  # day it started or last moved on
        # time of the user's last event, microseconds after the first day's midnight
        self.last_event_us = np.full(n_users, NEVER * 86_400 * 1_000_000, dtype=np.int64)
        self.pseudonyms: NDArray[np.object_] = np.full(n_users, None, dtype=object)
        self._id_width = max(7, len(str(n_users - 1)))

    def raw_ids(self, users: IntArray) -> NDArray[np.str_]:
        """Raw (pre-pseudonymisation) ids such as ``u0000123``."""
        return np.strings.add("u", np.strings.zfill(users.astype(np.str_), self._id_width))

    def taste_group(self, users: IntArray, rng: np.random.Generator) -> IntArray:
        """One favourite style group (sub-category) per user, drawn from their taste weights."""
        u = rng.random(len(users))[:, None]
        slot = (self._taste_cum[users] < u).sum(axis=1)
        slot = np.minimum(slot, TASTE_SLOTS - 1)
        groups: IntArray = self.taste_groups[users, slot]
        return groups

    def _brand_from_tastes(self, users: IntArray, rng: np.random.Generator) -> IntArray:
        items = self._group_sampler.sample(self.taste_group(users, rng), rng)
        return np.where(items >= 0, self._item_brand[np.maximum(items, 0)], 0).astype(np.int64)

    def drift(self, rng: np.random.Generator, rate: float = 0.012) -> None:
        """Slow taste drift: a few users replace one favourite category and (less often) one brand."""
        n = self.n_users
        movers = np.flatnonzero(rng.random(n) < rate)
        if len(movers):
            slots = rng.integers(0, TASTE_SLOTS, len(movers))
            new_groups = rng.choice(len(self._sub_p), len(movers), p=self._sub_p)
            self.taste_groups[movers, slots] = new_groups
            self.taste_categories[movers, slots] = self._sub_cat[new_groups]
        brand_movers = np.flatnonzero(rng.random(n) < rate / 2)
        if len(brand_movers):
            slots = rng.integers(0, BRAND_SLOTS, len(brand_movers))
            self.favourite_brands[brand_movers, slots] = self._brand_from_tastes(brand_movers, rng)
