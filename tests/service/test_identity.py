"""Identity at the service edge: recommendation ids (format, order, uniqueness) and the sticky A/B arm."""

from __future__ import annotations

import re
import time

from service.identity import CHALLENGER, CHAMPION, new_recommendation_id, variant_for
from service.schemas import RECOMMENDATION_ID_PATTERN


def test_recommendation_ids_match_the_feedback_pattern_and_carry_variant_and_version() -> None:
    champion, challenger = new_recommendation_id(CHAMPION, 7), new_recommendation_id(CHALLENGER, 12)
    assert re.fullmatch(RECOMMENDATION_ID_PATTERN, champion) and champion.endswith(".h7")
    assert re.fullmatch(RECOMMENDATION_ID_PATTERN, challenger) and challenger.endswith(".c12")


def test_recommendation_ids_are_unique_and_ordered_by_time() -> None:
    first = [new_recommendation_id(CHAMPION, 1) for _ in range(5_000)]
    time.sleep(0.003)
    later = new_recommendation_id(CHAMPION, 1)
    assert len(set(first)) == len(first)
    assert all(later > earlier for earlier in first), "a later id sorts after every earlier one"
    stamp_ms = int(later[:12], 16)
    assert abs(stamp_ms - time.time() * 1000) < 5_000, "the first 48 bits are Unix milliseconds"


def test_variant_is_sticky_and_follows_the_share() -> None:
    users = [f"p_{i:020x}" for i in range(4_000)]
    arms = [variant_for(u, 0.25) for u in users]
    assert arms == [variant_for(u, 0.25) for u in users]
    assert 0.2 < arms.count(CHALLENGER) / len(arms) < 0.3
    assert {variant_for(u, 0.0) for u in users} == {CHAMPION}
