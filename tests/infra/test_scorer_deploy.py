"""The scoring service's deployment files: docker-compose and the Kubernetes manifests (no Docker engine or
cluster here, so their structure is what is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

INFRA = Path(__file__).resolve().parents[2] / "infra"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((INFRA / "docker-compose.yml").read_text(encoding="utf-8"))
    return loaded


def test_compose_runs_the_scorer_with_several_workers_published_on_loopback() -> None:
    scorer = compose()["services"]["scorer"]
    command = scorer["command"]
    assert command[:2] == ["serve", "--host"] and "--workers" in command
    assert command[command.index("--workers") + 1] == "${RECOPS_SERVE_WORKERS:-4}"
    assert all(port.startswith("127.0.0.1:") for port in scorer["ports"])
    assert "/readyz" in " ".join(scorer["healthcheck"]["test"])
    env = scorer["environment"]
    assert env["RECOPS_REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?set it}@redis")  # secret from .env
    cli_env = compose()["services"]["recops"]["environment"]
    assert env["RECOPS_ENV"] == "production" and env == {**cli_env, **env}  # the CLI's settings and more
    assert {"mlflow", "redis", "postgres"} <= set(scorer["depends_on"])


def test_kubernetes_scorer_has_probes_secrets_and_workers() -> None:
    docs = list(yaml.safe_load_all((INFRA / "k8s" / "scorer.yaml").read_text(encoding="utf-8")))
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"}
    deployment = kinds["Deployment"]
    assert deployment["spec"]["replicas"] >= 2
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "serve" and int(args[args.index("--workers") + 1]) > 1
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["RECOPS_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "RECOPS_REDIS_URL"
    assert all("value" not in env[k] for k in ("RECOPS_REDIS_URL", "RECOPS_PSEUDONYMIZATION_KEY"))
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert kinds["Service"]["spec"]["selector"] == selector
    target = kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert target["name"] == deployment["metadata"]["name"]
