"""The worker loop: consume a batch, update user state, recompute, publish, then commit."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, field

import redis
from confluent_kafka import Message

from state.cache import SequenceCache
from state.config import StateConfig
from state.keys import RedisKeys
from state.mixing import MixingPolicyProtocol
from state.publisher import RedisPublisher, UserUpdate
from state.records import Behavior
from state.sequence import ApplyResult, UserSequence
from state.store import SequenceStore, StoredVersion
from streams.consumer import EventConsumer
from streams.dirty import CommitTracker, DirtyUsers
from streams.dlq import DeadLetterQueue
from streams.errors import KafkaUnavailableError, PoisonMessageError, RedisUnavailableError, StreamsError
from streams.events import EventLimits
from streams.fast_decode import decode_event_fast
from streams.health import Health
from streams.metrics import WorkerMetrics
from streams.notifier import Notifier
from streams.outage import OutageBackoff
from streams.producer import KafkaProducer
from streams.recompute import EncoderProtocol, Recomputer
from streams.retry import RetryPolicy
from streams.startup import check_model, check_topics
from streams.topics import TopicNames

__all__ = ["BatchResult", "Worker", "WorkerParts"]

logger = logging.getLogger(__name__)

#: After a refused publish (another worker wrote the user first), the user is reloaded from Redis,
#: the batch's events re-applied and published again, at most this many rounds; then the batch
#: fails uncommitted and is redelivered.
MAX_REFUSED_ROUNDS = 3
Contributors = dict[str, list[tuple[Message, Behavior]]]
_ADDED = ApplyResult.ADDED  # an enum member lookup costs ~70 ns; this one is made per event


@dataclass
class WorkerParts:
    """Everything a ``Worker`` runs with; the context managers are entered by ``Worker.run``."""

    consumer: EventConsumer
    producer: KafkaProducer
    redis_client: redis.Redis
    encoder: EncoderProtocol
    policy: MixingPolicyProtocol
    topics: TopicNames
    keys: RedisKeys
    ttl_s: int
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    state_config: StateConfig = field(default_factory=StateConfig)
    limits: EventLimits = field(default_factory=EventLimits)
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    metrics_server: AbstractContextManager[object] | None = None
    #: Liveness and readiness, read by the status endpoints.
    health: Health = field(default_factory=Health)
    #: Background helpers (the throughput log) entered with the metrics server.
    services: list[AbstractContextManager[object]] = field(default_factory=list)
    max_batch_messages: int = 500
    consume_wait_ms: int = 50
    max_batch_users: int = 64
    #: Coalesced recompute: a user is recomputed at most once per this window (0: every batch) ...
    recompute_interval_ms: int = 0
    #: ... or as soon as it gathered this many unpublished events; all are due above max_dirty_users.
    recompute_max_events: int = 64
    max_dirty_users: int = 20_000
    metadata_timeout_s: float = 15.0
    #: Fault-suite hook: called with ``"published"`` once Redis has a batch (notifications not
    #: flushed) and with ``"flushed"`` once the broker acknowledged them (offsets not committed).
    fault_hook: Callable[[str], None] | None = None
    #: Observer hook (benchmarks, tests): called after each committed batch with its messages,
    #: what it did and its ``time.perf_counter()`` start and end.
    on_batch: Callable[[list[Message], BatchResult, float, float], None] | None = None


@dataclass
class BatchResult:
    """What one batch did (returned by ``Worker.process`` for logs and tests)."""

    messages: int = 0
    dead_letters: int = 0
    duplicates: int = 0
    stale: int = 0
    users_changed: int = 0
    users_written: int = 0
    notifications_resent: int = 0


class Worker:
    """One consumer-group member; ``run`` loops until ``stop`` (thread-safe) is called."""

    def __init__(self, parts: WorkerParts) -> None:
        self.parts = parts
        self.metrics = parts.metrics
        self._stop = threading.Event()
        self._scenario_of = parts.topics.scenario_of()
        self._store = SequenceStore(parts.redis_client, parts.keys, parts.state_config,
                                    on_quarantine=lambda _user_id: self.metrics.states_quarantined.inc(),
                                    on_unnotified=self._renotify)
        self._publisher = RedisPublisher(parts.redis_client, parts.keys, parts.ttl_s)
        self._dlq = DeadLetterQueue(parts.producer, parts.topics.dlq)
        self._recomputer = Recomputer(parts.encoder, parts.policy, parts.max_batch_users,
                                      on_unknown_items=self.metrics.unknown_items.inc)
        self._cache = self._new_cache()
        self._dirty = DirtyUsers(parts.recompute_interval_ms / 1000, parts.recompute_max_events,
                                 parts.max_dirty_users)
        self._commits = CommitTracker()
        self._unpublished_on_failure: list[Message] = []
        self._retry = parts.retry
        self._notifier = Notifier(parts.producer, parts.topics.updates, self._publisher, parts.retry,
                                  self.metrics.redis_retries.inc, self._stop)
        self._resent = 0
        self.batches = 0
        #: False while consumption is paused because Redis or the broker is away (readiness).
        self.available = True

    def _new_cache(self) -> SequenceCache:
        config = self.parts.state_config
        return SequenceCache(config.idle_evict_s, config.cache_max_bytes)

    def stop(self) -> None:
        """Ask the loop to finish its current batch and return."""
        self._stop.set()

    def run(self) -> None:
        """Enter every resource in one ExitStack, run the start-up checks, then loop batch by batch."""
        p = self.parts
        check_model(p.encoder, p.policy)  # before connecting to anything
        p.health.set_model_loaded(True)
        with ExitStack() as stack:
            if p.metrics_server is not None:
                stack.enter_context(p.metrics_server)
            for service in p.services:
                stack.enter_context(service)
            stack.enter_context(p.redis_client)
            stack.enter_context(p.producer)
            p.consumer.on_revoke = self._on_revoke
            p.consumer.on_assign = lambda _partitions: p.health.set_assigned(True)
            consumer = stack.enter_context(p.consumer)
            partitions = check_topics(consumer.client, p.topics, p.metadata_timeout_s)
            logger.info("worker started topics=%s partitions=%d", list(p.topics.inputs), partitions)
            backoff = OutageBackoff()
            while not self._stop.is_set():
                p.health.tick()
                messages = consumer.consume(p.max_batch_messages, p.consume_wait_ms / 1000)
                if messages or self._dirty:
                    try:
                        self.process(messages)
                    except (RedisUnavailableError, KafkaUnavailableError) as exc:
                        self._rewind_and_wait(messages + self._unpublished_on_failure, exc, backoff)
                        continue
                    if messages:
                        self.batches += 1
                        backoff.reset()
                if not self.available:  # a batch went through, or nothing is pending any more
                    self._set_available(True)
                self.metrics.cached_users.set(len(self._cache))
                self._cache.evict()
                self.metrics.cached_bytes.set(self._cache.total_bytes)
            self._publish_remaining()
        logger.info("worker stopped batches=%d", self.batches)

    def _publish_remaining(self) -> None:
        """On a clean stop, publish and commit the users still waiting for their window."""
        if not self._dirty:
            return
        try:
            self.process([], everything=True)
        except (RedisUnavailableError, KafkaUnavailableError) as exc:  # uncommitted: they come again
            logger.warning("stopping with %d unpublished users (uncommitted, redelivered) error=%s",
                           len(self._dirty), exc)

    def _rewind_and_wait(self, messages: list[Message], error: StreamsError, backoff: OutageBackoff) -> None:
        """A dependency is away: nothing of the batch was committed. Pause consumption, wait
        (polling, so the group membership lives on), then seek back to the batch's first offsets
        so it is consumed again. Partitions lost meanwhile resume from the committed offsets at
        their new owner; everything already written to Redis is deduplicated there."""
        dependency = "redis" if isinstance(error, RedisUnavailableError) else "kafka"
        self.metrics.batch_failures.labels(dependency).inc()
        self._set_available(False, f"{dependency} unavailable")
        consumer = self.parts.consumer
        wait_s = backoff.next_wait_s()
        logger.warning("batch failed, consumption paused dependency=%s wait_s=%.1f error=%s",
                       dependency, wait_s, error)
        consumer.pause_all()
        deadline = time.monotonic() + wait_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.parts.health.tick()  # waiting on purpose: alive, not ready
            consumer.poll_paused(min(0.5, max(deadline - time.monotonic(), 0.0)))
        consumer.rewind(messages)
        consumer.resume_all()

    def _set_available(self, available: bool, reason: str | None = None) -> None:
        self.available = available
        self.metrics.consumption_paused.set(0 if available else 1)
        self.parts.health.set_paused(None if available else reason)
        if available:
            logger.info("consumption resumed")

    def process(self, messages: list[Message], everything: bool = False) -> BatchResult:
        """Apply one consumed batch, publish the users that are due (all of them with
        ``everything``), then commit the offsets below every unpublished event."""
        started = time.perf_counter()
        result = BatchResult(messages=len(messages))
        self._notifier.reset()
        self._resent = 0
        try:
            decoded = self._decode(messages, result)
            self._apply(decoded, result)
            due = self._dirty.due(time.monotonic(), everything)
            contributors = self._dirty.contributors(due)
            written_at_ms = self._recompute_and_publish(due, contributors, result)
            if written_at_ms:
                self._fault("published")
            self._notifier.acknowledge()  # notifications and dead letters acknowledged, then nv set
            self._dirty.done(due)
            self._commits.processed(messages)
            offsets = self._commits.to_commit(self._dirty.first_offsets())
            result.notifications_resent = self._resent
            self._observe_latency(contributors, written_at_ms)
            if offsets:
                self._fault("flushed")
                self.parts.consumer.commit(offsets)
                self._commits.committed(offsets)
                self.metrics.commits.inc()
        except BaseException:
            # Unpublished state is dropped (its events are uncommitted and come again); the
            # caller rewinds to them, so what was processed no longer counts towards a commit.
            # Partitions may also have moved: Redis is the truth.
            self._unpublished_on_failure = self._dirty.messages()
            self._dirty.clear()
            self._commits.clear()
            self._cache = self._new_cache()
            raise
        finished = time.perf_counter()
        self.metrics.batch_seconds.observe(finished - started)
        self.metrics.dirty_users.set(len(self._dirty))
        if self.parts.on_batch is not None:
            self.parts.on_batch(messages, result, started, finished)
        logger.debug("batch done messages=%d dead_letters=%d duplicates=%d stale=%d changed=%d written=%d "
                     "resent=%d waiting=%d", result.messages, result.dead_letters, result.duplicates, result.stale,
                     result.users_changed, result.users_written, result.notifications_resent, len(self._dirty))
        return result

    def _fault(self, point: str) -> None:
        if self.parts.fault_hook is not None:
            self.parts.fault_hook(point)

    def _decode(self, messages: list[Message], result: BatchResult) -> list[tuple[Message, Behavior]]:
        """Decode the batch (poison to the DLQ); ``events_consumed`` is counted once per scenario."""
        now_ms = int(time.time() * 1000)
        limits, scenario_of = self.parts.limits, self._scenario_of
        decoded: list[tuple[Message, Behavior]] = []
        consumed: Counter[str] = Counter()
        try:
            for msg in messages:
                scenario = scenario_of[msg.topic()]
                consumed[scenario] += 1
                try:
                    behavior = decode_event_fast(scenario, msg.key(), msg.value(), now_ms, limits)
                except PoisonMessageError as exc:
                    self._dead_letter(msg, exc, result)
                    continue
                decoded.append((msg, behavior))
        finally:
            for scenario, n in consumed.items():
                self.metrics.events_consumed.labels(scenario).inc(n)
        return decoded

    def _dead_letter(self, msg: Message, error: PoisonMessageError, result: BatchResult) -> None:
        self._dlq.send(msg, error)
        self.metrics.dead_letters.labels(error.reason).inc()
        result.dead_letters += 1

    def _sequences(self, user_ids: list[str]) -> dict[str, UserSequence]:
        """Dirty (unpublished) sequences first, then cached ones, the rest loaded from Redis (new
        users start empty)."""
        now_s = time.monotonic()  # one touch time for the batch
        dirty, cache = self._dirty, self._cache
        found = {u: s for u in user_ids if (s := dirty.get(u)) is not None or (s := cache.get(u, now_s)) is not None}
        missing = [u for u in user_ids if u not in found]
        if missing:
            found.update(self._load(missing, now_s))
        return found

    def _load(self, user_ids: list[str], now_s: float) -> dict[str, UserSequence]:
        """Load from Redis (new users start empty) and cache."""
        loaded = self._retry.call("load_many", lambda: self._store.load_many(user_ids),
                                  self._on_redis_retry, stop=self._stop)
        self.parts.health.redis_ok()
        found = {}
        for user_id in user_ids:
            seq = loaded.get(user_id)
            if seq is None:  # not `or`: an empty sequence is falsy, and it carries a version
                seq = UserSequence(user_id, self.parts.state_config)
            self._cache.put(seq, now_s)
            found[user_id] = seq
        return found

    def _apply(self, decoded: list[tuple[Message, Behavior]], result: BatchResult) -> None:
        """Apply decoded events to their users' sequences and mark the users that gained one dirty;
        ``events_applied`` is counted once per (scenario, result)."""
        sequences = self._sequences(list(dict.fromkeys(b.user_id for _, b in decoded)))
        changed: set[str] = set()
        dirty, now_s = self._dirty, time.monotonic()
        added: Counter[str] = Counter()  # by scenario; keyed apart: hashing an enum is slow
        others: Counter[tuple[str, ApplyResult]] = Counter()
        try:
            for pair in decoded:
                msg, behavior = pair
                seq = sequences[behavior.user_id]
                outcome = _apply_message(seq, msg, behavior)
                if outcome is _ADDED:
                    added[behavior.scenario] += 1
                    changed.add(seq.user_id)
                    dirty.add(seq, msg, behavior, now_s)
                else:
                    others[behavior.scenario, outcome] += 1
                    self._not_added(seq, msg, behavior, outcome, result)
        finally:
            others.update({(scenario, ApplyResult.ADDED): n for scenario, n in added.items()})
            for (scenario, outcome), n in others.items():
                self.metrics.events_applied.labels(scenario, outcome.value).inc(n)
        result.users_changed = len(changed)

    def _not_added(self, seq: UserSequence, msg: Message, behavior: Behavior, outcome: ApplyResult,
                   result: BatchResult) -> None:
        """Count a duplicate or stale event; dead-letter a conflicting or too late one."""
        if outcome is ApplyResult.DUPLICATE:
            result.duplicates += 1
        elif outcome is ApplyResult.STALE:
            result.stale += 1
        elif outcome is ApplyResult.CONFLICT:
            detail = (f"event_id={behavior.event_id!r} was applied before with other content "
                      "(an id reused by the producer); the first event is kept")
            self._dead_letter(msg, PoisonMessageError("conflicting_event_id", detail, stage="apply"), result)
        else:
            detail = (f"ts_ms={behavior.ts_ms} is more than allowed_lateness_ms="
                      f"{seq.config.allowed_lateness_ms} older than the user's newest "
                      f"{behavior.scenario} event")
            self._dead_letter(msg, PoisonMessageError("too_late", detail, stage="apply"), result)

    def _recompute_and_publish(
        self, changed: dict[str, UserSequence], contributors: Contributors, result: BatchResult
    ) -> dict[str, int]:
        """Encode and publish; users whose publish Redis refused are reloaded, get this batch's
        events again and are published again. Returns user → ms when Redis acknowledged."""
        written_at_ms: dict[str, int] = {}
        pending = changed
        for _ in range(MAX_REFUSED_ROUNDS + 1):
            refused = self._publish(pending, written_at_ms, contributors)
            if not refused:
                break
            pending = self._reapply(refused, contributors)
        else:
            raise StreamsError(f"publish of users {refused[:5]} refused {MAX_REFUSED_ROUNDS + 1} times "
                               "(other workers keep writing them); the batch stays uncommitted")
        result.users_written = len(written_at_ms)
        self.metrics.users_updated.inc(len(written_at_ms))
        return written_at_ms

    def _publish(self, pending: dict[str, UserSequence], written_at_ms: dict[str, int],
                 contributors: Contributors) -> list[str]:
        """One pass over ``pending`` in micro-batches; returns the users Redis refused."""
        refused: list[str] = []
        for chunk in self._recomputer.chunks(list(pending.values())):
            encode_started = time.monotonic()
            updates = self._recomputer.updates(chunk)
            self.metrics.recompute_seconds.observe(time.monotonic() - encode_started)
            self.metrics.recompute_batch_users.observe(len(updates))
            written = self._retry.call("publish", lambda updates=updates: self._publisher.publish(updates),
                                       self._on_redis_retry, stop=self._stop)
            self.parts.health.redis_ok()
            now_ms = int(time.time() * 1000)
            for update, ok in zip(updates, written, strict=True):
                if ok:
                    self._notify(update, contributors)
                    written_at_ms[update.user_id] = now_ms
                else:  # Redis holds a newer version: another worker wrote this user meanwhile
                    refused.append(update.user_id)
                    self.metrics.publish_refused.inc()
                    logger.warning("publish refused user_id=%s version=%d: reloading and re-applying",
                                   update.user_id, update.version)
        return refused

    def _reapply(self, user_ids: list[str], contributors: Contributors) -> dict[str, UserSequence]:
        """Reload ``user_ids`` from Redis and apply their unpublished events again; returns the
        users that still gained an event (the others' events were all written by the other worker)."""
        for user_id in user_ids:
            self._cache.pop(user_id)
        sequences = self._load(user_ids, time.monotonic())
        for seq in sequences.values():
            self._dirty.replace(seq)  # the stale sequence goes; its unpublished events stay listed
        gained = {}
        for user_id, seq in sequences.items():
            outcomes = [_apply_message(seq, msg, behavior) for msg, behavior in contributors[user_id]]
            if ApplyResult.ADDED in outcomes:
                gained[user_id] = seq
        return gained

    def _notify(self, update: UserUpdate, contributors: Contributors) -> None:
        scenarios = tuple(dict.fromkeys(b.scenario for _, b in contributors.get(update.user_id, ())))
        self._notifier.updated(update, scenarios)

    def _renotify(self, stored: StoredVersion) -> None:
        """A loaded user's stored version was never notified (a crash or broker failure between
        the Redis write and the acknowledgement): notify it now."""
        self._notifier.resend(stored)
        self._resent += 1
        self.metrics.notifications_resent.inc()

    def _observe_latency(self, contributors: Contributors, written_at_ms: dict[str, int]) -> None:
        for user_id, at_ms in written_at_ms.items():
            for msg, _ in contributors.get(user_id, ()):
                ts_type, ts_ms = msg.timestamp()
                if ts_type and ts_ms > 0:
                    self.metrics.observe_latency(max(at_ms - ts_ms, 0) / 1000)

    def _on_revoke(self, partitions: list[object]) -> None:
        """Partitions move to another member: forget cached users (Redis has their state) and the
        users still waiting for their window (their events are uncommitted: the new owner reads them)."""
        self._cache = self._new_cache()
        self._dirty.clear()
        self._commits.clear()
        self.parts.health.set_assigned(False)

    def _on_redis_retry(self) -> None:
        self.metrics.redis_retries.inc()
        self.parts.health.redis_failed("operation failed, retrying")


def _apply_message(seq: UserSequence, msg: Message, behavior: Behavior) -> ApplyResult:
    """Apply with the message's scenario and partition as source, so redelivery is exact."""
    return seq.apply(behavior, f"{behavior.scenario}/{msg.partition()}", int(msg.offset()))
