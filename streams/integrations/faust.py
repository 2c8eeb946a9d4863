"""A Faust agent turning unistate update notifications into batches of users' fresh vectors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.records import SCENARIOS
from streams.errors import ConfigurationError, PoisonMessageError
from streams.integrations.targeting import TopItems, rank_users
from streams.notifications import Notification, decode_notification
from streams.retry import RetryPolicy
from streams.topics import TopicNames

try:
    import faust
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "streams.integrations.faust needs faust-streaming: pip install 'unistate[faust]'"
    ) from exc

__all__ = ["HeadlessApp", "InterestBatch", "InterestStats", "InterestUpdates", "InterestsCallback",
           "Notification", "decode_notification", "register_interest_agent"]

logger = logging.getLogger(__name__)


class _NoWebBootStrategy(faust.App.BootStrategy):
    enable_web = False  # wins over ``conf.web_enabled``, which ``faust worker`` sets from --with-web


class HeadlessApp(faust.App):
    """A ``faust.App`` that never starts Faust's web server, so it binds no port (6066).

    ``faust worker`` overwrites ``web_enabled=False`` with its ``--with-web`` default (faust-streaming
    0.15); this app ignores both, however it is started. A plain ``faust.App`` needs
    ``faust -A module worker --without-web``.
    """

    BootStrategy = _NoWebBootStrategy


@dataclass(frozen=True, eq=False)
class InterestBatch:
    """Users whose ``scenario`` vectors changed, with what Redis held when the batch was read.

    ``vectors`` is ``[N, Q, D]`` float32 (rows L2-normalised); ``versions``, ``watermark_ms`` and
    ``age_ms`` (``read time - computed_at_ms``) are int64 ``[N]``, ``model_versions`` the model
    that computed each user's vectors, all aligned with ``user_ids``.
    """

    scenario: str
    user_ids: list[str]
    vectors: np.ndarray
    versions: np.ndarray
    watermark_ms: np.ndarray
    age_ms: np.ndarray
    model_versions: list[str | None]

    def top_items(self, index: ItemIndex, k: int = 10, candidates: Sequence[str] | None = None) -> TopItems:
        """The batch's users scored against an exported item index in one matrix multiply
        (``streams.integrations.targeting``; candidates default to the scenario's items)."""
        return rank_users(index, self.scenario, self.user_ids, self.vectors, self.model_versions,
                          candidates, k)


@dataclass
class InterestStats:
    """Counters since start: what came in, what was skipped and why, what was delivered."""

    notifications: int = 0  # messages taken from the topic
    undecodable: int = 0  # not a notification: skipped
    stale: int = 0  # already delivered at that version or later: skipped
    missing: int = 0  # no vectors in Redis: skipped
    behind: int = 0  # Redis older than notified (still delivered when new to this process)
    delivered: int = 0  # users handed to the callback


InterestsCallback = Callable[[InterestBatch], Awaitable[None]]


@dataclass(eq=False)
class InterestUpdates:
    """Decodes a batch of notifications, reads Redis once and hands fresh users to ``on_interests``.

    A notification is *stale* when this process already delivered that user at the notified
    version or later (duplicates in a batch, replays after a rebalance); it is skipped before
    Redis is read. Redis is the truth: a user is delivered with what Redis holds when that is
    newer than what was delivered before, even if newer than notified. Users without vectors
    are *missing* (expired, deleted, another shape); Redis older than notified (a lagging
    replica, a lost write) is counted as *behind*. ``stats`` counts all of it.
    """

    reader: EmbeddingReader
    on_interests: InterestsCallback
    scenario: str = "ads"
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(attempts=3, backoff_ms=100))
    max_tracked_users: int = 100_000
    clock_ms: Callable[[], int] = field(default=lambda: time.time_ns() // 1_000_000)
    stats: InterestStats = field(default_factory=InterestStats)
    _delivered: OrderedDict[str, int] = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ConfigurationError(f"unknown scenario {self.scenario!r}; known: {SCENARIOS}")

    async def handle(self, values: list[bytes | None]) -> InterestBatch | None:
        """Process one batch of raw notification values; return what was delivered, if anything."""
        notified = self._coalesce(values)
        if not notified:
            return None
        user_ids = list(notified)
        result = await asyncio.to_thread(
            self.retry.call, "faust_read", lambda: self.reader.get(user_ids, self.scenario)
        )
        keep = np.zeros(len(user_ids), dtype=bool)
        for i, (user_id, stored) in enumerate(zip(user_ids, result.version.tolist(), strict=True)):
            if not result.found[i]:
                self.stats.missing += 1
                logger.warning("user missing in redis user_id=%s notified_version=%d scenario=%s",
                               user_id, notified[user_id], self.scenario)
                continue
            if stored < notified[user_id]:
                self.stats.behind += 1
                logger.warning("redis behind notification user_id=%s stored_version=%d "
                               "notified_version=%d", user_id, stored, notified[user_id])
            keep[i] = stored > self._delivered.get(user_id, -1)
            self.stats.stale += int(not keep[i])
        if not keep.any():
            return None
        batch = InterestBatch(self.scenario, [u for u, k in zip(user_ids, keep, strict=True) if k],
                              result.vectors[keep], result.version[keep],
                              result.watermark_ms[keep], result.age_ms(self.clock_ms())[keep],
                              [mv for mv, k in zip(result.model_version, keep, strict=True) if k])
        await self.on_interests(batch)
        for user_id, version in zip(batch.user_ids, batch.versions, strict=True):
            self._remember(user_id, int(version))
        self.stats.delivered += len(batch.user_ids)
        return batch

    def _coalesce(self, values: list[bytes | None]) -> dict[str, int]:
        """User id → newest notified version not yet delivered; counts what is skipped."""
        self.stats.notifications += len(values)
        notified: dict[str, int] = {}
        for value in values:
            try:
                note = decode_notification(value)
            except PoisonMessageError as exc:
                self.stats.undecodable += 1
                logger.warning("notification skipped reason=undecodable error=%s", exc)
                continue
            fresh = note.version > self._delivered.get(note.user_id, -1)
            self.stats.stale += int(not fresh or note.user_id in notified)  # one read serves both
            if fresh:
                notified[note.user_id] = max(note.version, notified.get(note.user_id, -1))
        return notified

    def _remember(self, user_id: str, version: int) -> None:
        self._delivered[user_id] = version
        self._delivered.move_to_end(user_id)
        while len(self._delivered) > self.max_tracked_users:
            self._delivered.popitem(last=False)


def register_interest_agent(
    app: faust.App,
    topic_prefix: str,
    redis_client: redis.Redis,
    on_interests: InterestsCallback,
    *,
    scenario: str = "ads",
    key_prefix: str = "unistate",
    batch_size: int = 100,
    batch_within_s: float = 0.5,
    **options: Any,
) -> InterestUpdates:
    """Register on ``app`` an agent over ``{topic_prefix}updates`` that calls ``on_interests``.

    Notifications are taken ``batch_size`` at a time (or what arrived within ``batch_within_s``)
    and Redis (``key_prefix``, the worker's ``UNISTATE_REDIS_KEY_PREFIX``) is read once per batch.
    ``options`` go to ``InterestUpdates`` (``retry``, ``max_tracked_users``, ``clock_ms``). The
    returned object holds the ``stats``. An exception from ``on_interests`` (or Redis down past
    the retries) crashes the agent; Faust restarts it but acks that batch: it is not redelivered.
    """
    if batch_size < 1 or batch_within_s <= 0:
        raise ConfigurationError(f"need batch_size >= 1, batch_within_s > 0: {batch_size}, "
                                 f"{batch_within_s}")
    updates = InterestUpdates(EmbeddingReader(redis_client, RedisKeys(key_prefix)), on_interests,
                              scenario=scenario, **options)
    name = TopicNames.from_prefix(topic_prefix).updates
    topic = app.topic(name, key_serializer="raw", value_serializer="raw")

    async def unistate_interests(stream: faust.StreamT[bytes]) -> None:
        async for values in stream.take(batch_size, within=batch_within_s):
            await updates.handle(values)

    app.agent(topic, name=f"unistate_interests_{scenario}")(unistate_interests)
    logger.info("interest agent registered topic=%s scenario=%s batch_size=%d batch_within_s=%s",
                name, scenario, batch_size, batch_within_s)
    return updates
