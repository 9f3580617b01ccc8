"""Aliases of a registered model: names, how they are read, and the one audited way to move one.

The registry works by alias only (``champion``, ``challenger``, ``previous``); stages are never used and an
alias is resolved only with ``MlflowClient.get_model_version_by_alias``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import RecopsError
from registry.audit import Action, AuditLog
from registry.client import harden_environment, is_not_found

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion
    from sqlalchemy.engine import Connection

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


def move_alias(
    client: MlflowClient,
    audit: AuditLog,
    conn: Connection,
    *,
    name: str,
    alias: str,
    to_version: int,
    actor: str,
    action: Action,
    reason: str,
    metrics: Mapping[str, Any] | None = None,
) -> int | None:
    """Point ``alias`` at ``to_version`` and append the audit row (inside :meth:`AuditLog.lock`).

    Returns the version the alias pointed to before (None when unset); nothing is written when it already
    pointed at ``to_version``.
    """
    before = alias_version(client, name, alias)
    if before == to_version:
        return before
    client.set_registered_model_alias(name, alias, str(to_version))
    audit.record(
        actor=actor,
        model_name=name,
        alias=alias,
        from_version=before,
        to_version=to_version,
        action=action,
        reason=reason,
        metrics=metrics,
        conn=conn,
    )
    log.info("%s: %s@%s %s -> %s (%s by %s)", action, name, alias, before, to_version, reason, actor)
    return before
