"""``python -m service --workers 2`` for real: whichever worker answers ``/metrics`` counts the requests of
both (prometheus_client multiprocess mode), and the per-start metrics folder is fresh and removed at stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from core.settings import Settings
from models.package import ModelPackage, digest_of, file_checksums
from registry.fetch import PACKAGE_DIR
from registry.model_cache import CACHE_FORMAT, CHECKSUM_FILE, cache_root, pointer_path, write_json
from service.__main__ import METRICS_DIR, prepare_metrics_dir
from tests.conftest import RedisEndpoint
from tests.service.conftest import make_package
from tests.service.live_server import free_port

pytestmark = pytest.mark.integration

WORKERS = 2
MLFLOW_DOWN = "http://127.0.0.1:9"


def cache_as_last_good(settings: Settings, package: ModelPackage, version: int) -> None:
    """Leave ``package`` in the loader's disk cache as the champion's last good version, as a previous run
    that reached MLflow would have, so the workers start from it with MLflow down."""
    target = cache_root(settings, settings.model_name) / str(version)
    package.save(target / PACKAGE_DIR)
    files = file_checksums(target / PACKAGE_DIR)
    digest = digest_of(files)
    manifest = {"format": CACHE_FORMAT, "name": settings.model_name, "version": version, "run_id": "run",
                "files": files, "checksum": digest, "verified_against": digest}  # fmt: skip
    write_json(target / CHECKSUM_FILE, manifest)
    write_json(
        pointer_path(settings, settings.model_name, "champion"), {"version": version, "checksum": digest}
    )


def worker_counts(shared: Path, metric: str) -> dict[int, float]:
    """``metric``'s total per worker pid, read from each worker's own counter file."""
    counts: dict[int, float] = {}
    for file in shared.glob("counter_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        families = MultiProcessCollector.merge([str(file)])  # type: ignore[no-untyped-call]
        samples = [s for m in families for s in m.samples if s.name == metric]
        counts[pid] = sum(s.value for s in samples)
    return counts


def scraped(text: str, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``, in an exposition text."""
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def _wait(predicate: Callable[[], bool], timeout_s: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert proc.poll() is None, f"the service exited while waiting for {what}"
        assert time.monotonic() < deadline, f"{what} not within {timeout_s}s"
        time.sleep(0.2)


@pytest.fixture
def service_env(recops_settings: Settings, redis_url: RedisEndpoint, pg_database: str) -> dict[str, str]:
    """The environment of a service whose champion v1 is in the disk cache, MLflow unreachable, Redis as
    the shared online store and PostgreSQL as the metadata database (what several workers need)."""
    cache_as_last_good(recops_settings, make_package(), 1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECOPS_", "PROMETHEUS_"))}
    env.update(
        RECOPS_RUNTIME_DIR=str(recops_settings.runtime_dir),
        RECOPS_DATA_DIR=str(recops_settings.data_dir),
        RECOPS_ARTIFACTS_DIR=str(recops_settings.artifacts_dir),
        RECOPS_MLFLOW_TRACKING_URI=MLFLOW_DOWN,
        RECOPS_MLFLOW_REGISTRY_URI=MLFLOW_DOWN,
        RECOPS_METADATA_DB_URL=pg_database,
        RECOPS_REDIS_URL=redis_url.url,
        RECOPS_REDIS_PREFIX=redis_url.prefix,
        RECOPS_SERVE_POLL_INTERVAL_S="60",
        RECOPS_SERVE_RATE_LIMIT_PER_S="0",
        RECOPS_LOG_LEVEL="WARNING",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    return env


@pytest.fixture
def two_workers(service_env: dict[str, str]) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port), "--workers", str(WORKERS)],
        env=service_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


def test_metrics_of_two_workers_count_every_request(
    two_workers: tuple[subprocess.Popen[bytes], str], recops_settings: Settings
) -> None:
    proc, base = two_workers
    shared = recops_settings.runtime_dir / METRICS_DIR / str(proc.pid)
    # both workers have loaded and warmed v1 once each has set its model-version gauge
    _wait(lambda: len(list(shared.glob("gauge_livemax_*.db"))) == WORKERS, 30, "both workers ready", proc)
    assert httpx.get(f"{base}/metrics").status_code == 200  # ensure the listener answers

    sent_recs = sent_events = 0

    def recommend(n: int) -> int:
        with httpx.Client(base_url=base, timeout=10) as client:  # one connection each: spread over workers
            answer = client.post("/recommendations", json={"user_id": f"shopper-{n % 7}", "k": 5})
            events = [{"user_id": f"shopper-{n % 7}", "item_id": f"i{n % 40:05d}", "event_type": "view"}]
            posted = client.post("/events", json={"events": events})
        assert answer.headers["x-model-version"] == "1"
        return answer.status_code * 1000 + posted.status_code

    deadline = time.monotonic() + 20
    with ThreadPoolExecutor(max_workers=6) as pool:
        while True:  # more rounds only in the unlikely case that one worker accepted every connection
            statuses = list(pool.map(recommend, range(sent_recs, sent_recs + 30)))
            assert set(statuses) == {200_200}, sorted(set(statuses))
            sent_recs += 30
            sent_events += 30
            per_worker = worker_counts(shared, "recops_recommendations_total")
            if len([c for c in per_worker.values() if c > 0]) == WORKERS or time.monotonic() > deadline:
                break
    assert len([c for c in per_worker.values() if c > 0]) == WORKERS, per_worker

    # whichever worker answers, /metrics sums both
    for _ in range(4):
        text = httpx.get(f"{base}/metrics").text
        assert scraped(text, "recops_recommendations_total", variant="champion") == sent_recs
        assert (
            scraped(text, "recops_request_seconds_count", route="/recommendations", status="200") == sent_recs
        )
        assert scraped(text, "recops_events_ingested_total") == sent_events
        assert scraped(text, "recops_model_version", alias="champion") == 1.0  # livemax: one sample, not two
        assert "pid=" not in text
    assert sum(per_worker.values()) == sent_recs

    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert not shared.exists(), "the per-start metrics folder outlived the server"
    print(f"\n{WORKERS} workers: {sent_recs} recommendations split {sorted(per_worker.values())}")


def test_prepare_metrics_dir_is_fresh_and_spares_running_starts(tmp_path: Path) -> None:
    parent = tmp_path / METRICS_DIR
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for pid in (dead.pid, os.getppid(), 4242424):  # exited, running, never existed (above pid_max)
        (parent / str(pid)).mkdir(parents=True)
        (parent / str(pid) / "counter_1.db").write_bytes(b"old")
    (parent / "notes").mkdir()
    mine = prepare_metrics_dir(tmp_path, os.getpid())
    assert mine == parent / str(os.getpid()) and list(mine.iterdir()) == []
    assert sorted(p.name for p in parent.iterdir()) == sorted(["notes", str(os.getppid()), str(os.getpid())])
    (mine / "counter_9.db").write_bytes(b"x")
    assert list(prepare_metrics_dir(tmp_path, os.getpid()).iterdir()) == []  # same pid again: emptied
