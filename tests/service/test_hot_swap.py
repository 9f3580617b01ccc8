"""The scorer follows a real MLflow server: not ready before a champion exists, hot swaps under a concurrent
request loop with zero 5xx and the new version visible within one poll interval of each alias move (the
move is announced on Redis as the promotion step does), refuses a corrupted version while the old one keeps
serving (found by polling alone), and starts from the disk cache when MLflow is down."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from pydantic import SecretStr

from core.settings import Settings
from registry.aliases import alias_lock, move_alias
from registry.audit import audit_log
from registry.client import mlflow_client
from registry.model_cache import pointer_path, read_json
from registry.notices import redis_notifier
from service.app import create_app
from tests.conftest import MLflowServer, RedisEndpoint, S3Endpoint
from tests.registry_helpers import fit_package, log_package, register_run, write_features_for
from tests.service.live_server import live_server

pytestmark = pytest.mark.integration

POLL_S = 1.0


@pytest.fixture
def server_settings(recops_settings: Settings, mlflow_server: MLflowServer) -> Settings:
    tag = secrets.token_hex(4)
    return recops_settings.model_copy(
        update={
            "mlflow_tracking_uri": mlflow_server.tracking_uri,
            "mlflow_registry_uri": mlflow_server.tracking_uri,
            "mlflow_experiment": f"recops-serve-{tag}",
            "model_name": f"recops-serve-{tag}",
            "serve_poll_interval_s": POLL_S,
            "serve_rate_limit_per_s": 0.0,
        }
    )


def _register(settings: Settings, fs: Any, kind: str, tmp: Path, alias: str | None = None) -> tuple[int, str]:
    logged = log_package(settings, fit_package(fs, kind), tmp, metrics={"ndcg_at_10": 0.3})
    return register_run(settings, logged, alias), logged.model_id


def _move(settings: Settings, version: int, alias: str = "champion", announce: bool = False) -> float:
    """Point ``alias`` at ``version`` the way promotion and rollback do (audited move under the alias lock);
    ``announce``: with the registry's Redis notifier, which publishes the notice after the move.
    Returns when the move was done (the clock starts before the notice)."""
    moved = 0.0

    def notify(model: str, moved_alias: str, to_version: int) -> None:
        nonlocal moved
        moved = time.monotonic()
        announcer = redis_notifier(settings) if announce else None
        if announcer is not None:
            announcer(model, moved_alias, to_version)

    client = mlflow_client(settings)
    with alias_lock(client, audit_log(settings), settings.model_name, notify) as lock:
        move_alias(lock, alias=alias, to_version=version, actor="test", action="promote", reason="hot swap")
    assert moved > 0, "the move happened and told the notifier"
    return moved


def _metric(base: str, line: str) -> bool:
    return line in httpx.get(f"{base}/metrics").text


def _wait(predicate: Callable[[], bool], timeout_s: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(0.02)
    return time.monotonic() - start


@dataclass
class Load:
    """Threads posting recommendations in a loop, recording (time, status, version header)."""

    base: str
    results: list[tuple[float, int, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, n: int) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    r = client.post(
                        "/recommendations", json={"user_id": f"u{n}-{len(self.results) % 50}", "k": 5}
                    )
                    self.results.append(
                        (time.monotonic(), r.status_code, r.headers.get("x-model-version", ""))
                    )
                except Exception as exc:  # a dropped connection is a failure too
                    self.errors.append(exc)

    def seen_since(self, since: float) -> set[str]:
        return {version for t, status, version in list(self.results) if t >= since and status == 200}


def test_readiness_hot_swaps_under_load_and_mlflow_down_start(
    server_settings: Settings, redis_url: RedisEndpoint, tmp_path: Path
) -> None:
    settings = server_settings.model_copy(
        update={"redis_url": SecretStr(redis_url.url), "redis_prefix": redis_url.prefix}
    )
    fs = write_features_for(settings)
    app = create_app(settings)
    with live_server(app) as base:
        assert httpx.get(f"{base}/readyz").status_code == 503  # no champion yet
        v1, _ = _register(settings, fs, "good", tmp_path, "champion")
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30)
        _wait(app.state.recops.watcher.listening.is_set, 10)
        others = [_register(settings, fs, kind, tmp_path)[0] for kind in ("popularity", "good", "bad")]
        load = Load(base)
        threads = [threading.Thread(target=load.run, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        delays = []
        try:
            time.sleep(0.5)
            for n, version in enumerate(others, start=1):
                # as in the pipeline: registration names the challenger (the scorer prefetches it), then
                # promotion moves champion to it
                _move(settings, version, "challenger", announce=True)
                _wait(lambda n=n: _metric(base, f"recops_model_prefetched_total {n}.0"), 15)  # type: ignore[misc]
                moved = _move(settings, version, announce=True)
                delays.append(_wait(lambda v=version, m=moved: str(v) in load.seen_since(m), 15))  # type: ignore[misc]
                time.sleep(0.3)
        finally:
            load.stop.set()
            for t in threads:
                t.join(timeout=30)
        statuses = [status for _, status, _ in load.results]
        assert not load.errors and len(statuses) > 100
        assert all(s == 200 for s in statuses), sorted(set(statuses))
        # each move is served within one poll interval of the move: the notice wakes the watcher at once
        # and the version is already verified in the disk cache, so the delay is a registry call, a local
        # load and the warm-up
        assert max(delays) < POLL_S, delays
        metrics = httpx.get(f"{base}/metrics").text
        assert 'recops_model_swaps_total{alias="champion"} 3.0' in metrics
        assert "recops_registry_notices_total 6.0" in metrics
        assert f'recops_model_version{{alias="champion"}} {others[-1]}.0' in metrics
        print(
            f"\nhot swap: {len(statuses)} requests, 0 errors, visible after {[round(d, 2) for d in delays]} s"
        )

    down = settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9", "mlflow_registry_uri": "http://127.0.0.1:9"}
    )
    with live_server(create_app(down)) as base:
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30)
        answer = httpx.post(f"{base}/recommendations", json={"user_id": "u1"})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == str(others[-1])
    assert v1 == others[0] - 1


def _corrupt(s3: S3Endpoint, bucket: str, model_id: str) -> str:
    client = s3.client()
    keys: list[str] = [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for obj in page.get("Contents", [])
    ]
    target = next(k for k in keys if model_id in k and k.endswith("package/model/weights.safetensors"))
    client.put_object(Bucket=bucket, Key=target, Body=b"tampered after registration")
    return target


def test_a_corrupted_version_is_refused_and_the_old_one_keeps_serving(
    server_settings: Settings, mlflow_server: MLflowServer, s3_server: S3Endpoint, tmp_path: Path
) -> None:
    settings = server_settings
    fs = write_features_for(settings)
    good, _ = _register(settings, fs, "good", tmp_path, "champion")
    broken, model_id = _register(settings, fs, "good", tmp_path)
    _corrupt(s3_server, mlflow_server.artifacts_bucket, model_id)
    with live_server(create_app(settings)) as base:
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30)
        _move(settings, broken)
        _wait(
            lambda: 'recops_model_refused_total{alias="champion"} 1.0' in httpx.get(f"{base}/metrics").text,
            15,
        )
        time.sleep(2 * POLL_S)  # later polls do not retry it (nor crash the watcher)
        for _ in range(20):
            answer = httpx.post(f"{base}/recommendations", json={"user_id": "u7"})
            assert answer.status_code == 200 and answer.headers["x-model-version"] == str(good)
        metrics = httpx.get(f"{base}/metrics").text
        assert 'recops_model_refused_total{alias="champion"} 1.0' in metrics
        assert httpx.get(f"{base}/readyz").json()["models"] == {"champion": good}

        # A version that verifies and loads but whose smoke prediction gives NaN scores is refused too.
        nan_package = fit_package(fs, "popularity")
        nan_package.model.item_popularity[:] = np.nan
        nan_package.model.cold_popularity[:] = np.nan
        logged = log_package(settings, nan_package, tmp_path, metrics={"ndcg_at_10": 0.3})
        _move(settings, register_run(settings, logged))
        _wait(
            lambda: 'recops_model_refused_total{alias="champion"} 2.0' in httpx.get(f"{base}/metrics").text,
            15,
        )
        answer = httpx.post(f"{base}/recommendations", json={"user_id": "u7"})
        assert answer.status_code == 200 and answer.headers["x-model-version"] == str(good)
    # the disk cache still names the good version as last good: a restart with MLflow down serves it
    pointer = read_json(pointer_path(settings, settings.model_name, "champion"))
    assert pointer is not None and pointer["version"] == good
    down = settings.model_copy(
        update={"mlflow_tracking_uri": "http://127.0.0.1:9", "mlflow_registry_uri": "http://127.0.0.1:9"}
    )
    with live_server(create_app(down)) as base:
        _wait(lambda: httpx.get(f"{base}/readyz").status_code == 200, 30)
        assert httpx.get(f"{base}/healthz").headers["x-model-version"] == str(good)
