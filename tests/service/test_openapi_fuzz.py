"""Schemathesis: at least 1,000 generated requests (valid and invalid) against the OpenAPI, never a 5xx."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode

from core.settings import Settings
from models.package import ModelPackage
from service.app import create_app
from service.identity import CHAMPION
from tests.service.conftest import serving_of

EXAMPLES_PER_MODE = 510


def test_generated_requests_never_get_a_server_error(
    service_settings: Settings, package: ModelPackage, tmp_path: Path
) -> None:
    app = create_app(service_settings, watch=False)
    app.state.recops.holder.swap(CHAMPION, serving_of(package, 1, tmp_path))
    statuses: Counter[int] = Counter()
    operations: Counter[str] = Counter()
    failures: list[str] = []
    with TestClient(app):  # runs the lifespan (feedback writer, online store) for the app schemathesis calls
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=schema.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES_PER_MODE,
                deadline=None,
                database=None,
                derandomize=True,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case[Any]) -> None:
                response = case.call()
                statuses[response.status_code] += 1
                operations[case.operation.label] += 1
                if response.status_code >= 500:
                    failures.append(f"{case.operation.label} {response.status_code}: {case.body!r:.300}")
                elif response.status_code < 300 and "json" in response.headers.get("content-type", ""):
                    json.loads(response.content)
                assert "x-model-version" in {k.lower() for k in response.headers}

            call()
    total = sum(statuses.values())
    print(
        f"\nschemathesis: {total} requests, statuses {dict(sorted(statuses.items()))}, "
        f"per operation {dict(operations)}"
    )
    assert not failures, failures[:5]
    assert total >= 1000
    assert len(operations) >= 6 and statuses[200] > 100 and statuses[422] > 100
