"""Benchmark the scoring service against the issue's targets (figures and commands: docs/benchmarks.md).

1. ``inprocess``: top-10 over 100k items with a 64-d ALS model (fitted here on synthetic interactions),
   through the service's own ranking path (``service.ranking.rank``: scoring, exclusions, MMR,
   explanations) and the model's scoring alone; p50/p99 over ``--requests`` shoppers with 20-item histories.
   Targets: p50 <= 2 ms, p99 <= 10 ms.
2. ``http``: needs the champion on the default data (run ``make demo`` first). Starts ``recops serve`` on
   127.0.0.1 (``--workers``, Redis online store under a private key prefix, no rate limit, seed loaded) and a
   load generator in this process (aiohttp, ``--concurrency`` keep-alive connections, known shoppers,
   ``POST /recommendations`` k=10) for ``--duration`` seconds: requests/s, p50/p99, 5xx. Then, in the same
   run, ``mlflow models serve -m models:/<name>@champion --env-manager local`` with the same worker count
   and the same shoppers' histories: requests/s and the ratio. Then event -> visible: a view of the
   shopper's current top item, then recommendations until it is gone (seen items are excluded), p99 over
   ``--visibility-trials``; and event ingest through Redis: ``POST /events`` batches of 500 from
   ``--concurrency`` connections, events/s.
   Targets: >= 1,000 req/s with p99 <= 25 ms; >= 5x mlflow models serve; event visible p99 <= 50 ms;
   ingest >= 5,000 events/s. Each load run also prints the CPU the server (its whole process session) and
   the load generator used; ``--server-cpus`` / ``--client-cpus`` pin them to separate cores. The served
   lists go to a fresh SQLite file per run (``runtime/bench/bench-metadata.db``: the same cost every run,
   not one that grows with every earlier run's rows) unless ``RECOPS_METADATA_DB_URL`` is set (e.g. the
   production PostgreSQL).
3. ``asgi`` (needs ``make demo``): the whole app (middleware, hot path, Redis online store, ranking,
   served-list writer) called as an ASGI application in this process, no HTTP server: CPU per request, and
   a cProfile with ``--profile-rows``.
4. ``floor``: a bare ASGI app (reads the body, answers fixed JSON) under uvicorn with the same workers and
   load: the HTTP server's own cost per request.

    .venv/bin/python bench/bench_service.py                          # both parts
    .venv/bin/python bench/bench_service.py --part inprocess
    .venv/bin/python bench/bench_service.py --part http --workers 2 --concurrency 16 --duration 20
    .venv/bin/python bench/bench_service.py --part asgi --requests 3000 --profile-rows 40   # no HTTP server
    .venv/bin/python bench/bench_service.py --part floor --concurrency 64 --duration 15    # bare ASGI app

Needs Redis at ``RECOPS_BENCH_REDIS_URL`` (default redis://127.0.0.1:6379/14); the bench's keys are deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
BIN = Path(sys.executable).parent


def say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


# ------------------------------------------------------------------------------------------- in-process


def bench_inprocess(n_items: int, factors: int, requests: int, seed: int = 0) -> None:
    import pandas as pd

    from models import create_model
    from models.base import FitContext, Interactions
    from models.package import ModelPackage
    from models.threads import limit_threads
    from registry.loader import LoadedModel
    from service.identity import CHAMPION
    from service.ranking import RankRequest, rank
    from service.serving import build_serving

    limit_threads()
    rng = np.random.default_rng(seed)
    n_users, per_user = 20_000, 20
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.8
    items = rng.choice(n_items, size=n_users * per_user, p=popularity / popularity.sum()).astype(np.int64)
    users = np.repeat(np.arange(n_users, dtype=np.int64), per_user)
    data = Interactions(
        user_idx=users,
        item_idx=items,
        weight=np.ones(len(items), dtype=np.float32),
        ts=np.arange(len(items), dtype=np.int64),
        session_idx=users,
        n_users=n_users,
        n_items=n_items,
    )
    started = time.perf_counter()
    model = create_model("als", {"factors": factors, "iterations": 3})
    model.fit(data, ctx=FitContext(seed=seed, threads=os.cpu_count() or 1))
    fit_s = time.perf_counter() - started
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{i:06d}" for i in range(n_items)],
            "category": [f"cat{i % 40}" for i in range(n_items)],
            "brand": [f"brand{i % 300}" for i in range(n_items)],
            "price": np.round(rng.uniform(1, 200, n_items), 2),
            "in_stock": rng.random(n_items) > 0.05,
        }
    )
    package = ModelPackage(model=model, items=catalog)
    loaded = LoadedModel(
        name="bench", version=1, alias=CHAMPION, package=package, source_run_id="bench", path=REPO_ROOT,
        checksum="bench",
    )  # fmt: skip
    serving = build_serving(loaded, CHAMPION)
    histories = [
        rng.choice(n_items, size=20, p=popularity / popularity.sum()).astype(np.int64)
        for _ in range(requests)
    ]
    for history in histories[:50]:  # warm caches and BLAS
        rank(serving, RankRequest(history=history, exclude=history, k=10), 0.8)
    full, score_only = [], []
    for history in histories:
        t0 = time.perf_counter()
        serving.score(history)
        t1 = time.perf_counter()
        rank(serving, RankRequest(history=history, exclude=np.unique(history), k=10), 0.8)
        t2 = time.perf_counter()
        score_only.append((t1 - t0) * 1e3)
        full.append((t2 - t1) * 1e3)
    say(
        f"in-process: {n_items:,} items, ALS {factors}-d (fit {fit_s:.1f} s), {requests} shoppers, top-10\n"
        f"  full ranking (score + exclusions + MMR + explanations): p50 {pct(full, 50):.2f} ms, "
        f"p99 {pct(full, 99):.2f} ms\n"
        f"  model scoring alone:                                    p50 {pct(score_only, 50):.2f} ms, "
        f"p99 {pct(score_only, 99):.2f} ms"
    )


# ------------------------------------------------------------------------------------------- HTTP


@dataclass
class Load:
    """What one load run measured."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    units: int = 0  # requests, or events for the ingest run
    percentiles_ms: dict[int, float] = field(default_factory=dict)  # from wrk (no per-request list)

    def p(self, q: int) -> float:
        return self.percentiles_ms[q] if q in self.percentiles_ms else pct(self.latencies_ms, q)

    @property
    def rate(self) -> float:
        return self.units / self.elapsed_s if self.elapsed_s else 0.0

    def line(self, what: str, unit: str = "requests/s") -> str:
        five = sum(n for s, n in self.statuses.items() if s >= 500)
        other = {s: n for s, n in self.statuses.items() if s != 200}
        return (
            f"{what}: {self.rate:,.0f} {unit}, p50 {self.p(50):.1f} ms, "
            f"p99 {self.p(99):.1f} ms, {sum(self.statuses.values()):,} responses, 5xx {five}"
            + (f", other statuses {other}" if other else "")
            + (f", connection errors {dict(self.errors)}" if self.errors else "")
        )


async def _load(
    url: str, bodies: Callable[[int], Any], concurrency: int, duration_s: float, units_per_request: int = 1
) -> Load:
    import aiohttp

    result = Load()
    stop_at = 0.0
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency, force_close=False), timeout=timeout
    ) as session:

        async def worker(n: int, record: bool) -> None:
            i = n
            while time.perf_counter() < stop_at:
                body = bodies(i)
                i += concurrency
                t0 = time.perf_counter()
                try:
                    async with session.post(url, json=body) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    if record:
                        result.errors[type(exc).__name__] += 1
                    continue
                if record:
                    result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
                    result.statuses[status] += 1
                    if status == 200:
                        result.units += units_per_request

        stop_at = time.perf_counter() + min(3.0, duration_s / 4)  # warm-up: connections, caches
        await asyncio.gather(*(worker(n, False) for n in range(concurrency)))
        started = time.perf_counter()
        stop_at = started + duration_s
        await asyncio.gather(*(worker(n, True) for n in range(concurrency)))
        result.elapsed_s = time.perf_counter() - started
    return result


#: wrk script: POSTs the JSON bodies of ``RECOPS_WRK_BODIES`` (one per line) round robin, counts statuses
#: per thread, and prints one JSON line (``WRK_JSON ...``) with the totals and latency percentiles (us).
WRK_SCRIPT = r"""
local bodies, n, i, threads = {}, 0, 0, {}
counts = {}  -- global: done() reads it from each thread
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
function setup(thread)
  table.insert(threads, thread)
  thread:set("offset", #threads)
end
function init(args)
  for line in io.lines(os.getenv("RECOPS_WRK_BODIES")) do
    n = n + 1
    bodies[n] = line
  end
  i = offset * 7919
end
function request()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % n) + 1])
end
function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end
function done(summary, latency, requests)
  local statuses = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for status, count in pairs(c) do
      statuses[#statuses + 1] = string.format('"%d": %d', status, count)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us": %d, "requests": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.duration, summary.requests, latency:percentile(50), latency:percentile(99), latency.max,
    e.connect, e.read, e.write, e.timeout, table.concat(statuses, ", ")))
end
"""


def wrk_binary() -> str | None:
    """``wrk`` when it is on PATH and not disabled with ``RECOPS_BENCH_LOADGEN=aiohttp``."""
    if os.environ.get("RECOPS_BENCH_LOADGEN", "") == "aiohttp":
        return None
    return shutil.which("wrk")


def _wrk_once(
    wrk: str, url: str, bodies: Path, concurrency: int, duration_s: float, cpus: str
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(WRK_SCRIPT)
        argv = [
            wrk,
            "-t",
            "1",
            "-c",
            str(concurrency),
            "-d",
            f"{max(1, round(duration_s))}s",
            "--timeout",
            "10s",
        ]
        argv += ["-s", str(script), url]
        if cpus:
            argv = ["taskset", "-c", cpus, *argv]
        env = {**os.environ, "RECOPS_WRK_BODIES": str(bodies)}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            result: dict[str, Any] = json.loads(line.removeprefix("WRK_JSON "))
            return result
    sys.exit(f"wrk gave no summary (rc {done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")


def _load_wrk(
    wrk: str,
    url: str,
    bodies: Callable[[int], Any],
    concurrency: int,
    duration_s: float,
    units_per_request: int,
    cpus: str,
) -> Load:
    first = json_line(bodies(0))
    count = max(50, min(4_000, 8_000_000 // len(first)))  # bodies of 500 events: fewer, the file stays small
    with tempfile.NamedTemporaryFile("wb", suffix=".jsonl", delete=False) as out:
        out.write(first)
        for i in range(1, count):
            out.write(json_line(bodies(i)))
        path = Path(out.name)
    try:
        _wrk_once(wrk, url, path, concurrency, min(3.0, duration_s / 4), cpus)  # warm-up
        summary = _wrk_once(wrk, url, path, concurrency, duration_s, cpus)
    finally:
        path.unlink(missing_ok=True)
    result = Load(elapsed_s=summary["duration_us"] / 1e6)
    result.statuses.update({int(s): int(n) for s, n in summary["statuses"].items()})
    result.units = result.statuses.get(200, 0) * units_per_request
    result.errors.update({k: int(v) for k, v in summary["errors"].items() if v})
    result.percentiles_ms = {
        50: summary["p50_us"] / 1e3, 99: summary["p99_us"] / 1e3, 100: summary["max_us"] / 1e3
    }  # fmt: skip
    return result


def json_line(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def run_load(
    url: str,
    bodies: Callable[[int], Any],
    concurrency: int,
    duration_s: float,
    units: int = 1,
    cpus: str = "",
) -> Load:
    """wrk when on PATH (a C load generator, one thread), else aiohttp in this process."""
    wrk = wrk_binary()
    if wrk is not None:
        return _load_wrk(wrk, url, bodies, concurrency, duration_s, units, cpus)
    with pinned(cpus):
        try:
            import uvloop

            return uvloop.run(_load(url, bodies, concurrency, duration_s, units))
        except ImportError:
            return asyncio.run(_load(url, bodies, concurrency, duration_s, units))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_json(method: str, url: str, body: Any | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url, data=None if body is None else json.dumps(body).encode(), method=method
    )
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, payload = response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, None
    try:
        return status, json.loads(payload or b"null")
    except ValueError:  # e.g. mlflow's /ping answers a bare newline
        return status, payload.decode("utf-8", "replace")


def wait_ready(
    url: str, proc: subprocess.Popen[bytes], timeout_s: float, log: Path, streak: int = 20
) -> None:
    """Wait for ``streak`` successive 200s on fresh connections: each worker process loads its model on its
    own, so one ready answer does not mean every worker is ready."""
    deadline = time.monotonic() + timeout_s
    ok = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{url}: the server exited ({proc.returncode}); see {log}")
        try:
            ok = ok + 1 if http_json("GET", url, timeout=2)[0] == 200 else 0
        except OSError:
            ok = 0
        if ok >= streak:
            return
        time.sleep(0.05 if ok else 0.5)
    sys.exit(f"{url}: not ready after {timeout_s:.0f} s; see {log}")


@contextmanager
def server(
    argv: list[str], env: dict[str, str], ready_url: str, log: Path, timeout_s: float, cpus: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` in its own session (pinned to ``cpus`` when given, ``taskset -c`` syntax) until the
    block ends (then the whole group is stopped)."""
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(ready_url, proc, timeout_s, log)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):  # it may have exited already
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def session_cpu_s(session: int) -> float:
    """User + system CPU seconds of every live process in a session (the server and its workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[3]) == session:  # fields after the name: state, ppid, pgrp, session, ...
            total += int(fields[11]) + int(fields[12])
    return total / tick


def own_cpu_s() -> float:
    """CPU of this process and of its children that have exited (wrk runs): the load generator's."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@contextmanager
def pinned(cpus: str) -> Iterator[None]:
    """Run the block (the load generator) on ``cpus`` (``taskset -c`` syntax; empty: leave as is)."""
    if not cpus:
        yield
        return
    before = os.sched_getaffinity(0)
    chosen: set[int] = set()
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    os.sched_setaffinity(0, chosen)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def measured_load(
    proc: subprocess.Popen[bytes],
    client_cpus: str,
    url: str,
    bodies: Callable[[int], Any],
    concurrency: int,
    duration_s: float,
    units: int = 1,
) -> tuple[Load, str]:
    """:func:`run_load` plus the CPU each side used over the whole run (warm-up included)."""
    server0, own0, wall0 = session_cpu_s(proc.pid), own_cpu_s(), time.perf_counter()
    load = run_load(url, bodies, concurrency, duration_s, units, client_cpus)
    wall = time.perf_counter() - wall0
    server, own = session_cpu_s(proc.pid) - server0, own_cpu_s() - own0
    answered = sum(load.statuses.values()) * (wall / load.elapsed_s if load.elapsed_s else 1.0)
    per = server / answered * 1e3 if answered else float("nan")
    cpu = (
        f"CPU over {wall:.0f} s: server {server:.1f} s ({server / wall:.2f} cores, "
        f"~{per:.2f} ms per request), load generator {own:.1f} s ({own / wall:.2f} cores)"
    )  # answered: responses scaled up to include the warm-up's
    return load, cpu


def shoppers(limit: int) -> tuple[list[str], dict[str, list[str]]]:
    """Raw ids of known generator shoppers (as a shop sends them) and their online histories (item ids)."""
    from core.online_seed import read_seed, seed_paths
    from core.privacy import pseudonymize_id
    from core.settings import get_settings
    from pipelines.params import load_params

    settings = get_settings()
    seed = read_seed(seed_paths(settings)[0])
    histories = dict(zip(seed["user_id"], seed["recent_items"], strict=True))
    n_users = load_params(settings.params_file).generate.users
    width = max(7, len(str(n_users - 1)))
    key = settings.pseudonymization_key.get_secret_value()
    raws, by_raw = [], {}
    for n in range(n_users):
        raw = "u" + str(n).zfill(width)
        history = histories.get(pseudonymize_id(raw, key))
        if history:
            raws.append(raw)
            by_raw[raw] = list(history)
        if len(raws) >= limit:
            break
    if not raws:
        sys.exit("no known shopper in the online seed: run `make demo` first")
    return raws, by_raw


def event_visibility(base: str, raws: list[str], trials: int) -> tuple[list[float], int]:
    """Per trial: view the shopper's current top item, then ask again until it is gone (seen = excluded)."""
    latencies, retries = [], 0
    for raw in raws[:trials]:
        status, before = http_json("POST", f"{base}/recommendations", {"user_id": raw, "k": 10})
        if status != 200 or not before["items"]:
            continue
        top = before["items"][0]["item_id"]
        t0 = time.perf_counter()
        http_json(
            "POST", f"{base}/events", {"events": [{"user_id": raw, "item_id": top, "event_type": "view"}]}
        )
        while True:
            status, after = http_json("POST", f"{base}/recommendations", {"user_id": raw, "k": 10})
            if status == 200 and top not in {i["item_id"] for i in after["items"]}:
                break
            retries += 1
            if time.perf_counter() - t0 > 5:
                break
        latencies.append((time.perf_counter() - t0) * 1e3)
    return latencies, retries


def read_batches(base: str) -> str:
    """Shoppers per online-store round trip so far (``recops_online_read_batch``, every worker)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    shoppers = reads = 0.0
    for family in text_string_to_metric_families(text):
        if family.name == "recops_online_read_batch":
            shoppers += sum(s.value for s in family.samples if s.name.endswith("_sum"))
            reads += sum(s.value for s in family.samples if s.name.endswith("_count"))
    if not reads:
        return "none recorded"
    return f"{shoppers:,.0f} shoppers in {reads:,.0f} round trips ({shoppers / reads:.1f} per MGET)"


def bench_http(
    workers: int,
    concurrency: int,
    duration_s: float,
    trials: int,
    skip_mlflow: bool,
    server_cpus: str = "",
    client_cpus: str = "",
) -> None:
    from core.settings import get_settings

    settings = get_settings()
    redis_url = os.environ.get("RECOPS_BENCH_REDIS_URL", DEFAULT_REDIS)
    prefix = f"recops-bench-{secrets.token_hex(4)}:"
    raws, histories = shoppers(2000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECOPS_SERVE_")}
    env.update(
        RECOPS_REDIS_URL=redis_url,
        RECOPS_REDIS_PREFIX=prefix,
        RECOPS_SERVE_RATE_LIMIT_PER_S="0",  # one load generator on one address: the limit would answer 429
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",  # mlflow models serve execs `uvicorn`
        MLFLOW_ALLOW_PICKLE_DESERIALIZATION="false",
        OPENBLAS_NUM_THREADS="1",
    )
    logs = settings.runtime_dir / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    if "RECOPS_METADATA_DB_URL" not in os.environ:  # served lists go to a fresh SQLite file per run
        metadata_db = logs / "bench-metadata.db"
        for stale in logs.glob("bench-metadata.db*"):
            stale.unlink()
        env["RECOPS_METADATA_DB_URL"] = f"sqlite:///{metadata_db}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        str(BIN / "recops"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    loadgen = "wrk (1 thread, Lua script)" if wrk_binary() else "aiohttp in the bench process"
    what = (
        f"Redis online store, {len(raws)} known shoppers, concurrency {concurrency}, load generator {loadgen}"
    )
    what += f", server on cpus {server_cpus or 'any'}, load generator on cpus {client_cpus or 'any'}"
    say(f"http: `{' '.join(argv[1:])}`, {what}")
    try:
        with server(argv, env, f"{base}/readyz", logs / "serve.log", 240, server_cpus) as proc:
            _, health = http_json("GET", f"{base}/readyz")
            say(f"  ready: {health}")
            recs, cpu = measured_load(
                proc,
                client_cpus,
                f"{base}/recommendations",
                lambda i: {"user_id": raws[i % len(raws)], "k": 10},
                concurrency,
                duration_s,
            )
            say("  " + recs.line("recops serve POST /recommendations"))
            say("    " + cpu)
            say(f"    online-state reads: {read_batches(base)}")
            visible, retries = event_visibility(base, raws[len(raws) // 2 :], trials)
            say(
                f"  event -> visible in the next recommendation: p50 {pct(visible, 50):.1f} ms, "
                f"p99 {pct(visible, 99):.1f} ms over {len(visible)} shoppers ({retries} repeated asks)"
            )
            batch = 500

            def events(i: int) -> dict[str, Any]:
                raw = raws[i % len(raws)]
                items = histories[raw]
                return {
                    "events": [
                        {"user_id": raw, "item_id": items[j % len(items)], "event_type": "view"}
                        for j in range(batch)
                    ]
                }

            ingest = run_load(f"{base}/events", events, concurrency, duration_s / 2, units=batch)
            say("  " + ingest.line(f"event ingest through Redis (batches of {batch})", "events/s"))
    finally:
        _delete_prefix(redis_url, prefix)
    if skip_mlflow:
        return
    mport = free_port()
    uri = f"models:/{settings.model_name}@champion"
    margv = [
        str(BIN / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
        "-h", "127.0.0.1", "-p", str(mport), "-w", str(workers),
    ]  # fmt: skip
    menv = {
        **env,
        "MLFLOW_TRACKING_URI": settings.mlflow_tracking_uri,
        "MLFLOW_REGISTRY_URI": settings.mlflow_registry_uri,
    }
    say(f"  `mlflow models serve -m models:/{settings.model_name}@champion --env-manager local -w {workers}`")
    with server(
        margv, menv, f"http://127.0.0.1:{mport}/ping", logs / "mlflow-serve.log", 300, server_cpus
    ) as mproc:

        def invocation(i: int) -> dict[str, Any]:
            raw = raws[i % len(raws)]
            return {
                "dataframe_split": {"columns": ["history"], "data": [[histories[raw]]]},
                "params": {"k": 10},
            }

        ml, mcpu = measured_load(
            mproc, client_cpus, f"http://127.0.0.1:{mport}/invocations", invocation, concurrency, duration_s
        )
        say("  " + ml.line("mlflow models serve POST /invocations (same shoppers' histories)"))
        say("    " + mcpu)
    ratio = recs.rate / ml.rate if ml.rate else float("inf")
    say(f"  throughput ratio recops serve / mlflow models serve: {ratio:.1f}x")


def bench_asgi(requests: int, profile_rows: int) -> None:
    """The whole app (middleware, hot path, Redis online store, ranking, served-list writer) called as an
    ASGI application in this process, without an HTTP server: CPU per request, and optionally a cProfile."""
    import cProfile
    import pstats

    import orjson

    from core.settings import get_settings
    from models.threads import limit_threads
    from service.app import create_app

    redis_url = os.environ.get("RECOPS_BENCH_REDIS_URL", DEFAULT_REDIS)
    prefix = f"recops-bench-{secrets.token_hex(4)}:"
    os.environ.update(
        RECOPS_REDIS_URL=redis_url, RECOPS_REDIS_PREFIX=prefix, RECOPS_SERVE_RATE_LIMIT_PER_S="0"
    )
    get_settings.cache_clear()
    limit_threads()
    raws, _ = shoppers(2000)
    bodies = [orjson.dumps({"user_id": raw, "k": 10}) for raw in raws]
    app = create_app(get_settings())
    headers = [(b"content-type", b"application/json")]

    async def one(body: bytes) -> int:
        scope = {"type": "http", "method": "POST", "path": "/recommendations", "headers": headers,
                 "client": ("127.0.0.1", 1), "query_string": b""}  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return int(sent[0]["status"])

    async def run() -> None:
        async with app.router.lifespan_context(app):
            deadline = time.monotonic() + 120
            while app.state.recops.holder.get("champion") is None:  # the watcher loads the champion
                if time.monotonic() > deadline:
                    sys.exit("no champion loaded within 120 s: run `make demo` first")
                await asyncio.sleep(0.1)
            for body in bodies[:300]:  # warm-up
                await one(body)
            wall, cpu = time.perf_counter(), time.process_time()
            statuses = Counter([await one(bodies[i % len(bodies)]) for i in range(requests)])
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            say(f"asgi: the whole app in-process (no HTTP server), Redis online store, {requests:,} requests "
                f"of {len(raws)} known shoppers: {cpu / requests * 1e3:.3f} ms CPU and "
                f"{wall / requests * 1e3:.3f} ms wall per request, statuses {dict(statuses)}")  # fmt: skip
            if profile_rows:
                profiler = cProfile.Profile()
                profiler.enable()
                for i in range(requests):
                    await one(bodies[i % len(bodies)])
                profiler.disable()
                pstats.Stats(profiler, stream=sys.stdout).sort_stats("cumulative").print_stats(profile_rows)

    try:
        asyncio.run(run())
    finally:
        _delete_prefix(redis_url, prefix)


async def bare_app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    """An ASGI app that reads the body and answers a fixed JSON document: the HTTP server's own cost."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    body = b'{"items":[]}'
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": head})
    await send({"type": "http.response.body", "body": body})


def bench_floor(
    workers: int, concurrency: int, duration_s: float, server_cpus: str, client_cpus: str
) -> None:
    """:func:`bare_app` under uvicorn as ``recops serve`` runs it (same workers, load generator, body)."""
    from core.settings import get_settings

    port = free_port()
    here = str(Path(__file__).parent)
    argv = [str(BIN / "python"), "-m", "uvicorn", "bench_service:bare_app", "--app-dir", here,
            "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), "--no-access-log",
            "--log-level", "warning"]  # fmt: skip
    logs = get_settings().runtime_dir / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    say(f"floor: a bare ASGI app under uvicorn, {workers} workers, concurrency {concurrency}")
    with server(
        argv, dict(os.environ), f"http://127.0.0.1:{port}/", logs / "floor.log", 60, server_cpus
    ) as proc:
        load, cpu = measured_load(
            proc, client_cpus, f"http://127.0.0.1:{port}/recommendations",
            lambda i: {"user_id": f"u{i:07d}", "k": 10}, concurrency, duration_s,
        )  # fmt: skip
    say("  " + load.line("bare ASGI app POST /recommendations"))
    say("    " + cpu)


def _delete_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=["all", "inprocess", "http", "asgi", "floor"], default="all",
                        help="all: inprocess and http; asgi: the whole app without an HTTP server; floor: "
                        "a bare ASGI app under uvicorn (the HTTP server's own cost)")  # fmt: skip
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2000, help="in-process rankings timed")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (and mlflow serve workers)")
    parser.add_argument("--concurrency", type=int, default=16, help="keep-alive connections of the load")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of measured load per server")
    parser.add_argument("--visibility-trials", type=int, default=300)
    parser.add_argument("--skip-mlflow", action="store_true", help="no mlflow models serve comparison")
    parser.add_argument("--server-cpus", default="", help="pin the servers (taskset -c list, e.g. 0)")
    parser.add_argument("--client-cpus", default="", help="pin the load generator (e.g. 1)")
    parser.add_argument("--profile-rows", type=int, default=0, help="asgi: print a cProfile, top N rows")
    args = parser.parse_args()
    say(f"machine: {machine()}")
    if args.part in ("all", "inprocess"):
        bench_inprocess(args.items, args.factors, args.requests)
    if args.part in ("all", "http"):
        bench_http(
            args.workers, args.concurrency, args.duration, args.visibility_trials, args.skip_mlflow,
            args.server_cpus, args.client_cpus,
        )  # fmt: skip
    if args.part == "asgi":
        bench_asgi(args.requests, args.profile_rows)
    if args.part == "floor":
        bench_floor(args.workers, args.concurrency, args.duration, args.server_cpus, args.client_cpus)
    say(f"machine after: {machine()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
