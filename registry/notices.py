"""Announce alias moves on Redis so scorers swap at once instead of at their next poll.

After :func:`registry.aliases.move_alias` has moved an alias (and its audit intent is settled), the lock's
notifier publishes ``{"model", "alias", "version"}`` as JSON on ``<redis_prefix>registry:aliases``. The
scoring service's watcher treats a notice as a hint to poll now (it asks the registry, never trusts the
payload), so a lost notice only costs the wait for the next poll. Publishing is best effort: a Redis that is
down or slow (1 s timeout) is logged and never fails or undoes the move. Without ``RECOPS_REDIS_URL`` there is
no notifier and the scorers poll.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from core.settings import Settings

log = logging.getLogger(__name__)

#: The channel name after the settings' ``redis_prefix``.
NOTICE_CHANNEL = "registry:aliases"
#: Seconds a publish may take before it is given up (the move has already happened).
PUBLISH_TIMEOUT_S = 1.0

#: ``(model name, alias, version)`` -> None, called after each alias move.
AliasNotifier = Callable[[str, str, int], None]


def notice_channel(settings: Settings) -> str:
    """The Redis pub/sub channel alias moves are announced on."""
    return f"{settings.redis_prefix}{NOTICE_CHANNEL}"


def redis_notifier(settings: Settings) -> AliasNotifier | None:
    """A notifier publishing on :func:`notice_channel`, or None when no Redis is configured."""
    if settings.redis_url is None:
        return None
    url, channel = settings.redis_url.get_secret_value(), notice_channel(settings)

    def announce(model: str, alias: str, version: int) -> None:
        import redis

        payload = json.dumps({"model": model, "alias": alias, "version": version})
        try:
            client = redis.Redis.from_url(
                url, socket_connect_timeout=PUBLISH_TIMEOUT_S, socket_timeout=PUBLISH_TIMEOUT_S
            )
            try:
                receivers = client.publish(channel, payload)
            finally:
                client.close()
        except Exception as exc:  # best effort: the move stands; scorers see it at their next poll
            log.warning("alias move %s@%s -> v%d not announced (%s); scorers will poll", model, alias,
                        version, type(exc).__name__)  # fmt: skip
            return
        log.info("announced %s@%s -> v%d to %d listener(s)", model, alias, version, receivers)

    return announce
