"""Recomputes, publishes and notifies many users outside the worker loop (re-embed, backfill), rate
limited, reloading users whose publish Redis refused."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from state.publisher import RedisPublisher
from state.sequence import UserSequence
from streams.notifier import Notifier
from streams.recompute import Recomputer
from streams.retry import RetryPolicy

__all__ = ["MAX_REFUSED_ROUNDS", "BulkPublisher", "PublishOutcome", "RateLimiter", "Reload"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Publish rounds after a refusal before a user is given up (counted as an error, left as it is).
MAX_REFUSED_ROUNDS = 3

#: Called with the users whose publish was refused: their state reloaded from Redis and brought
#: up to date again, only those that still need a publish.
Reload = Callable[[list[str]], dict[str, UserSequence]]


@dataclass
class PublishOutcome:
    """What one ``BulkPublisher.publish`` did."""

    written: int = 0
    #: Users refused at least once (a live worker wrote them meanwhile), then reloaded.
    refused: set[str] = field(default_factory=set)
    #: Users still refused after ``MAX_REFUSED_ROUNDS`` reloads: not written.
    failed: list[str] = field(default_factory=list)


class RateLimiter:
    """Spaces work out to at most ``per_s`` units a second on average; ``None``: no limit."""

    def __init__(self, per_s: float | None, stop: threading.Event | None = None) -> None:
        if per_s is not None and per_s <= 0:
            raise ValueError(f"per_s must be positive, got {per_s}")
        self.per_s = per_s
        self._wait = stop or threading.Event()
        self._next_s: float | None = None

    def acquire(self, units: int) -> None:
        """Block until ``units`` more units are within the rate (returns early when stopped)."""
        if self.per_s is None or units <= 0:
            return
        now = time.monotonic()
        start = now if self._next_s is None else max(self._next_s, now)
        if start > now:
            self._wait.wait(start - now)
        self._next_s = start + units / self.per_s


class BulkPublisher:
    """Encodes users in micro-batches, publishes them with the version check, notifies the written
    ones (acknowledged by the caller with ``notifier.acknowledge``) and reloads the refused ones.

    A refusal means Redis holds a version ≥ the one computed here: a live worker wrote the user
    after it was loaded. Nothing is lost: ``reload`` reads the user again (with the worker's
    events) and says whether it still needs this publish.
    """

    def __init__(
        self, recomputer: Recomputer, publisher: RedisPublisher, notifier: Notifier, retry: RetryPolicy,
        limiter: RateLimiter | None = None, stop: threading.Event | None = None,
    ) -> None:
        self.recomputer = recomputer
        self.notifier = notifier
        self._publisher = publisher
        self._retry = retry
        self._limiter = limiter or RateLimiter(None)
        self._stop = stop

    def publish(self, pending: dict[str, UserSequence], reload: Reload) -> PublishOutcome:
        """Publish ``pending``; refused users go through ``reload`` and are published again, at most
        ``MAX_REFUSED_ROUNDS`` times."""
        outcome = PublishOutcome()
        for _ in range(MAX_REFUSED_ROUNDS + 1):
            refused = self._publish_once(pending, outcome)
            if not refused:
                return outcome
            outcome.refused.update(refused)
            pending = self.redis_call("reload", lambda refused=refused: reload(refused))
        outcome.failed = [u for u in refused if u in pending]
        logger.error("publish refused %d times, users left as they are count=%d first=%s",
                     MAX_REFUSED_ROUNDS + 1, len(outcome.failed), outcome.failed[:5])
        return outcome

    def redis_call(self, operation: str, fn: Callable[[], T]) -> T:
        """``fn()``, retrying a transient Redis failure (``RedisUnavailableError`` in the end)."""
        return self._retry.call(operation, fn, stop=self._stop)

    def _publish_once(self, pending: dict[str, UserSequence], outcome: PublishOutcome) -> list[str]:
        refused: list[str] = []
        for chunk in self.recomputer.chunks(list(pending.values())):
            self._limiter.acquire(len(chunk))
            updates = self.recomputer.updates(chunk)
            written = self.redis_call("publish", lambda updates=updates: self._publisher.publish(updates))
            for update, ok in zip(updates, written, strict=True):
                if ok:
                    self.notifier.updated(update)
                    outcome.written += 1
                else:
                    refused.append(update.user_id)
                    logger.info("publish refused user_id=%s version=%d: a live worker wrote it, reloading",
                                update.user_id, update.version)
        return refused
