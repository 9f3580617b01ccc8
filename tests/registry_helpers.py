"""Build small model versions for registry, promotion and loader tests without running the pipeline.

Data: shoppers who each prefer one category (so similarity models clearly beat popularity). Models: an
item-kNN package (good), a popularity package whose item scores are scrambled (bad). Each is logged like
``pipelines.train`` does it (parent run + child run + pyfunc named ``model`` holding the package) and can be
registered as a version directly.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.schema import coerce_events
from core.settings import Settings
from models.base import Interactions, Recommender
from models.package import ModelPackage
from pipelines.params import FeatureParams, Params
from tests.factories import make_catalog

FEATURE_PARAMS = FeatureParams(valid_days=2, test_days=3, dedup_seconds=0)
START = datetime(2026, 1, 1, tzinfo=UTC)


def clustered_events(
    n_users: int = 80, n_items: int = 40, days: int = 14, per_user: int = 14, seed: int = 0
) -> pd.DataFrame:
    """Events where user ``u`` mostly views items of category ``u % 5`` (catalogue category is ``i % 5``);
    a few users appear only in the last days (cold users at test time)."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    popularity = 1.0 / np.arange(1, n_items + 1) ** 0.7
    for u in range(n_users):
        favourite = [i for i in range(n_items) if i % 5 == u % 5]
        weights = popularity[favourite] / popularity[favourite].sum()
        cold = u % 10 == 9
        first_day = days - 2 if cold else 0
        for n in range(per_user):
            if rng.random() < 0.85:
                item = int(rng.choice(favourite, p=weights))
            else:
                item = int(rng.choice(n_items, p=popularity / popularity.sum()))
            day = first_day + int(rng.integers(0, days - first_day))
            ts = START + timedelta(days=day, seconds=int(rng.integers(0, 86_000)))
            rows.append(
                {
                    "event_id": f"e{u}-{n}",
                    "user_id": f"u{u}",
                    "item_id": f"i{item:05d}",
                    "event_type": "view" if rng.random() < 0.7 else "click",
                    "ts": ts,
                    "session_id": f"s{u}-{day}",
                    "price": 10.0,
                    "quantity": pd.NA,
                }
            )
    frame = pd.DataFrame(rows)
    frame["quantity"] = frame["quantity"].astype("Int64")
    return coerce_events(frame)


def write_features_for(settings: Settings, n_items: int = 40, seed: int = 0) -> Any:
    """Build the feature set of :func:`clustered_events` and write it where the gate reads it."""
    from pipelines.features import build_features, write_features

    fs = build_features(clustered_events(n_items=n_items, seed=seed), make_catalog(n_items), FEATURE_PARAMS)
    write_features(fs, settings.artifacts_dir / "features")
    return fs


def scrambled(data: Interactions, seed: int = 1) -> Interactions:
    """The same events with item indices permuted: a model fitted on it ranks the wrong items."""
    perm = np.random.default_rng(seed).permutation(data.n_items)
    return Interactions(
        user_idx=data.user_idx,
        item_idx=perm[data.item_idx],
        weight=data.weight,
        ts=data.ts,
        session_idx=data.session_idx,
        n_users=data.n_users,
        n_items=data.n_items,
    )


def fit_package(fs: Any, kind: str) -> ModelPackage:
    """``good`` (item-kNN), ``bad`` (scrambled popularity) or ``popularity``, fitted on train + valid."""
    from models import create_model
    from pipelines.train import build_package

    data = fs.interactions("train_valid")
    model: Recommender
    if kind == "good":
        model = create_model("itemknn", {"neighbours": 20, "shrinkage": 1.0})
        model.fit(data)
    elif kind == "bad":
        model = create_model("popularity", {}).fit(scrambled(data))
    elif kind == "popularity":
        model = create_model("popularity", {}).fit(data)
    else:
        raise ValueError(kind)
    return build_package(model, fs)


@dataclass(frozen=True)
class LoggedRun:
    parent_run_id: str
    run_id: str
    model_id: str
    lineage: dict[str, str]


def log_package(
    settings: Settings,
    package: ModelPackage,
    tmp: Path,
    *,
    metrics: dict[str, float],
    lineage: dict[str, str] | None = None,
    parent_run_id: str | None = None,
    extra_files: dict[str, bytes] | None = None,
    extra_artifacts: dict[str, bytes] | None = None,
    digest: bool = True,
) -> LoggedRun:
    """Log ``package`` as the pipeline does: child run of a (new or given) parent run, pyfunc ``model``,
    tagged with the package digest (``recops.package_digest``) unless ``digest`` is False (older runs).

    ``extra_files`` (name -> bytes) are written into the package folder before logging, e.g. a planted
    pickle next to the real files; ``extra_artifacts`` (key -> bytes) become further pyfunc artifacts
    ``artifacts/<key>.pkl`` beside the package.
    """
    import mlflow

    from models.package import package_digest
    from pipelines.tracking import child_run, configure_mlflow, get_or_create_parent
    from pipelines.train import PIP_REQUIREMENTS, PYFUNC_CODE
    from registry.tags import TAG_PACKAGE_DIGEST

    client = configure_mlflow(settings)
    lineage = lineage or {
        "git_commit": f"test-{secrets.token_hex(6)}",
        "data_md5": "d" * 32,
        "dvc_lock_hash": "l" * 16,
        "params_hash": Params().digest(),
    }
    parent = parent_run_id or get_or_create_parent(client, settings, lineage)
    folder = tmp / f"pkg-{secrets.token_hex(4)}" / "package"
    package.save(folder)  # lineage lives in the run tags (child_run), not in the package
    for name, body in (extra_files or {}).items():
        (folder / name).write_bytes(body)
    artifacts = {"package": str(folder)}
    for key, body in (extra_artifacts or {}).items():
        path = folder.parent / f"{key}.pkl"
        path.write_bytes(body)
        artifacts[key] = str(path)
    with child_run(client, settings, parent, package.family, lineage) as run:
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(PYFUNC_CODE),
            artifacts=artifacts,
            pip_requirements=PIP_REQUIREMENTS,
        )
        mlflow.log_metrics(metrics)
        mlflow.log_params({"family": package.family, "n_items": package.model.n_items})
        if digest:
            mlflow.set_tag(TAG_PACKAGE_DIGEST, package_digest(folder))
    return LoggedRun(
        parent_run_id=parent, run_id=run.info.run_id, model_id=str(info.model_id), lineage=lineage
    )


def register_run(
    settings: Settings, logged: LoggedRun, alias: str | None = None, *, checksums: bool = True
) -> int:
    """Create a model version straight from a logged run (bypassing the gate) and optionally set an alias.

    With ``checksums`` the version records its package checksums as ``register_best`` does; without, it is
    like a version registered before checksums existed."""
    from registry.aliases import ensure_registered_model
    from registry.client import mlflow_client
    from registry.integrity import manifest_tags
    from registry.register import package_checksums

    client = mlflow_client(settings)
    ensure_registered_model(client, settings.model_name)
    tags = {}
    if checksums:
        run = client.get_run(logged.run_id)
        tags = manifest_tags(package_checksums(client, settings, run, logged.model_id))
    mv = client.create_model_version(
        settings.model_name,
        source=f"models:/{logged.model_id}",
        run_id=logged.run_id,
        model_id=logged.model_id,
        tags=tags,
    )
    if alias:
        client.set_registered_model_alias(settings.model_name, alias, str(mv.version))
    return int(mv.version)


class PickleBomb:
    """Unpickling this runs ``open(marker, 'w')``: proof that a pickle was executed."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def pickle_bomb(marker: Path) -> bytes:
    import pickle

    return pickle.dumps(PickleBomb(marker))


def race_two_promotions(settings: Settings, monkeypatch: Any) -> tuple[list[str], list[BaseException]]:
    """Run two ``promote`` calls in threads that both pass the gate before either moves an alias.

    Returns the outcomes and any exceptions; the callers assert that exactly one promotion wins.
    """
    import threading

    import pipelines.promote as promote_module

    barrier = threading.Barrier(2, timeout=120)
    original = promote_module.apply_decision

    def apply_after_both_gates(*args: Any, **kwargs: Any) -> Any:
        barrier.wait()  # both gates have read the same champion and passed before either moves anything
        return original(*args, **kwargs)

    monkeypatch.setattr(promote_module, "apply_decision", apply_after_both_gates)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def run(actor: str) -> None:
        try:
            outcomes.append(promote_module.promote(settings=settings, params=Params(), actor=actor).outcome)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(f"racer{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return outcomes, errors


KILLPOINTS = Path(__file__).resolve().parent / "registry" / "killpoints"


def run_recops(
    *args: str, kill_at: str = "", env: dict[str, str] | None = None, timeout_s: float = 300
) -> Any:
    """The installed ``recops ARGS`` in a subprocess with this process's environment (the test's RECOPS_*
    settings), plus ``env``; ``kill_at`` arms a kill point of ``tests/registry/killpoints/sitecustomize.py``
    (e.g. ``after_alias:champion``). Returns the ``subprocess.CompletedProcess``."""
    import os
    import subprocess
    import sys

    full = {k: v for k, v in os.environ.items() if k != "RECOPS_TEST_KILL_AT"}
    full.update(PYTHONPATH=str(KILLPOINTS), COLUMNS="250", NO_COLOR="1", **(env or {}))
    if kill_at:
        full["RECOPS_TEST_KILL_AT"] = kill_at
    return subprocess.run(
        [str(Path(sys.executable).parent / "recops"), *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
