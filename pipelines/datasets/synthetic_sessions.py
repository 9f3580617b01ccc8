"""One day of shopping sessions, simulated step by step for all sessions at once (vectorised numpy).

Each session is a run of item views (geometric length). The next item viewed comes from one of these moves:

* ``COMPLEMENT``: a complementary item of the session's *anchor* (the last item clicked or put in the cart;
  at a session's start, the item the user carted on a recent day),
* ``SIMILAR``: another item of the previous item's style group (sometimes just its category),
* ``TASTE``: an item of one of the user's favourite style groups,
* ``BRAND``: an item of one of the user's favourite brands,
* ``POPULAR``: an item drawn from today's whole-shop popularity (trends, launches, promotions),
* ``REBUY``: the first view of a session can be a consumable the user bought one cycle ago,
* ``MISSION``: the next step of the user's shopping mission, once per session at a random point of it
  (click a camera, and later sessions bring the bag that goes with *that* camera, then its charger...:
  ``Catalogue.mission_items``). A mission starts when a shopper clicks (or carts or buys) an item that
  roots one, and moves on a step when the step's item is clicked or deeper, recorded at the end of the day,
  so it unfolds over several sessions and days with other browsing in between; it is dropped after
  ``mission_days`` without progress.

Every view may lead to a click, a click to an add-to-cart and a cart to a purchase (the funnel). Taste,
complements, re-buys and mission steps raise conversion; expensive items (for the category and the user's
budget) lower it; out-of-stock items are never carted or bought.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from pipelines.datasets.sampling import SegmentSampler
from pipelines.datasets.synthetic_catalog import Catalogue, CatalogueDynamics
from pipelines.datasets.synthetic_users import UserPopulation

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]

VIEW, CLICK, ADD_TO_CART, PURCHASE = 0, 1, 2, 3  # indices into core.schema.EVENT_TYPES
COMPLEMENT, SIMILAR, TASTE, BRAND, POPULAR, REBUY, MISSION = range(7)

SECOND_US = 1_000_000
DAY_US = 86_400 * SECOND_US

#: Relative session starts per UTC hour: quiet nights, a lunch bump, an evening peak.
HOUR_WEIGHTS = np.array(
    [
        0.9,
        0.6,
        0.4,
        0.3,
        0.3,
        0.4,
        0.7,
        1.2,
        1.8,
        2.2,
        2.5,
        2.7,
        2.9,
        2.8,
        2.7,
        2.7,
        2.8,
        3.0,
        3.4,
        3.9,
        4.2,
        3.9,
        2.9,
        1.7,
    ]
)
#: Relative volume Monday..Sunday.
WEEKDAY_WEIGHTS = np.array([0.95, 0.92, 0.94, 0.97, 1.05, 1.2, 1.25])


@dataclass(frozen=True)
class ShopBehaviour:
    """Tunable rates of the simulated shoppers (defaults give a realistic funnel)."""

    mean_views: float = 5.5
    max_views: int = 60
    p_similar: float = 0.45
    p_taste: float = 0.27
    p_brand: float = 0.10
    p_popular: float = 0.1
    p_same_group: float = 0.7
    homepage_exponent: float = 1.4
    p_complement_after_cart: float = 0.6
    p_complement_after_click: float = 0.3
    p_complement_carry_over: float = 0.35
    carry_over_days: int = 7
    p_rebuy_due: float = 0.55
    p_mission_session: float = 0.9  # a session of a user on a mission brings its next step...
    p_mission_view: float = 0.5  # ...as the next view with this chance at each view, once per session
    mission_days: int = 21  # a mission without progress for longer is dropped
    p_leave_after_mission: float = 0.5  # the session ends after buying its mission step
    p_click: float = 0.29
    p_cart: float = 0.09
    p_purchase: float = 0.42
    min_session_gap_s: float = 31 * 60
    max_view_gap_s: float = 20 * 60


@dataclass(frozen=True)
class DayEvents:
    """One day's events as parallel arrays, sorted by time (timestamps in unix microseconds)."""

    user: IntArray
    item: IntArray
    event_type: NDArray[np.int8]
    ts_us: IntArray
    session: IntArray
    quantity: IntArray  # 0 for views and clicks

    def __len__(self) -> int:
        return len(self.user)


class _Log:
    """Accumulates events step by step."""

    def __init__(self) -> None:
        self.parts: list[tuple[IntArray, IntArray, int, IntArray, IntArray]] = []

    def add(self, sessions: IntArray, items: IntArray, kind: int, offset_us: IntArray, qty: IntArray) -> None:
        if len(sessions):
            self.parts.append((sessions, items, kind, offset_us, qty))

    def arrays(self) -> tuple[IntArray, IntArray, NDArray[np.int8], IntArray, IntArray]:
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=np.int8), empty, empty
        sessions = np.concatenate([p[0] for p in self.parts])
        items = np.concatenate([p[1] for p in self.parts])
        kinds = np.concatenate([np.full(len(p[0]), p[2], dtype=np.int8) for p in self.parts])
        offsets = np.concatenate([p[3] for p in self.parts])
        qty = np.concatenate([p[4] for p in self.parts])
        return sessions, items, kinds, offsets, qty


def plan_sessions(
    users: UserPopulation, day: int, weekday: int, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Which users shop today and how often: ``(session_user, session_rank)`` grouped by user.

    Users arriving today (after the first day) have at least one session; others draw a Poisson count from
    their activity, scaled by the weekday and a little day-to-day noise.
    """
    present = np.flatnonzero(users.arrival_day <= day)
    scale = WEEKDAY_WEIGHTS[weekday] * rng.lognormal(0.0, 0.05)
    counts = rng.poisson(users.activity[present] * scale)
    if day > 0:
        counts = np.where(users.arrival_day[present] == day, np.maximum(counts, 1), counts)
    counts = np.minimum(counts, 8)
    session_user = np.repeat(present, counts).astype(np.int64)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    rank = (np.arange(len(session_user)) - first).astype(np.int64)
    return session_user, rank


def simulate_day(
    catalogue: Catalogue,
    dynamics: CatalogueDynamics,
    users: UserPopulation,
    day: int,
    weekday: int,
    rng: np.random.Generator,
    behaviour: ShopBehaviour = ShopBehaviour(),
) -> DayEvents:
    """Simulate day ``day`` (``dynamics`` must already be advanced to it) and update users' memory.

    Returns events with ``ts_us`` relative to the day's midnight (``0 <= ts_us < DAY_US``).
    """
    b = behaviour
    session_user, rank = plan_sessions(users, day, weekday, rng)
    n_sessions = len(session_user)
    n_views = np.minimum(rng.geometric(1.0 / b.mean_views, n_sessions), b.max_views)

    cat_sampler = SegmentSampler(catalogue.item_category, catalogue.n_categories)
    cat_sampler.set_weights(dynamics.weight)
    group_sampler = SegmentSampler(catalogue.item_subcategory, catalogue.n_subcategories)
    group_sampler.set_weights(dynamics.weight)
    brand_sampler = SegmentSampler(catalogue.item_brand, catalogue.n_brands)
    brand_sampler.set_weights(dynamics.weight)
    shop_sampler = SegmentSampler(np.zeros(catalogue.n_items, dtype=np.int64), 1)
    shop_sampler.set_weights(dynamics.weight**b.homepage_exponent)
    samplers = (cat_sampler, group_sampler, brand_sampler, shop_sampler)

    # Session memory.
    prev_item = np.full(n_sessions, -1, dtype=np.int64)
    anchor = users.anchor_item[session_user].copy()
    recent = (day - users.anchor_day[session_user]) <= b.carry_over_days
    anchor[~recent] = -1
    p_complement = np.where(anchor >= 0, b.p_complement_carry_over, 0.0)
    rebuy = _rebuy_candidates(catalogue, users, session_user, rank, day, b, rng)
    mission = _mission_candidates(catalogue, dynamics, users, session_user, day, b, rng)
    clock = np.zeros(n_sessions, dtype=np.int64)

    cat_median = catalogue.category_median_price
    log = _Log()
    for step in range(int(n_views.max(initial=0))):
        s = np.flatnonzero(n_views > step)
        user = session_user[s]
        item, move = _next_items(
            catalogue,
            dynamics,
            users,
            samplers,
            s,
            user,
            step,
            prev_item,
            anchor,
            p_complement,
            rebuy,
            mission,
            b,
            rng,
        )

        # Funnel.
        cat = catalogue.item_category[item]
        liked = (users.taste_categories[user] == cat[:, None]).any(axis=1)
        fan = (users.favourite_brands[user] == catalogue.item_brand[item][:, None]).any(axis=1)
        price = dynamics.price[item]
        relative = price / (cat_median[cat] * users.budget[user])
        price_factor = np.clip(relative**-0.7, 0.2, 2.0)
        is_comp = move == COMPLEMENT
        is_rebuy = (move == REBUY) | (move == MISSION)  # what the user came for: converts like a re-buy
        p_click = (
            b.p_click * np.where(liked, 1.3, 0.85) * np.where(fan, 1.25, 1.0) * np.where(is_comp, 1.3, 1.0)
        )
        p_click = np.where(is_rebuy, 0.85, np.minimum(p_click, 0.95))
        p_cart = b.p_cart * price_factor * np.where(is_comp, 1.6, 1.0)
        p_cart = np.where(is_rebuy, 0.65, np.minimum(p_cart, 0.9)) * dynamics.in_stock[item]
        p_buy = np.where(is_rebuy, 0.85, np.minimum(b.p_purchase * np.sqrt(price_factor), 0.95))
        u = rng.random((3, len(s)))
        clicked = u[0] < p_click
        carted = clicked & (u[1] < p_cart)
        bought = carted & (u[2] < p_buy)

        # Timing: view now; click, cart, purchase follow within seconds to minutes.
        t_view = clock[s]
        t_click = t_view + rng.integers(2 * SECOND_US, 25 * SECOND_US, len(s))
        t_cart = t_click + rng.integers(5 * SECOND_US, 90 * SECOND_US, len(s))
        t_buy = t_cart + rng.integers(20 * SECOND_US, 300 * SECOND_US, len(s))
        consumable = catalogue.category_consumable[cat]
        qty = np.where(consumable, rng.geometric(0.6, len(s)), 1 + (rng.random(len(s)) < 0.05)).astype(
            np.int64
        )
        zero = np.zeros(len(s), dtype=np.int64)
        log.add(s, item, VIEW, t_view, zero)
        log.add(s[clicked], item[clicked], CLICK, t_click[clicked], zero[clicked])
        log.add(s[carted], item[carted], ADD_TO_CART, t_cart[carted], qty[carted])
        log.add(s[bought], item[bought], PURCHASE, t_buy[bought], qty[bought])
        last = np.where(bought, t_buy, np.where(carted, t_cart, np.where(clicked, t_click, t_view)))
        gap = np.clip(rng.lognormal(np.log(35.0), 0.9, len(s)), 1.0, b.max_view_gap_s) * SECOND_US
        clock[s] = last + gap.astype(np.int64)
        # Goal-directed sessions: having bought the mission step it came for, the shopper often leaves.
        leave = bought & (move == MISSION) & (rng.random(len(s)) < b.p_leave_after_mission)
        n_views[s[leave]] = step + 1

        # Session memory: clicks and carts become the anchor whose complements come next.
        prev_item[s] = item
        p_next = np.where(is_comp, p_complement[s] * 0.7, p_complement[s] * 0.85)
        p_next = np.where(clicked, np.maximum(p_next, b.p_complement_after_click), p_next)
        p_next = np.where(carted, b.p_complement_after_cart, p_next)
        anchor[s] = np.where(clicked, item, anchor[s])
        p_complement[s] = p_next

    sessions, items, kinds, offsets, qty = log.arrays()
    # a user's first session today starts at least the session gap after their last event of an earlier day
    not_before = users.last_event_us[session_user] - day * DAY_US + int(b.min_session_gap_s * SECOND_US)
    start = _session_starts(session_user, rank, sessions, offsets, b, rng, not_before)
    ts = start[sessions] + offsets
    keep = ts < DAY_US
    order = np.lexsort((offsets[keep], sessions[keep], ts[keep]))
    events = DayEvents(
        user=session_user[sessions[keep]][order],
        item=items[keep][order],
        event_type=kinds[keep][order],
        ts_us=ts[keep][order],
        session=sessions[keep][order],
        quantity=qty[keep][order],
    )
    _remember(catalogue, users, events, day, b.mission_days)
    return events


def _rebuy_candidates(
    catalogue: Catalogue,
    users: UserPopulation,
    session_user: IntArray,
    rank: IntArray,
    day: int,
    b: ShopBehaviour,
    rng: np.random.Generator,
) -> IntArray:
    """The consumable each session opens with (-1: none): first session of the day, once its cycle is due."""
    item = users.consumable_item[session_user]
    has = (item >= 0) & (rank == 0)
    cycle = catalogue.category_rebuy_days[catalogue.item_category[np.maximum(item, 0)]]
    elapsed = day - users.consumable_day[session_user]
    due = has & (elapsed >= cycle * rng.uniform(0.7, 1.3, len(item)))
    chosen = due & (rng.random(len(item)) < b.p_rebuy_due)
    return np.where(chosen, item, -1)


def _mission_candidates(
    catalogue: Catalogue,
    dynamics: CatalogueDynamics,
    users: UserPopulation,
    session_user: IntArray,
    day: int,
    b: ShopBehaviour,
    rng: np.random.Generator,
) -> IntArray:
    """The mission step each session brings (-1: none): the user's next step item, if the mission is live and
    the item in the catalogue today."""
    root = users.mission_root[session_user]
    active = (root >= 0) & (day - users.mission_day[session_user] <= b.mission_days)
    step = np.minimum(users.mission_step[session_user], catalogue.mission_items.shape[1] - 1)
    item = np.where(active, catalogue.mission_items[np.maximum(root, 0), step], -1)
    ok = item >= 0
    ok[ok] = dynamics.available[item[ok]]
    chosen = ok & (rng.random(len(item)) < b.p_mission_session)
    return np.where(chosen, item, -1)


def _next_items(
    catalogue: Catalogue,
    dynamics: CatalogueDynamics,
    users: UserPopulation,
    samplers: tuple[SegmentSampler, SegmentSampler, SegmentSampler, SegmentSampler],
    s: IntArray,
    user: IntArray,
    step: int,
    prev_item: IntArray,
    anchor: IntArray,
    p_complement: FloatArray,
    rebuy: IntArray,
    mission: IntArray,
    b: ShopBehaviour,
    rng: np.random.Generator,
) -> tuple[IntArray, IntArray]:
    """The item each live session views next, and the move that chose it.

    ``samplers`` draw by today's weights within a category, a style group, a brand, and the whole shop.
    """
    cat_sampler, group_sampler, brand_sampler, shop_sampler = samplers
    n = len(s)
    u = rng.random((2, n))
    prev = prev_item[s]
    # Without a previous item the SIMILAR share goes to TASTE.
    x = u[1] * (b.p_similar + b.p_taste + b.p_brand + b.p_popular)
    p_sim = np.where(prev >= 0, b.p_similar, 0.0)
    move = np.select(
        [x < p_sim, x < b.p_similar + b.p_taste, x < b.p_similar + b.p_taste + b.p_brand],
        [SIMILAR, TASTE, BRAND],
        POPULAR,
    )
    move = np.where((anchor[s] >= 0) & (u[0] < p_complement[s]), COMPLEMENT, move)
    move = np.where((mission[s] >= 0) & (rng.random(n) < b.p_mission_view), MISSION, move)
    if step == 0:
        move = np.where(rebuy[s] >= 0, REBUY, move)
    item = np.full(n, -1, dtype=np.int64)

    idx = np.flatnonzero(move == COMPLEMENT)
    if len(idx):
        a = anchor[s[idx]]
        count = catalogue.n_complements[a]
        slot = (rng.random(len(idx)) * np.maximum(count, 1)).astype(np.int64)
        comp = np.where(count > 0, catalogue.complements[a, np.minimum(slot, 2)], -1)
        ok = comp >= 0
        ok[ok] = dynamics.available[comp[ok]]
        item[idx] = np.where(ok, comp, -1)
    idx = np.flatnonzero(move == SIMILAR)
    if len(idx):
        # Mostly the same style group as the previous item, sometimes anywhere in its category.
        same_group = rng.random(len(idx)) < b.p_same_group
        p = prev[idx]
        item[idx] = np.where(
            same_group,
            group_sampler.sample(catalogue.item_subcategory[p], rng),
            cat_sampler.sample(catalogue.item_category[p], rng),
        )
    idx = np.flatnonzero(move == TASTE)
    if len(idx):
        item[idx] = group_sampler.sample(users.taste_group(user[idx], rng), rng)
    idx = np.flatnonzero(move == BRAND)
    if len(idx):
        slot = rng.integers(0, users.favourite_brands.shape[1], len(idx))
        item[idx] = brand_sampler.sample(users.favourite_brands[user[idx], slot], rng)
    idx = np.flatnonzero(move == REBUY)
    if len(idx):
        item[idx] = rebuy[s[idx]]
    idx = np.flatnonzero(move == MISSION)
    if len(idx):
        item[idx] = mission[s[idx]]
        mission[s[idx]] = -1  # once per session
    missing = np.flatnonzero(item < 0)
    if len(missing):
        item[missing] = shop_sampler.sample(np.zeros(len(missing), dtype=np.int64), rng)
        move[missing] = POPULAR
    return item, move.astype(np.int64)


def _session_starts(
    session_user: IntArray,
    rank: IntArray,
    sessions: IntArray,
    offsets: IntArray,
    b: ShopBehaviour,
    rng: np.random.Generator,
    not_before: IntArray,
) -> IntArray:
    """Start time (microseconds after midnight) of every session, following the hour-of-day curve.

    A user's sessions keep their order and are separated by at least ``min_session_gap_s`` of silence, also
    from the user's last event of an earlier day (``not_before``, per session, for each user's first
    session), so downstream gap-based sessionisation agrees with ``session_id``.
    """
    n = len(session_user)
    hours = rng.choice(24, n, p=HOUR_WEIGHTS / HOUR_WEIGHTS.sum())
    start = hours * 3600 * SECOND_US + rng.integers(0, 3600 * SECOND_US, n)
    # Sorted starts per user, assigned in rank order (sessions are grouped by user).
    start = start[np.lexsort((start, session_user))]
    first = rank == 0
    start[first] = np.maximum(start[first], not_before[first])
    duration = np.zeros(n, dtype=np.int64)
    np.maximum.at(duration, sessions, offsets)
    gap = int(b.min_session_gap_s * SECOND_US)
    for r in range(1, int(rank.max(initial=0)) + 1):
        idx = np.flatnonzero(rank == r)
        earliest = start[idx - 1] + duration[idx - 1] + gap
        start[idx] = np.maximum(start[idx], earliest + rng.integers(0, 600 * SECOND_US, len(idx)))
    return start.astype(np.int64)


def _remember(
    catalogue: Catalogue, users: UserPopulation, events: DayEvents, day: int, mission_days: int
) -> None:
    """Carry the last carted item, the last consumable bought, the mission and the time of the last event
    over to the following days."""
    kinds = events.event_type
    clicked = np.flatnonzero(kinds != VIEW)
    _advance_missions(catalogue, users, events.user[clicked], events.item[clicked], day, mission_days)
    who, last_ts = _last_per_user(events.user, events.ts_us)
    users.last_event_us[who] = day * DAY_US + last_ts
    carted = np.flatnonzero((kinds == ADD_TO_CART) | (kinds == PURCHASE))
    who, item = _last_per_user(events.user[carted], events.item[carted])
    users.anchor_item[who] = item
    users.anchor_day[who] = day
    consumable = catalogue.category_consumable[catalogue.item_category[events.item]]
    bought = np.flatnonzero((kinds == PURCHASE) & consumable)
    who, item = _last_per_user(events.user[bought], events.item[bought])
    users.consumable_item[who] = item
    users.consumable_day[who] = day


def _advance_missions(
    catalogue: Catalogue, users: UserPopulation, user: IntArray, item: IntArray, day: int, mission_days: int
) -> None:
    """Missions move on when their next step's item was clicked today (and end after the last step); a user
    without a mission under way starts one with the last root item they clicked today."""
    root = users.mission_root[user]
    on_mission = root >= 0
    step = users.mission_step[user]
    expected = np.full(len(user), -1, dtype=np.int64)
    expected[on_mission] = catalogue.mission_items[root[on_mission], step[on_mission]]
    movers = np.unique(user[on_mission & (item == expected)])
    if len(movers):
        users.mission_step[movers] += 1
        users.mission_day[movers] = day
        done = users.mission_step[movers] >= catalogue.n_mission_steps[users.mission_root[movers]]
        users.mission_root[movers[done]] = -1
    stale = day - users.mission_day[user] > mission_days
    free = (users.mission_root[user] < 0) | stale
    starts = np.flatnonzero(free & (catalogue.n_mission_steps[item] > 0))
    who, root_item = _last_per_user(user[starts], item[starts])
    users.mission_root[who] = root_item
    users.mission_step[who] = 0
    users.mission_day[who] = day


def _last_per_user(user: IntArray, item: IntArray) -> tuple[IntArray, IntArray]:
    """The last ``item`` of each user in time-ordered parallel arrays."""
    who, first_from_end = np.unique(user[::-1], return_index=True)
    return who.astype(np.int64), item[::-1][first_from_end]
