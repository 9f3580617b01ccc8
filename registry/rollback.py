"""Roll ``champion`` back to ``previous`` (or to a chosen version), audited.

Only a version that served as champion before (according to the audit trail) can be rolled back to: a
version the gate blocked, or one that never went through it, is refused unless ``force=True`` with a reason,
which the audit trail records. The target is loaded through the scorer's loader before any alias moves, so a
rollback cannot point ``champion`` at a version that would not serve. The move happens under the
metadata-database lock with a compare-and-set on the champion, like a promotion; afterwards ``previous``
holds the version that was champion, so a second rollback undoes the first.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.settings import Settings
from registry.aliases import (
    CHAMPION,
    PREVIOUS,
    RegistryError,
    alias_lock,
    alias_version,
    check_name,
    move_alias,
    settle_pending,
)
from registry.audit import AuditLog, audit_log
from registry.notices import redis_notifier

if TYPE_CHECKING:
    from mlflow import MlflowClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RollbackResult:
    model_name: str
    from_version: int
    to_version: int
    previous: int
    reason: str
    forced: bool = False


def rollback(
    *,
    to_version: int | None = None,
    settings: Settings,
    actor: str,
    reason: str = "",
    client: MlflowClient | None = None,
    audit: AuditLog | None = None,
    verify: bool = True,
    force: bool = False,
) -> RollbackResult:
    """Point ``champion`` at ``to_version`` (default: ``previous``) and ``previous`` at the old champion.

    Args:
        to_version: the version to serve again; None: whatever ``previous`` points to.
        settings: model name, MLflow URIs and metadata database.
        actor: who asked (audit trail).
        reason: why (audit trail).
        verify: load the target through the scorer's loader first and refuse if it does not load.
        force: allow a target that was never champion (the gate blocked it, or it never went through it);
            requires ``reason``, recorded in the audit trail with a ``FORCED`` mark.
    Raises:
        RegistryError: no champion, no previous version, unknown or unloadable target, a target that was
            never champion (without ``force``), or the champion moved while the rollback was being prepared.
    """
    from registry.client import mlflow_client
    from registry.loader import AliasNotFoundError, ModelLoaderError, load_version

    name = check_name(settings.model_name, "model name")
    if force and not reason.strip():
        raise RegistryError("--force needs --reason: say why a version that was never champion should serve")
    client = client or mlflow_client(settings)
    audit = audit or audit_log(settings)
    settle_pending(client, audit, name)  # the audit trail decides what "was champion" means: settle it first
    current = alias_version(client, name, CHAMPION)
    if current is None:
        raise RegistryError(f"{name} has no champion: nothing to roll back")
    target = to_version if to_version is not None else alias_version(client, name, PREVIOUS)
    if target is None:
        raise RegistryError(f"{name} has no {PREVIOUS!r} version: pass --to VERSION")
    if target == current:
        raise RegistryError(f"{name} v{target} is already the champion")
    _check_exists(client, name, target)
    was_champion = audit.was_at(name, CHAMPION, target)
    if not was_champion and not force:
        raise RegistryError(
            f"refusing to roll back to {name} v{target}: the audit trail shows it was never champion "
            "(the gate blocked it or it never went through it); promote it with `recops promote`, or pass "
            "--force --reason TEXT to serve it anyway"
        )
    if verify:
        try:
            load_version(target, settings=settings, client=client)
        except AliasNotFoundError as exc:
            raise RegistryError(f"cannot roll back to {name} v{target}: the version does not exist") from exc
        except ModelLoaderError as exc:
            raise RegistryError(
                f"refusing to roll back to {name} v{target}: it does not load ({exc})"
            ) from exc
    forced = not was_champion
    why = reason or "rollback"
    if forced:
        why = f"FORCED (v{target} was never champion): {reason.strip()}"
    with alias_lock(client, audit, name, redis_notifier(settings)) as lock:
        now = alias_version(client, name, CHAMPION)
        if now != current:
            raise RegistryError(f"the champion moved from v{current} to v{now} meanwhile: check and retry")
        move_alias(lock, alias=PREVIOUS, to_version=current, actor=actor, action="rollback", reason=why)
        move_alias(lock, alias=CHAMPION, to_version=target, actor=actor, action="rollback", reason=why)
    client.set_model_version_tag(name, str(target), "rolled_back_to", "true")
    log.info("rolled %s back from v%d to v%d (%s)", name, current, target, why)
    return RollbackResult(
        model_name=name, from_version=current, to_version=target, previous=current, reason=why, forced=forced
    )


def _check_exists(client: MlflowClient, name: str, version: int) -> None:
    from mlflow.exceptions import MlflowException

    from registry.client import is_not_found

    try:
        client.get_model_version(name, str(version))
    except MlflowException as exc:
        if is_not_found(exc):
            raise RegistryError(f"cannot roll back to {name} v{version}: the version does not exist") from exc
        raise
