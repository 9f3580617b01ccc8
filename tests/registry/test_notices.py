"""Alias moves are announced on Redis so scorers swap at once; announcing never breaks a move."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from core.settings import Settings
from registry.aliases import CHAMPION, PREVIOUS, alias_lock, alias_version, move_alias
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.notices import notice_channel, redis_notifier
from registry.rollback import rollback
from tests.conftest import RedisEndpoint
from tests.registry_helpers import fit_package, log_package, register_run, write_features_for


def with_redis(settings: Settings, endpoint: RedisEndpoint) -> Settings:
    return settings.model_copy(update={"redis_url": SecretStr(endpoint.url), "redis_prefix": endpoint.prefix})


def received(pubsub: Any, count: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The next ``count`` messages' JSON payloads (fails the test when they do not come)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        message = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            out.append(json.loads(message["data"]))
    assert len(out) == count, f"expected {count} notices, got {out}"
    return out


def test_no_redis_means_no_notifier(recops_settings: Settings) -> None:
    assert recops_settings.redis_url is None
    assert redis_notifier(recops_settings) is None


def test_the_notifier_publishes_model_alias_and_version(
    recops_settings: Settings, redis_url: RedisEndpoint
) -> None:
    settings = with_redis(recops_settings, redis_url)
    announce = redis_notifier(settings)
    assert announce is not None
    with redis.Redis.from_url(redis_url.url) as client, client.pubsub() as pubsub:
        pubsub.subscribe(notice_channel(settings))
        pubsub.get_message(timeout=2)  # the subscribe confirmation
        announce("shop-model", "champion", 7)
        assert received(pubsub, 1) == [{"model": "shop-model", "alias": "champion", "version": 7}]
    assert notice_channel(settings) == f"{redis_url.prefix}registry:aliases"


def test_an_unreachable_redis_is_logged_and_never_raises(
    recops_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    settings = recops_settings.model_copy(update={"redis_url": SecretStr("redis://127.0.0.1:1/0")})
    announce = redis_notifier(settings)
    assert announce is not None
    with caplog.at_level(logging.WARNING, logger="registry.notices"):
        announce("shop-model", "champion", 3)
    assert "not announced" in caplog.text


def test_a_rollback_announces_both_moves_after_they_happened(
    recops_settings: Settings, redis_url: RedisEndpoint, tmp_path: Path
) -> None:
    fs = write_features_for(recops_settings)
    v1 = register_run(
        recops_settings, log_package(recops_settings, fit_package(fs, "popularity"), tmp_path, metrics={})
    )
    v2 = register_run(
        recops_settings, log_package(recops_settings, fit_package(fs, "good"), tmp_path, metrics={})
    )
    client, audit, name = (
        mlflow_client(recops_settings),
        audit_log(recops_settings),
        recops_settings.model_name,
    )
    with alias_lock(client, audit, name) as lock:  # v1 champion, then v2 (no notifier: nothing announced)
        move_alias(lock, alias=CHAMPION, to_version=v1, actor="seed", action="promote", reason="seed")
        move_alias(lock, alias=PREVIOUS, to_version=v1, actor="seed", action="promote", reason="seed")
        move_alias(lock, alias=CHAMPION, to_version=v2, actor="seed", action="promote", reason="seed")

    settings = with_redis(recops_settings, redis_url)
    with redis.Redis.from_url(redis_url.url) as redis_client, redis_client.pubsub() as pubsub:
        pubsub.subscribe(notice_channel(settings))
        pubsub.get_message(timeout=2)
        rollback(settings=settings, actor="oncall", reason="bad canary", verify=False)
        notices = received(pubsub, 2)
    assert notices == [
        {"model": name, "alias": PREVIOUS, "version": v2},
        {"model": name, "alias": CHAMPION, "version": v1},
    ]
    assert alias_version(client, name, CHAMPION) == v1, "the notice names what the registry now says"
