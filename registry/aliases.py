"""Aliases of a registered model: names, how they are read, and the one audited way to move one.

The registry works by alias only (``champion``, ``challenger``, ``previous``); stages are never used and an
alias is resolved only with ``MlflowClient.get_model_version_by_alias``.

Every alias move goes through :func:`move_alias` inside :func:`alias_lock`: the lock serialises moves of one
model across processes, and on entry settles the intents a killed process left pending
(:func:`reconcile_intents`); each move writes its intent (committed), moves the alias, then marks the
intent done, so the audit trail and MLflow can only disagree until the next command reconciles them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from registry.audit import ABORTED, DONE, PENDING, Action, AuditLog, AuditRecord
from registry.client import harden_environment, is_not_found
from registry.notices import AliasNotifier

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"
ALIASES = (CHAMPION, CHALLENGER, PREVIOUS)


class RegistryError(RecopsError):
    """A registry operation was refused or cannot be carried out."""


def check_name(value: str, what: str) -> str:
    """Refuse values that cannot be quoted safely inside an MLflow filter string."""
    if not value or "'" in value or "\\" in value or "`" in value:
        raise RegistryError(f"invalid {what} {value!r}: it must be non-empty without quotes or backslashes")
    return value


def lock_name(model_name: str) -> str:
    """Name of the metadata-database lock that serialises alias moves of one registered model."""
    return f"recops:registry:{model_name}"


def resolve_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version ``alias`` points to, or None when the model or alias does not exist.

    Errors other than "not found" (the registry is down, refuses access, ...) propagate.
    """
    harden_environment()
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if is_not_found(exc):
            return None
        raise


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create the registered model if it does not exist yet."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(
            name, description="recops recommender (aliases: champion, challenger, previous)"
        )
    except MlflowException as exc:
        if "ALREADY_EXISTS" not in str(getattr(exc, "error_code", "")):
            raise


def alias_version(client: MlflowClient, name: str, alias: str) -> int | None:
    """The version number ``alias`` points to (None when unset), via ``get_model_version_by_alias``."""
    mv = resolve_alias(client, name, alias)
    return None if mv is None else int(mv.version)


@dataclass(frozen=True)
class AliasLock:
    """Held alias lock of one registered model: what :func:`move_alias` needs (obtained from
    :func:`alias_lock` only, so no alias moves outside the lock)."""

    client: MlflowClient
    audit: AuditLog
    name: str
    #: Told of each completed move (best effort, e.g. :func:`registry.notices.redis_notifier`).
    notify: AliasNotifier | None = None


@contextmanager
def alias_lock(
    client: MlflowClient, audit: AuditLog, name: str, notify: AliasNotifier | None = None
) -> Iterator[AliasLock]:
    """Hold the metadata-database lock of ``name`` and settle interrupted moves before anything else.

    ``notify`` is called after each alias move made under the lock (scorers listen for it).
    """
    with audit.lock(lock_name(name)):
        reconcile_intents(client, audit, name)
        yield AliasLock(client=client, audit=audit, name=name, notify=notify)


def reconcile_intents(client: MlflowClient, audit: AuditLog, name: str) -> list[AuditRecord]:
    """Settle the pending intents of ``name`` (call with the lock held, as :func:`alias_lock` does).

    Under the lock nobody else is moving aliases, so a pending intent belongs to a process that died between
    writing it and marking it done. It is ``done`` when the move happened: the next move of the same alias
    started from its target, or, if there is none, MLflow's alias points at its target now; otherwise
    ``aborted``. Returns the settled rows.
    """
    settled: list[AuditRecord] = []
    for intent in audit.pending(name):
        later = audit.next_move(intent)
        if later is not None:
            happened = later.from_version == intent.to_version
        else:
            happened = alias_version(client, name, intent.alias) == intent.to_version
        state = DONE if happened else ABORTED
        audit.settle(intent.id, state)
        log.warning(
            "reconciled an interrupted alias move (audit row %d, %s by %s at %s): %s@%s -> v%s %s",
            intent.id, intent.action, intent.actor, intent.at.isoformat(), name, intent.alias,
            intent.to_version, "happened" if happened else "did not happen",
        )  # fmt: skip
        settled.append(replace(intent, state=state))
    return settled


def settle_pending(client: MlflowClient, audit: AuditLog, name: str) -> list[AuditRecord]:
    """Reconcile under the lock when intents are pending (one query and nothing else otherwise)."""
    if not audit.pending(name):
        return []
    with audit.lock(lock_name(name)):
        return reconcile_intents(client, audit, name)


def move_alias(
    lock: AliasLock,
    *,
    alias: str,
    to_version: int,
    actor: str,
    action: Action,
    reason: str,
    metrics: Mapping[str, Any] | None = None,
) -> int | None:
    """Point ``alias`` at ``to_version``: intent (committed), alias move, intent done.

    Returns the version the alias pointed to before (None when unset); nothing is written when it already
    pointed at ``to_version``. When the move raises, the intent is settled by reading the alias back (left
    pending for the next command when even that fails) and the error propagates.
    """
    client, audit, name = lock.client, lock.audit, lock.name
    before = alias_version(client, name, alias)
    if before == to_version:
        return before
    intent = audit.record(
        actor=actor,
        model_name=name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        action=action,
        reason=reason,
        metrics=metrics,
        state=PENDING,
    )
    try:
        client.set_registered_model_alias(name, alias, str(to_version))
    except BaseException:
        _settle_after_failure(lock, intent)
        raise
    audit.settle(intent.id, DONE)
    log.info("%s: %s@%s %s -> %s (%s by %s)", action, name, alias, before, to_version, reason, actor)
    if lock.notify is not None:
        lock.notify(name, alias, to_version)
    return before


def _settle_after_failure(lock: AliasLock, intent: AuditRecord) -> None:
    """The alias call raised: it may still have happened (a timeout after the server applied it)."""
    try:
        now = alias_version(lock.client, lock.name, intent.alias)
    except Exception as exc:  # the registry is unreachable: the next command reconciles
        log.warning("alias move %s@%s left pending (%s)", lock.name, intent.alias, exc)
        return
    lock.audit.settle(intent.id, DONE if now == intent.to_version else ABORTED)
