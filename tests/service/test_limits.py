"""Limits: 413 for big bodies (declared or chunked), 422 for bad input, 429 with Retry-After; never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from core.settings import Settings
from models.package import ModelPackage
from service.app import create_app
from service.identity import CHAMPION
from service.limits import TokenBuckets
from tests.service.conftest import serving_of


def test_body_over_64_kib_is_413_with_or_without_content_length(client: TestClient) -> None:
    big = b'{"user_id": "' + b"x" * (70 * 1024) + b'"}'
    declared = client.post("/recommendations", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.headers["x-model-version"] == "1"

    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    chunked = client.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 413
    small = client.post(
        "/recommendations",
        content=iter([b'{"user_id": ', b'"u1"}']),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200  # a small chunked body is read and replayed to the route


def test_bad_input_is_422_never_500(client: TestClient, service_settings: Settings) -> None:
    cases = [
        ("/recommendations", {"user_id": "u", "k": 0}),
        ("/recommendations", {"user_id": "u", "k": 101}),
        ("/recommendations", {"user_id": ""}),
        ("/recommendations", {"user_id": "u", "context": {"surprise": 1}}),
        ("/events", {"events": []}),
        ("/events", {"events": [{"user_id": "u", "item_id": "i00001", "event_type": "like"}]}),
        (
            "/events",
            {"events": [{"user_id": "u", "item_id": "i1", "event_type": "view", "ts": "2026-01-01T00:00"}]},
        ),
        (
            "/feedback",
            {"feedback": [{"recommendation_id": "nope", "user_id": "u", "item_id": "i", "kind": "click"}]},
        ),
    ]
    for path, body in cases:
        response = client.post(path, json=body)
        assert response.status_code == 422, (path, body, response.text)
        assert '"input"' not in response.text  # the input is not echoed back
    too_many = {"events": [{"user_id": "u", "item_id": "i00001", "event_type": "view"}] * 501}
    assert service_settings.serve_max_events == 500
    refused = client.post("/events", json=too_many)
    assert refused.status_code == 422 and refused.json()["detail"][0]["type"] == "too_long"
    row = {"recommendation_id": "0" * 32 + ".h1", "user_id": "u", "item_id": "i00001", "kind": "click"}
    refused = client.post("/feedback", json={"feedback": [row] * 501})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "feedback"]
    malformed = client.post("/events", content=b'{"events": [', headers={"content-type": "application/json"})
    assert malformed.status_code == 422
    surrogate = client.post("/recommendations", content=b'{"user_id": "\\ud800"}',
                            headers={"content-type": "application/json"})  # fmt: skip
    assert surrogate.status_code == 422


def test_rate_limit_answers_429_with_retry_after(
    recops_settings: Settings, package: ModelPackage, tmp_path: Path
) -> None:
    settings = recops_settings.model_copy(update={"serve_rate_limit_per_s": 0.5, "serve_rate_limit_burst": 3})
    app = create_app(settings, watch=False)
    app.state.recops.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    with TestClient(app) as client:
        codes = [client.post("/recommendations", json={"user_id": "u"}).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        limited = client.post("/recommendations", json={"user_id": "u"})
        assert limited.headers["retry-after"] == "2" and limited.headers["x-model-version"] == "1"
        assert client.get("/healthz").status_code == 200  # probes are never limited
        assert "recops_rate_limited_total 3.0" in client.get("/metrics").text


def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    buckets = TokenBuckets(rate=2.0, burst=2, clock=lambda: now[0])
    assert [buckets.take("a"), buckets.take("a")] == [0.0, 0.0]
    assert buckets.take("a") == 0.5
    assert buckets.take("b") == 0.0  # per client
    now[0] = 1.0
    assert buckets.take("a") == 0.0


def test_hot_path_answers_like_the_declared_route(client: TestClient) -> None:
    """POST /recommendations is answered by service.hot_path: same 422 shape as FastAPI's, JSON media types
    with parameters accepted, a non-JSON body handed on to FastAPI's route (422, never a 500)."""
    bad = client.post("/recommendations", json={"user_id": "u", "k": 0})
    assert bad.status_code == 422 and bad.headers["x-model-version"] == "1"
    assert bad.json()["detail"] == [
        {
            "loc": ["body", "k"],
            "msg": "Input should be greater than or equal to 1",
            "type": "greater_than_equal",
        }
    ]
    nested = client.post("/recommendations", json={"user_id": "u", "context": {"exclude": [""]}})
    assert nested.status_code == 422 and nested.json()["detail"][0]["loc"] == [
        "body",
        "context",
        "exclude",
        "0",
    ]
    broken = client.post(
        "/recommendations", content=b'{"user_id": ', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    vendor = client.post(
        "/recommendations",
        content=b'{"user_id": "u1", "k": 3}',
        headers={"content-type": "application/vnd.shop+json; charset=utf-8"},
    )
    assert vendor.status_code == 200 and len(vendor.json()["items"]) == 3
    text = client.post(
        "/recommendations", content=b'{"user_id": "u1"}', headers={"content-type": "text/plain"}
    )
    assert text.status_code == 422 and text.headers["x-model-version"] == "1"
