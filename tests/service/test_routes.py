"""The HTTP routes through the real app (TestClient): recommendations, events, feedback, forget, probes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from core.feedback import feedback_engine, read_feedback, read_recommendations
from core.settings import Settings
from models.package import ModelPackage
from service.app import create_app
from service.identity import pseudonym
from service.schemas import RecommendationResponse
from tests.conftest import RedisEndpoint


def _recommend(client: TestClient, user: str = "alice", **body: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/recommendations", json={"user_id": user, **body})
    assert response.status_code == 200, response.text
    assert response.headers["x-model-version"] == "1"
    assert response.headers["content-type"] == "application/json"
    RecommendationResponse.model_validate(response.json(), strict=True)  # the documented schema, exactly
    return response.json()  # type: ignore[no-any-return]


def test_cold_shopper_gets_trending_then_events_change_the_next_answer(client: TestClient) -> None:
    first = _recommend(client, k=5)
    assert first["cold_start"] and first["model_version"] == 1 and first["variant"] == "champion"
    assert len(first["items"]) == 5 and first["items"][0]["explanation"].startswith("popular in ")
    assert {"item_id", "score", "category", "brand", "price", "in_stock"} <= set(first["items"][0])
    viewed = ["i00000", "i00005", "i00010"]  # category cat0
    events = [{"user_id": "alice", "item_id": i, "event_type": "view"} for i in viewed]
    events.append({"user_id": "alice", "item_id": "no-such-item", "event_type": "view"})
    answer = client.post("/events", json={"events": events})
    assert answer.status_code == 200 and answer.json() == {"accepted": 3, "unknown_items": 1}
    second = _recommend(client, k=5, context={})
    assert not second["cold_start"]
    ids = [i["item_id"] for i in second["items"]]
    assert not set(ids) & set(viewed)  # seen items are excluded
    assert second["items"][0]["category"] == "cat0"
    assert second["items"][0]["explanation"].startswith("because you viewed i000")
    bought = ids[0]
    client.post(
        "/events", json={"events": [{"user_id": "alice", "item_id": bought, "event_type": "purchase"}]}
    )
    assert bought not in [i["item_id"] for i in _recommend(client, k=5)["items"]]


def test_context_category_exclusions_and_stock_from_events(client: TestClient) -> None:
    answer = _recommend(client, "bob", k=4, context={"category": "cat3", "exclude": ["i00003"]})
    ids = [i["item_id"] for i in answer["items"]]
    assert all(i["category"] == "cat3" for i in answer["items"]) and "i00003" not in ids
    out = {"user_id": "shop-feed", "item_id": ids[0], "event_type": "view", "in_stock": False}
    assert client.post("/events", json={"events": [out]}).status_code == 200
    again = [i["item_id"] for i in _recommend(client, "bob", k=4, context={"category": "cat3"})["items"]]
    assert ids[0] not in again
    session = _recommend(client, "carol", k=3, context={"session_items": ["i00001", "i00006"]})
    assert not session["cold_start"] and session["items"][0]["category"] == "cat1"


def test_feedback_is_stored_and_delete_forgets_everything(
    client: TestClient, service_settings: Settings
) -> None:
    answer = _recommend(client, "dave", k=3)
    rec_id, item = answer["recommendation_id"], answer["items"][0]["item_id"]
    rows = [
        {"recommendation_id": rec_id, "user_id": "dave", "item_id": item, "kind": "impression"},
        {"recommendation_id": rec_id, "user_id": "dave", "item_id": item, "kind": "click"},
    ]
    stored = client.post("/feedback", json={"feedback": rows})
    assert stored.status_code == 202 and stored.json() == {"accepted": 2, "dropped": 0}
    client.post("/events", json={"events": [{"user_id": "dave", "item_id": "i00002", "event_type": "view"}]})
    client.app.state.recops.writer.flush()  # type: ignore[attr-defined]
    engine = feedback_engine(service_settings)
    dave = pseudonym("dave", service_settings)
    kept = [r for r in read_feedback(engine) if r["user_id"] == dave]
    assert [(r["kind"], r["model_version"], r["variant"]) for r in kept] == [
        ("impression", 1, "champion"),
        ("click", 1, "champion"),
    ]
    assert [r["recommendation_id"] for r in read_recommendations(engine)] == [rec_id]
    assert "dave" not in str(read_feedback(engine)) + str(read_recommendations(engine))  # pseudonyms only
    gone = client.delete("/users/dave")
    assert gone.status_code == 200 and gone.json() == {
        "online_state_deleted": True,
        "feedback_rows_deleted": 3,
    }
    assert read_feedback(engine) == [] and read_recommendations(engine) == []
    assert _recommend(client, "dave", k=3)["cold_start"]  # the online history is gone too
    assert client.delete("/users/dave").json()["online_state_deleted"] is False


def test_probes_metrics_and_docs(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == {"champion": 1}
    _recommend(client, k=2)
    text = client.get("/metrics").text
    assert 'recops_recommendations_total{variant="champion"} 1.0' in text
    assert "recops_request_seconds_bucket" in text and 'route="/recommendations"' in text
    assert 'recops_fallbacks_total{reason="cold_start"} 1.0' in text
    schema = client.get("/openapi.json").json()
    assert {"/recommendations", "/events", "/feedback", "/users/{user_id}", "/readyz"} <= set(schema["paths"])
    assert client.get("/docs").status_code == 200


def test_not_ready_without_a_model(service_settings: Settings) -> None:
    app = create_app(service_settings, watch=False)
    with TestClient(app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json()["status"] == "loading"
        assert ready.headers["x-model-version"] == "none"
        busy = client.post("/recommendations", json={"user_id": "x"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"


def test_ab_split_is_sticky_and_recorded(
    service_settings: Settings, package: ModelPackage, tmp_path: Path
) -> None:
    from service.identity import CHALLENGER, CHAMPION
    from tests.service.conftest import serving_of

    settings = service_settings.model_copy(update={"serve_challenger_share": 0.5})
    app = create_app(settings, watch=False)
    app.state.recops.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    app.state.recops.holder.swap(CHALLENGER, serving_of(package, 2, tmp_path))
    with TestClient(app) as client:
        seen: dict[str, set[str]] = {}
        for n in range(40):
            for _ in range(2):
                r = client.post("/recommendations", json={"user_id": f"user{n}", "k": 1})
                body = r.json()
                assert r.headers["x-model-version"] == str(body["model_version"])
                assert body["model_version"] == (2 if body["variant"] == "challenger" else 1)
                assert body["recommendation_id"].endswith(("c2", "h1"))
                seen.setdefault(f"user{n}", set()).add(body["variant"])
        assert all(len(v) == 1 for v in seen.values())  # sticky
        arms = [v.pop() for v in seen.values()]
        assert 8 <= arms.count("challenger") <= 32


def test_access_log_is_structured_and_holds_no_user_id(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="recops.access"):
        client.post("/recommendations", json={"user_id": "erin@example.com", "k": 2})
        client.delete("/users/erin@example.com")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "recops.access"]
    assert [(line["method"], line["route"], line["status"]) for line in lines] == [
        ("POST", "/recommendations", 200),
        ("DELETE", "/users/{user_id}", 200),
    ]
    assert lines[0]["model_version"] == 1 and lines[0]["variant"] == "champion"
    assert "erin" not in caplog.text


def test_online_store_down_falls_back_to_the_model_and_recovers(
    service_settings: Settings, package: ModelPackage, tmp_path: Path, redis_url: RedisEndpoint
) -> None:
    import socket

    from service.identity import CHAMPION
    from service.online_store import StoreLimits
    from service.redis_store import RedisStore
    from tests.service.conftest import serving_of

    with socket.socket() as sock:  # a port nothing listens on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{closed}/0", "recops-test-down:", StoreLimits())
    app = create_app(service_settings, store=store, watch=False)
    st = app.state.recops
    st.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    with TestClient(app) as client:
        for _ in range(3):  # the first failure is read on the loop, later ones off it: all answer
            body = _recommend(client, "dora", k=3)
            assert body["cold_start"] is True and len(body["items"]) == 3
        assert st.store_suspect is True
        text = client.get("/metrics").text
        assert 'recops_fallbacks_total{reason="online_store"} 3.0' in text
        st.store = RedisStore(redis_url.url, redis_url.prefix, StoreLimits())
        _recommend(client, "dora", k=3)
        assert st.store_suspect is False  # the probe succeeded: back to reading on the loop
