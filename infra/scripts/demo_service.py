"""The end of `make demo`: the scoring service answers, a shopper's real-time events change the answer.

1. `recops online seed` (each known shopper's recent items from the published data);
2. `recops serve --host 127.0.0.1 --port <free port> --workers 1` in its own process group;
3. a known shopper (a generator id such as u0000123, pseudonymised by the service) gets recommendations;
   the shopper then views and adds to cart items of a category they were not shown; the next
   recommendations change towards it; an impression and a click go to POST /feedback;
4. the service is stopped (the whole process group), and `recops feedback export` shows the loop back.

Exit status 0 only when the service became ready and the second answer differs from the first.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 180.0


def say(message: str = "") -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call(base: str, method: str, path: str, body: Any | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def known_shopper() -> tuple[str, list[str], Counter[str]]:
    """A generator user (raw id) with a short online history (so a few events weigh), that history, and how
    often each item appears in all shoppers' recent histories (its recent popularity)."""
    from core.online_seed import read_seed, seed_paths
    from core.privacy import pseudonymize_id
    from core.settings import get_settings
    from pipelines.params import load_params

    settings = get_settings()
    users = load_params(settings.params_file).generate.users
    seed = read_seed(seed_paths(settings)[0])
    histories: dict[str, list[str]] = dict(zip(seed["user_id"], seed["recent_items"], strict=True))
    popularity = Counter(item for recent in histories.values() for item in recent)
    key = settings.pseudonymization_key.get_secret_value()
    width = max(7, len(str(users - 1)))
    for n in range(users):
        raw = "u" + str(n).zfill(width)
        recent = histories.get(pseudonymize_id(raw, key))
        if recent is not None and 5 <= len(recent) <= 12:
            return raw, recent, popularity
    raise SystemExit("no generator shopper with a short history in the online seed")


def other_category_items(
    shown: list[dict[str, Any]], popularity: Counter[str], n: int
) -> tuple[str, list[str]]:
    """The most popular catalogue category the shopper was not shown, and its ``n`` most popular items."""
    from core.settings import get_settings
    from pipelines.feedback.export import latest_catalog

    catalog = latest_catalog(get_settings().data_dir)
    in_stock = catalog[catalog["in_stock"]]
    category_of = dict(zip(map(str, in_stock["item_id"]), map(str, in_stock["category"]), strict=True))
    shown_categories = {item["category"] for item in shown}
    weight: Counter[str] = Counter()
    for item, count in popularity.items():
        category = category_of.get(item)
        if category is not None and category not in shown_categories:
            weight[category] += count
    category = sorted(weight, key=lambda c: (-weight[c], c))[0]
    items = sorted((i for i, c in category_of.items() if c == category), key=lambda i: (-popularity[i], i))
    return category, items[:n]


def show(title: str, answer: dict[str, Any]) -> None:
    model = f"model v{answer['model_version']}, variant {answer['variant']}"
    say(f"{title} ({model}, id {answer['recommendation_id']})")
    for item in answer["items"]:
        say(f"  {item['item_id']:<10} {item['category']:<22} {item['score']:8.4f}  {item['explanation']}")


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    recops = str(Path(sys.executable).parent / "recops")
    say("$ recops online seed")
    subprocess.run([recops, "online", "seed"], check=True, cwd=root)
    raw, history, popularity = known_shopper()
    say(f"shopper {raw}: {len(history)} recent items in the online seed, last: {', '.join(history[-3:])}")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = root / "runtime" / "serve-demo.log"
    say(f"$ recops serve --host 127.0.0.1 --port {port} --workers 1   (log: {log_path.relative_to(root)})")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [recops, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    changed = False
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        status: int | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, health = call(base, "GET", "/readyz")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                status = None
            if status == 200:
                break
            time.sleep(0.5)
        if status != 200:
            say(f"the service did not become ready in {READY_TIMEOUT_S:.0f} s; see {log_path}")
            return 1
        say(f"ready: {json.dumps(health)}")

        _, before = call(base, "POST", "/recommendations", {"user_id": raw, "k": 8})
        show("before", before)
        category, items = other_category_items(before["items"], popularity, 4)
        events = [
            {"user_id": raw, "item_id": i, "event_type": t} for i in items for t in ("view", "add_to_cart")
        ]
        status, accepted = call(base, "POST", "/events", {"events": events})
        what = f"{len(events)} events (views and add-to-cart in '{category}')"
        say(f"\nPOST /events: {what} -> {status} {accepted}")
        _, after = call(base, "POST", "/recommendations", {"user_id": raw, "k": 8})
        show("after", after)
        old = [i["item_id"] for i in before["items"]]
        new = [i["item_id"] for i in after["items"]]
        changed = old != new
        moved = sum(i["category"] == category for i in after["items"])
        say(f"changed: {changed} ({len(set(new) - set(old))} new items, {moved} in '{category}')")
        first = after["items"][0]["item_id"]
        feedback = [
            {"recommendation_id": after["recommendation_id"], "user_id": raw, "item_id": first, "kind": kind}
            for kind in ("impression", "click")
        ]
        status, queued = call(base, "POST", "/feedback", {"feedback": feedback})
        say(f"POST /feedback (impression + click on {first}) -> {status} {queued}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        say("service stopped")
    say("\n$ recops feedback export   (the click becomes a landing batch for the gate)")
    subprocess.run([recops, "feedback", "export"], check=True, cwd=root)
    return 0 if changed else 1


if __name__ == "__main__":
    raise SystemExit(main())
