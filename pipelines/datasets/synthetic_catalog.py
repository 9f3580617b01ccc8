"""The synthetic shop's catalogue: categories, brands, items, complements, and their day-to-day dynamics.

Static structure (drawn once from the seed): 20-40 categories with log-normal prices and a consumable flag,
100-300 brands, items with Zipf-like base popularity, 1-3 complementary items each (accessories from related
categories), shopping missions (a chain of categories bought one after the other, e.g. camera -> bag ->
charger: each item of a chain's first category names the items its mission asks for next), launch days for
items that arrive during the simulated period. Daily dynamics: a slowly drifting
popularity trend per item, a launch boost for new items, promotions that lower the price for a few days, and
out-of-stock spells.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

from pipelines.datasets.sampling import SegmentSampler

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]


@dataclass(frozen=True)
class CategoryTemplate:
    """A kind of product: its median price, whether it is re-bought, and what it is bought with."""

    name: str
    median_price: float
    consumable: bool = False
    rebuy_days: int = 0
    related: tuple[str, ...] = ()


CATEGORY_TEMPLATES: tuple[CategoryTemplate, ...] = (
    CategoryTemplate("smartphones", 420.0, related=("phone_cases", "chargers", "headphones")),
    CategoryTemplate("phone_cases", 18.0, related=("smartphones", "chargers")),
    CategoryTemplate("chargers", 22.0, related=("smartphones", "laptops", "tablets")),
    CategoryTemplate("headphones", 85.0, related=("smartphones", "tablets", "gaming_consoles")),
    CategoryTemplate("laptops", 880.0, related=("bags", "chargers", "computer_accessories")),
    CategoryTemplate("computer_accessories", 35.0, related=("laptops", "printer_ink")),
    CategoryTemplate("tablets", 380.0, related=("chargers", "headphones", "phone_cases")),
    CategoryTemplate("smartwatches", 210.0, related=("chargers", "sports_gear")),
    CategoryTemplate("cameras", 540.0, related=("bags", "chargers")),
    CategoryTemplate("televisions", 620.0, related=("gaming_consoles", "video_games")),
    CategoryTemplate("gaming_consoles", 430.0, related=("video_games", "headphones")),
    CategoryTemplate("video_games", 48.0, related=("gaming_consoles", "snacks")),
    CategoryTemplate("printer_ink", 32.0, True, 40, ("paper_goods", "computer_accessories")),
    CategoryTemplate("paper_goods", 9.0, True, 21, ("printer_ink", "cleaning")),
    CategoryTemplate("coffee", 12.0, True, 14, ("kitchen_appliances", "snacks", "tea")),
    CategoryTemplate("tea", 7.0, True, 21, ("snacks", "coffee")),
    CategoryTemplate("snacks", 4.5, True, 7, ("beverages", "coffee")),
    CategoryTemplate("beverages", 5.5, True, 7, ("snacks",)),
    CategoryTemplate("pet_food", 26.0, True, 21, ("pet_supplies",)),
    CategoryTemplate("pet_supplies", 19.0, related=("pet_food",)),
    CategoryTemplate("baby_care", 28.0, True, 14, ("toys", "cleaning")),
    CategoryTemplate("shampoo", 8.5, True, 30, ("skincare", "cosmetics")),
    CategoryTemplate("skincare", 21.0, True, 35, ("cosmetics", "shampoo")),
    CategoryTemplate("cosmetics", 17.0, True, 30, ("skincare", "bags")),
    CategoryTemplate("vitamins", 16.0, True, 30, ("sports_gear", "beverages")),
    CategoryTemplate("cleaning", 6.5, True, 21, ("paper_goods", "kitchen_appliances")),
    CategoryTemplate("kitchen_appliances", 85.0, related=("cookware", "coffee")),
    CategoryTemplate("cookware", 42.0, related=("kitchen_appliances", "cleaning")),
    CategoryTemplate("furniture", 260.0, related=("lighting", "bedding")),
    CategoryTemplate("lighting", 38.0, related=("furniture",)),
    CategoryTemplate("bedding", 58.0, related=("furniture", "lighting")),
    CategoryTemplate("books", 15.0, related=("books", "toys")),
    CategoryTemplate("toys", 28.0, related=("baby_care", "books")),
    CategoryTemplate("shoes", 78.0, related=("jeans", "sports_gear", "t_shirts")),
    CategoryTemplate("jackets", 115.0, related=("jeans", "shoes")),
    CategoryTemplate("t_shirts", 19.0, related=("jeans", "shoes")),
    CategoryTemplate("jeans", 55.0, related=("t_shirts", "shoes", "jackets")),
    CategoryTemplate("bags", 65.0, related=("laptops", "cosmetics")),
    CategoryTemplate("sports_gear", 58.0, related=("shoes", "vitamins", "smartwatches")),
    CategoryTemplate("power_tools", 110.0, related=("garden_tools",)),
    CategoryTemplate("garden_tools", 34.0, related=("power_tools",)),
)

#: Multi-step shopping missions over categories: buying an item of the first category starts a mission
#: whose next purchases follow the chain, one step per later session (see ``synthetic_sessions``). Only the
#: categories present in a catalogue are kept; a category roots at most one mission (the first listed).
MISSION_TEMPLATES: tuple[tuple[str, ...], ...] = (
    ("cameras", "bags", "chargers", "computer_accessories"),
    ("smartphones", "phone_cases", "chargers", "headphones"),
    ("laptops", "bags", "computer_accessories", "printer_ink"),
    ("tablets", "phone_cases", "headphones", "chargers"),
    ("televisions", "gaming_consoles", "video_games", "headphones"),
    ("gaming_consoles", "video_games", "headphones"),
    ("furniture", "lighting", "bedding"),
    ("kitchen_appliances", "cookware", "coffee", "tea"),
    ("baby_care", "toys", "books"),
    ("jackets", "jeans", "shoes", "t_shirts"),
    ("smartwatches", "sports_gear", "vitamins"),
    ("power_tools", "garden_tools"),
    ("pet_supplies", "pet_food"),
    ("skincare", "cosmetics", "bags"),
)
#: Most steps a mission asks for after its root purchase.
MISSION_STEPS = 3

_SYLLABLES = (
    "al", "ber", "co", "da", "el", "fi", "gor", "ha", "in", "jo", "ka", "lu", "mar", "no", "or", "pe",
    "qui", "ra", "sol", "ta", "ul", "ve", "wen", "xa", "yo", "zen", "tri", "nex", "vo", "lin",
)  # fmt: skip

#: Day index marking items that exist before the simulated period starts.
BEFORE_START = -1


@dataclass(frozen=True)
class Catalogue:
    """Static catalogue structure; arrays are indexed by item (``0..n_items-1``) or category/brand."""

    item_ids: NDArray[np.str_]
    item_category: IntArray
    item_subcategory: IntArray  # hidden "style" group inside a category (not exported)
    item_brand: IntArray
    base_price: FloatArray
    base_popularity: FloatArray
    popularity_pct: FloatArray  # 0 (least) .. 1 (most popular) base popularity rank
    created_day: IntArray  # BEFORE_START or the day index the item is launched
    created_before_us: IntArray  # created_at (unix microseconds) of items that exist before the start
    launch_day: FloatArray  # day index of launch (negative: before the start), for the item's life cycle
    lifetime_days: FloatArray  # interest fades as exp(-age / lifetime)
    complements: IntArray  # (n_items, 3), -1 padded, valid entries first
    n_complements: IntArray
    mission_items: IntArray  # (n_items, MISSION_STEPS): what a mission rooted here buys next, -1 padded
    n_mission_steps: IntArray  # 0: the item roots no mission
    category_names: NDArray[np.str_]
    category_median_price: FloatArray
    category_consumable: BoolArray
    category_rebuy_days: IntArray
    category_weight: FloatArray
    subcategory_category: IntArray
    subcategory_weight: FloatArray
    brand_names: NDArray[np.str_]

    @cached_property
    def item_id_array(self) -> pa.Array:
        """``item_ids`` as an Arrow string array (cheap ``take`` when building tables)."""
        return pa.array(self.item_ids, type=pa.string())

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_categories(self) -> int:
        return len(self.category_names)

    @property
    def n_subcategories(self) -> int:
        return len(self.subcategory_category)

    @property
    def n_brands(self) -> int:
        return len(self.brand_names)


def n_categories_for(n_items: int) -> int:
    """About one category per 100 items, between 20 and 40 (never more categories than items)."""
    return max(1, min(n_items, int(np.clip(round(n_items / 100), 20, len(CATEGORY_TEMPLATES)))))


def n_brands_for(n_items: int) -> int:
    """About one brand per 12 items, between 100 and 300 (never more brands than items)."""
    return max(1, min(n_items, int(np.clip(n_items // 12, 100, 300))))


def build_catalogue(
    n_items: int, n_days: int, start_us: int, rng: np.random.Generator, initial_share: float = 0.8
) -> Catalogue:
    """Draw the static catalogue.

    Args:
        n_items: items over the whole period (``initial_share`` exist at the start, the rest launch daily).
        n_days: simulated days (new items launch on days ``1..n_days-1``).
        start_us: the first day's midnight, unix microseconds UTC.
        rng: the world's random generator.
        initial_share: share of items already in the catalogue on day 0.
    """
    n_cat = n_categories_for(n_items)
    templates = [
        CATEGORY_TEMPLATES[i] for i in np.sort(rng.choice(len(CATEGORY_TEMPLATES), n_cat, replace=False))
    ]
    cat_names = np.array([t.name for t in templates])
    cat_median = np.array([t.median_price for t in templates])
    cat_weight = rng.lognormal(0.0, 0.6, n_cat)
    cat_weight /= cat_weight.sum()

    item_cat = _assign_categories(n_items, cat_weight, rng)
    item_sub, sub_cat, sub_weight = _assign_subcategories(item_cat, cat_weight, rng)
    n_brands = n_brands_for(n_items)
    brand_names = _brand_names(n_brands, rng)
    brand_strength = rng.lognormal(0.0, 1.0, n_brands)
    brand_price = rng.normal(0.0, 0.3, n_brands)
    item_brand = _assign_brands(item_cat, n_cat, n_brands, brand_strength, rng)

    cat_sigma = rng.uniform(0.3, 0.6, n_cat)
    log_price = (
        np.log(cat_median[item_cat])
        + brand_price[item_brand]
        + rng.normal(0.0, 1.0, n_items) * cat_sigma[item_cat]
    )
    base_price = np.maximum(np.round(np.exp(log_price), 2), 0.5)

    # Heavy-tailed (log-normal) popularity, nudged by brand strength.
    base_pop = rng.lognormal(0.0, 1.1, n_items) * brand_strength[item_brand] ** 0.3
    base_pop /= base_pop.sum()
    pop_pct = np.empty(n_items)
    pop_pct[np.argsort(base_pop, kind="stable")] = np.linspace(0.0, 1.0, n_items) if n_items > 1 else 1.0

    created_day = _launch_days(n_items, n_days, initial_share, rng)
    day_us = 86_400 * 1_000_000
    created_before_us = start_us - rng.integers(day_us, 365 * day_us, n_items)
    launch_day = np.where(created_day == BEFORE_START, (created_before_us - start_us) / day_us, created_day)
    lifetime = rng.lognormal(np.log(60.0), 0.6, n_items)

    complements, n_comp = _complements(item_cat, templates, base_pop, rng)
    mission_items, n_steps = _mission_items(item_cat, templates, base_pop, rng)
    width = max(7, len(str(n_items - 1)))
    item_ids = np.strings.add("i", np.strings.zfill(np.arange(n_items).astype(np.str_), width))
    return Catalogue(
        item_ids=item_ids,
        item_category=item_cat,
        item_subcategory=item_sub,
        item_brand=item_brand,
        base_price=base_price,
        base_popularity=base_pop,
        popularity_pct=pop_pct,
        created_day=created_day,
        created_before_us=created_before_us.astype(np.int64),
        launch_day=launch_day.astype(np.float64),
        lifetime_days=lifetime,
        complements=complements,
        n_complements=n_comp,
        mission_items=mission_items,
        n_mission_steps=n_steps,
        category_names=cat_names,
        category_median_price=cat_median,
        category_consumable=np.array([t.consumable for t in templates], dtype=bool),
        category_rebuy_days=np.array([max(t.rebuy_days, 1) for t in templates], dtype=np.int64),
        category_weight=cat_weight,
        subcategory_category=sub_cat,
        subcategory_weight=sub_weight,
        brand_names=brand_names,
    )


def _assign_categories(n_items: int, cat_weight: FloatArray, rng: np.random.Generator) -> IntArray:
    n_cat = len(cat_weight)
    size_weight = cat_weight**0.7 / (cat_weight**0.7).sum()
    # Every category gets at least one item; the rest follow the category sizes.
    first = np.arange(min(n_cat, n_items))
    rest = rng.choice(n_cat, n_items - len(first), p=size_weight)
    cats = np.concatenate((first, rest)).astype(np.int64)
    return cats[rng.permutation(n_items)]


def _assign_subcategories(
    item_cat: IntArray, cat_weight: FloatArray, rng: np.random.Generator, items_per_group: int = 20
) -> tuple[IntArray, IntArray, FloatArray]:
    """Split each category into hidden style groups of about ``items_per_group`` items (2 to 8 per category).

    Returns each item's group, each group's category and each group's share of shopper interest.
    """
    n_cat = len(cat_weight)
    sizes = np.bincount(item_cat, minlength=n_cat)
    n_groups = np.clip(np.round(sizes / items_per_group), 2, 8).astype(np.int64)
    n_groups = np.minimum(n_groups, np.maximum(sizes, 1))
    offsets = np.concatenate(([0], np.cumsum(n_groups)))
    sub_cat = np.repeat(np.arange(n_cat), n_groups).astype(np.int64)
    share = np.concatenate([rng.dirichlet(np.full(k, 2.0)) for k in n_groups])
    item_sub = np.empty(len(item_cat), dtype=np.int64)
    for cat in range(n_cat):
        members = np.flatnonzero(item_cat == cat)
        k = int(n_groups[cat])
        groups = np.concatenate(
            (np.arange(min(k, len(members))), rng.integers(0, k, max(len(members) - k, 0)))
        )
        item_sub[members] = offsets[cat] + groups[rng.permutation(len(members))]
    return item_sub, sub_cat, share * cat_weight[sub_cat]


def _brand_names(n_brands: int, rng: np.random.Generator) -> NDArray[np.str_]:
    names: list[str] = []
    seen: set[str] = set()
    syllables = np.array(_SYLLABLES)
    while len(names) < n_brands:
        parts = rng.choice(syllables, int(rng.integers(2, 4)))
        name = "".join(parts).capitalize()
        if name in seen:
            name = f"{name}{len(names)}"
        seen.add(name)
        names.append(name)
    return np.array(names)


def _assign_brands(
    item_cat: IntArray, n_cat: int, n_brands: int, strength: FloatArray, rng: np.random.Generator
) -> IntArray:
    """Each brand has a home category (sometimes a second one); items pick among their category's brands."""
    home = rng.integers(0, n_cat, n_brands)
    second = np.where(rng.random(n_brands) < 0.2, rng.integers(0, n_cat, n_brands), -1)
    brands = np.empty(len(item_cat), dtype=np.int64)
    for cat in range(n_cat):
        members = np.flatnonzero(item_cat == cat)
        if len(members) == 0:
            continue
        pool = np.flatnonzero((home == cat) | (second == cat))
        if len(pool) == 0:
            pool = rng.choice(n_brands, min(3, n_brands), replace=False)
        p = strength[pool] / strength[pool].sum()
        brands[members] = pool[rng.choice(len(pool), len(members), p=p)]
    return brands


def _launch_days(n_items: int, n_days: int, initial_share: float, rng: np.random.Generator) -> IntArray:
    created = np.full(n_items, BEFORE_START, dtype=np.int64)
    if n_days > 1:
        n_new = round(n_items * (1.0 - initial_share))
        if n_new:
            # New items are the highest indices, launched in id order.
            created[n_items - n_new :] = np.sort(rng.integers(1, n_days, n_new))
    return created


def _complements(
    item_cat: IntArray, templates: list[CategoryTemplate], base_pop: FloatArray, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """1-3 complementary items per item from related categories (or the same one), popular ones preferred."""
    n_items, n_cat = len(item_cat), len(templates)
    index = {t.name: i for i, t in enumerate(templates)}
    related = [[index[r] for r in t.related if r in index] for t in templates]
    # Categories without a present relative pair with one random other category.
    for rel in related:
        if not rel:
            rel.append(int(rng.integers(0, n_cat)))
    width = 3
    wanted = 1 + rng.binomial(2, 0.5, n_items)
    target_cat = np.empty((n_items, width), dtype=np.int64)
    u = rng.random((n_items, width))
    same = rng.random((n_items, width)) < 0.25
    for cat in range(n_cat):
        rows = np.flatnonzero(item_cat == cat)
        choices = np.array(related[cat], dtype=np.int64)
        target_cat[rows] = choices[(u[rows] * len(choices)).astype(np.int64)]
    target_cat[same] = np.repeat(item_cat[:, None], width, axis=1)[same]
    sampler = SegmentSampler(item_cat, n_cat)
    sampler.set_weights(base_pop**0.6)
    comps = sampler.sample(target_cat.ravel(), rng).reshape(n_items, width)
    valid = (
        (comps >= 0) & (comps != np.arange(n_items)[:, None]) & (np.arange(width)[None, :] < wanted[:, None])
    )
    # Pack valid entries to the front of each row.
    order = np.argsort(~valid, axis=1, kind="stable")
    comps = np.take_along_axis(np.where(valid, comps, -1), order, axis=1)
    return comps.astype(np.int64), valid.sum(axis=1).astype(np.int64)


def mission_chains(templates: list[CategoryTemplate]) -> IntArray:
    """``(n_categories, MISSION_STEPS)``: the categories a mission rooted in each category buys next, in
    order, -1 padded (all -1: the category roots no mission). Built from :data:`MISSION_TEMPLATES`."""
    index = {t.name: i for i, t in enumerate(templates)}
    chains = np.full((len(templates), MISSION_STEPS), -1, dtype=np.int64)
    for template in MISSION_TEMPLATES:
        present = [index[name] for name in template if name in index]
        if len(present) < 2 or template[0] not in index or chains[present[0], 0] >= 0:
            continue
        steps = present[1 : 1 + MISSION_STEPS]
        chains[present[0], : len(steps)] = steps
    return chains


def _mission_items(
    item_cat: IntArray, templates: list[CategoryTemplate], base_pop: FloatArray, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Per root item, the item each later mission step buys: drawn once per (root item, step) from the step's
    category (popular ones preferred), so the step item depends on which root item started the mission, not
    only on the step before it (a model must look back past the last item to predict it)."""
    chains = mission_chains(templates)
    wanted = chains[item_cat]  # (n_items, MISSION_STEPS) category of each step, -1 none
    sampler = SegmentSampler(item_cat, len(templates))
    sampler.set_weights(base_pop**0.6)
    flat = wanted.ravel()
    drawn = np.full(len(flat), -1, dtype=np.int64)
    has = flat >= 0
    drawn[has] = sampler.sample(flat[has], rng)
    items = drawn.reshape(wanted.shape)
    # a chain stops at its first step without an item
    complete = np.cumprod(items >= 0, axis=1).astype(bool)
    items = np.where(complete, items, -1)
    return items, complete.sum(axis=1).astype(np.int64)


class CatalogueDynamics:
    """Per-day item state: popularity trend, launch boost, promotions (price) and stock."""

    def __init__(self, catalogue: Catalogue, rng: np.random.Generator) -> None:
        n = catalogue.n_items
        self._cat = catalogue
        self.trend = rng.normal(0.0, 0.6, n)
        self.in_stock = np.ones(n, dtype=bool)
        self._promo_left = np.zeros(n, dtype=np.int64)
        self._promo_factor = np.ones(n)
        self.price = catalogue.base_price.copy()
        self.weight = np.zeros(n)
        self.available = np.zeros(n, dtype=bool)
        self._out_rate = 0.006 + 0.02 * catalogue.popularity_pct

    def advance(self, day: int, rng: np.random.Generator) -> None:
        """Move to ``day``: update trend, stock, promotions, today's prices and view weights."""
        cat = self._cat
        n = cat.n_items
        self.available = cat.created_day <= day
        self.trend = 0.97 * self.trend + rng.normal(0.0, 0.15, n)
        if day > 0:
            go_out = rng.random(n) < self._out_rate
            come_back = rng.random(n) < 0.3
            self.in_stock = np.where(self.in_stock, ~go_out, come_back)
        self.in_stock[cat.created_day >= day] = True  # launched today (or not yet): in stock
        self._promo_left = np.maximum(self._promo_left - 1, 0)
        start = (self._promo_left == 0) & (rng.random(n) < 0.012)
        self._promo_left[start] = rng.integers(2, 8, int(start.sum()))
        self._promo_factor = np.where(
            start, rng.uniform(0.6, 0.9, n), np.where(self._promo_left > 0, self._promo_factor, 1.0)
        )
        self.price = np.maximum(np.round(cat.base_price * self._promo_factor, 2), 0.5)
        age = np.maximum(day - cat.launch_day, 0.0)
        life_cycle = (1.0 + 3.0 * np.exp(-age / 7.0)) * np.exp(-age / cat.lifetime_days)
        promo_boost = np.where(self._promo_left > 0, 2.5, 1.0)
        stock_factor = np.where(self.in_stock, 1.0, 0.4)
        weight = cat.base_popularity * np.exp(self.trend) * life_cycle * promo_boost * stock_factor
        self.weight = np.where(self.available, weight, 0.0)
