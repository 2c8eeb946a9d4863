"""Sends update notifications and, once the broker acknowledged them, records them in Redis (``nv``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from state.publisher import RedisPublisher, UserUpdate
from state.store import StoredVersion
from streams.notifications import Notification, encode_notification
from streams.producer import KafkaProducer
from streams.retry import RetryPolicy

__all__ = ["Notifier"]

logger = logging.getLogger(__name__)


class Notifier:
    """Queues one notification per published (or never-notified) version; ``acknowledge`` flushes
    the producer and marks the acknowledged versions notified.

    The worker, ``unistate reembed`` and ``unistate backfill`` share it, so every writer keeps the
    same order: Redis write → broker acknowledgement → ``mark_notified``. A crash in between
    leaves ``nv < ver``, and the next loader of the user notifies again (at-least-once).
    """

    def __init__(
        self, producer: KafkaProducer, topic: str, publisher: RedisPublisher, retry: RetryPolicy,
        on_redis_retry: Callable[[], None] | None = None, stop: threading.Event | None = None,
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._publisher = publisher
        self._retry = retry
        self._on_redis_retry = on_redis_retry
        self._stop = stop
        self._pending: list[tuple[str, int]] = []  # (user, version) produced, not yet acknowledged

    @property
    def pending(self) -> int:
        """Notifications produced since the last ``acknowledge`` or ``reset``."""
        return len(self._pending)

    def reset(self) -> None:
        """Forget the pending notifications (a failed batch: its users are loaded, and notified, again)."""
        self._pending = []

    def updated(self, update: UserUpdate, scenarios: tuple[str, ...] = ()) -> None:
        """Notify a version just written; ``scenarios``: those whose events it added (none: a re-embed)."""
        self.send(Notification(update.user_id, update.version, update.watermark_ms, update.computed_at_ms,
                               update.model_version, scenarios))

    def resend(self, stored: StoredVersion) -> None:
        """Notify a stored version whose notification was never acknowledged."""
        self.send(Notification(stored.user_id, stored.version, stored.watermark_ms, stored.computed_at_ms,
                               stored.model_version))
        logger.info("notification resent user_id=%s version=%d", stored.user_id, stored.version)

    def send(self, note: Notification) -> None:
        """Produce one notification, keyed by user."""
        self._producer.produce(self._topic, key=note.user_id.encode(), value=encode_notification(note))
        self._pending.append((note.user_id, note.version))

    def acknowledge(self) -> int:
        """Flush the producer (everything queued on it, dead letters included; ``DeliveryError``
        when the broker did not acknowledge), then set ``nv`` of the notified versions still stored
        (retrying a transient Redis failure). Returns how many notifications were acknowledged."""
        self._producer.flush()
        notified = self._pending
        self._retry.call("mark_notified", lambda: self._publisher.mark_notified(notified), self._on_redis_retry,
                         stop=self._stop)
        self._pending = []
        return len(notified)
