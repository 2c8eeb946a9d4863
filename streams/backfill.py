"""Builds users' state and vectors straight from decoded events (an event file), merged with the state
already in Redis, without consuming Kafka.

Each user's events are applied in event-time order to the sequence loaded from Redis (a new user
starts empty), exactly as the worker applies them, so an event id already stored is a duplicate
and nothing is counted twice. Users that gained events are recomputed, published with the version
check (a refusal reloads the user and re-applies its events, like the worker) and notified.
Events carry no Kafka offsets here: later deduplication against the same events read from Kafka
relies on the event-id memory (``recent_ids_capacity`` newest ids per user; older ones are
``stale``, not re-applied).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass

import redis

from state.config import StateConfig
from state.keys import RedisKeys
from state.records import Behavior
from state.sequence import ApplyResult, UserSequence
from state.store import SequenceStore, StoredVersion
from streams.bulk_publish import BulkPublisher

__all__ = ["BackfillCounts", "Backfiller"]

logger = logging.getLogger(__name__)

_OUTCOME_FIELD = {ApplyResult.ADDED: "added", ApplyResult.DUPLICATE: "duplicates", ApplyResult.STALE: "stale",
                  ApplyResult.TOO_LATE: "too_late", ApplyResult.CONFLICT: "conflicts"}


@dataclass
class BackfillCounts:
    """What a backfill did: events by outcome (``ApplyResult``), users by outcome."""

    events: int = 0
    users: int = 0
    #: Users published with their new events.
    users_written: int = 0
    added: int = 0
    #: Already in the stored state (same event id and content).
    duplicates: int = 0
    #: Older than every id the user's state remembers: may be a forgotten duplicate, not applied.
    stale: int = 0
    #: More than ``allowed_lateness_ms`` older than the user's newest event of the scenario.
    too_late: int = 0
    #: An event id stored with other content: the stored event is kept.
    conflicts: int = 0
    refused_then_retried: int = 0
    quarantined: int = 0
    #: Users still refused after the bounded reloads: their new events are not written.
    errors: int = 0
    notifications_resent: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name."""
        return asdict(self)


class Backfiller:
    """Applies events to users in batches of ``batch_users``: load, apply, publish through ``bulk``,
    acknowledge the batch's notifications. ``stop`` ends the run between batches."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, keys: RedisKeys, bulk: BulkPublisher, *,
        state_config: StateConfig | None = None, batch_users: int = 256, stop: threading.Event | None = None,
    ) -> None:
        if batch_users < 1:
            raise ValueError(f"batch_users must be >= 1, got {batch_users}")
        self._bulk = bulk
        self._batch_users = batch_users
        self._stop = stop or threading.Event()
        self._counts = BackfillCounts()
        self._store = SequenceStore(client, keys, state_config, on_quarantine=self._on_quarantine,
                                    on_unnotified=self._on_unnotified)
        self._config = self._store.config

    def run(self, behaviors: Iterable[Behavior],
            on_batch: Callable[[BackfillCounts, int], None] | None = None) -> BackfillCounts:
        """Backfill ``behaviors`` (any order: each user's are applied by event time);
        ``on_batch(counts, users_in_batch)`` after each batch."""
        self._counts = counts = BackfillCounts()
        by_user: dict[str, list[Behavior]] = {}
        for behavior in behaviors:
            by_user.setdefault(behavior.user_id, []).append(behavior)
            counts.events += 1
        for events in by_user.values():
            events.sort(key=lambda b: b.ts_ms)  # stable: equal times keep the file's order
        counts.users = len(by_user)
        users = list(by_user)
        for start in range(0, len(users), self._batch_users):
            if self._stop.is_set():
                logger.warning("backfill stopped users_done=%d users_left=%d", start, len(users) - start)
                break
            batch = users[start:start + self._batch_users]
            self._backfill_batch(batch, by_user)
            if on_batch is not None:
                on_batch(counts, len(batch))
        logger.info("backfill done %s", " ".join(f"{k}={v}" for k, v in counts.as_dict().items()))
        return counts

    def _backfill_batch(self, batch: list[str], by_user: dict[str, list[Behavior]]) -> None:
        counts = self._counts
        sequences = self._bulk.redis_call("load", lambda: self._load(batch))
        changed: dict[str, UserSequence] = {}
        for user_id in batch:
            seq = sequences[user_id]
            for behavior in by_user[user_id]:
                outcome = seq.apply(behavior)
                setattr(counts, _OUTCOME_FIELD[outcome], getattr(counts, _OUTCOME_FIELD[outcome]) + 1)
                if outcome is ApplyResult.ADDED:
                    changed[user_id] = seq
        outcome = self._bulk.publish(changed, lambda ids: self._reapply(ids, by_user))
        counts.users_written += outcome.written
        counts.refused_then_retried += len(outcome.refused)
        counts.errors += len(outcome.failed)
        self._bulk.notifier.acknowledge()

    def _load(self, user_ids: list[str]) -> dict[str, UserSequence]:
        """Stored sequences; users without one start empty."""
        loaded = self._store.load_many(user_ids)
        return {u: loaded[u] if u in loaded else UserSequence(u, self._config) for u in user_ids}

    def _reapply(self, user_ids: list[str], by_user: dict[str, list[Behavior]]) -> dict[str, UserSequence]:
        """After a refusal: reload and apply the users' events again; those still gaining one."""
        gained = {}
        for user_id, seq in self._load(user_ids).items():
            if ApplyResult.ADDED in [seq.apply(b) for b in by_user[user_id]]:
                gained[user_id] = seq
        return gained

    def _on_quarantine(self, user_id: str) -> None:
        self._counts.quarantined += 1

    def _on_unnotified(self, stored: StoredVersion) -> None:
        self._bulk.notifier.resend(stored)
        self._counts.notifications_resent += 1
