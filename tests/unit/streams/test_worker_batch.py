"""The worker's decode and apply steps on one batch, without broker or Redis: outcomes, dead letters,
and the event counters incremented once per label per batch with the batch's totals."""

from __future__ import annotations

import time
from collections import Counter

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from state.keys import RedisKeys
from streams.events import encode_event
from streams.metrics import WorkerMetrics
from streams.topics import TopicNames
from streams.worker import BatchResult, Worker, WorkerParts

TOPICS = TopicNames.from_prefix("t.")
NOW_MS = int(time.time() * 1000)


class FakePipeline:
    """``load_many``'s pipeline: every user is absent from Redis."""

    def __init__(self) -> None:
        self.calls = 0

    def hmget(self, key: str, fields: list[str]) -> None:
        self.calls += 1

    def execute(self, raise_on_error: bool = True) -> list[list[None]]:
        return [[None] * 6 for _ in range(self.calls)]


class FakeRedis:
    """The two client calls a worker makes before publishing: script registration, pipelines."""

    def register_script(self, script: str) -> object:
        return object()

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline()


class FakeProducer:
    """Records what the dead-letter queue produces."""

    def __init__(self) -> None:
        self.produced: list[tuple[str, bytes | None]] = []

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: object) -> None:
        self.produced.append((topic, value))


class RecordingCounter:
    """A labelled counter that records each ``labels(...).inc(n)``."""

    def __init__(self) -> None:
        self.incs: list[tuple[tuple[str, ...], float]] = []

    def labels(self, *values: str) -> RecordingCounter._Child:
        return RecordingCounter._Child(self, values)

    class _Child:
        def __init__(self, parent: RecordingCounter, values: tuple[str, ...]) -> None:
            self.parent, self.values = parent, values

        def inc(self, amount: float = 1) -> None:
            self.parent.incs.append((self.values, amount))


def message(scenario: str, offset: int, event_id: str, user: str = "u1", **fields: object) -> Message:
    payload = {"event_id": event_id, "user_id": user, "ts_ms": NOW_MS - 10_000 + offset}
    if scenario == "feed":
        payload |= {"action": "click", "item_id": "it_1"}
    elif scenario == "search":
        payload |= {"query": "tent"}
    payload |= fields
    return Message(topic=TOPICS.for_scenario(scenario), partition=0, offset=offset, key=user.encode(),
                   value=encode_event(payload), timestamp=(TIMESTAMP_CREATE_TIME, NOW_MS))


def make_worker(metrics: WorkerMetrics) -> tuple[Worker, FakeProducer]:
    producer = FakeProducer()
    parts = WorkerParts(consumer=None, producer=producer, redis_client=FakeRedis(), encoder=object(),
                        policy=object(), topics=TOPICS, keys=RedisKeys("t"), ttl_s=60, metrics=metrics)
    return Worker(parts), producer


def batch() -> list[Message]:
    first = message("feed", 0, "f-0")
    return [
        first,
        message("feed", 1, "f-1", user="u2"),
        message("search", 0, "s-0"),
        message("feed", 2, "f-2"),
        Message(topic=TOPICS.feed, partition=0, offset=3, key=b"u1", value=b"\xc1"),  # not msgpack
        first,  # redelivered
        message("feed", 4, "f-0", item_id="it_other"),  # the id of f-0 with other content
        message("search", 1, "s-1", user="u2"),
    ]


def run(worker: Worker, messages: list[Message]) -> tuple[BatchResult, dict]:
    """Decode and apply one batch; returns its result and the users waiting with their offsets."""
    result = BatchResult(messages=len(messages))
    worker._apply(worker._decode(messages, result), result)
    waiting = worker._dirty.contributors(worker._dirty.due(0.0, everything=True))
    return result, {user: [m.offset() for m, _ in pairs] for user, pairs in waiting.items()} | {
        "changed": sorted(waiting)}


def test_batch_outcomes_and_dead_letters() -> None:
    worker, producer = make_worker(WorkerMetrics())
    result, contributors = run(worker, batch())
    assert (result.dead_letters, result.duplicates, result.stale, result.users_changed) == (2, 1, 0, 2)
    assert contributors == {"u1": [0, 0, 2], "u2": [1, 1], "changed": ["u1", "u2"]}
    assert [topic for topic, _ in producer.produced] == [TOPICS.dlq, TOPICS.dlq]


def test_event_counters_are_incremented_once_per_label_with_the_batch_totals() -> None:
    metrics = WorkerMetrics()
    metrics.events_consumed, metrics.events_applied = RecordingCounter(), RecordingCounter()
    worker, _ = make_worker(metrics)
    run(worker, batch())
    consumed = metrics.events_consumed.incs
    applied = metrics.events_applied.incs
    assert sorted(consumed) == [(("feed",), 6), (("search",), 2)]
    assert sorted(applied) == [(("feed", "added"), 3), (("feed", "conflict"), 1), (("feed", "duplicate"), 1),
                               (("search", "added"), 2)]
    assert max(Counter(labels for labels, _ in consumed + applied).values()) == 1


def test_prometheus_counters_add_up_over_batches() -> None:
    metrics = WorkerMetrics()
    worker, _ = make_worker(metrics)
    run(worker, batch())
    run(worker, [message("feed", 5, "f-5"), message("feed", 5, "f-5")])  # the second one is redelivered
    consumed = metrics.events_consumed.labels("feed")._value.get()
    added = metrics.events_applied.labels("feed", "added")._value.get()
    duplicates = metrics.events_applied.labels("feed", "duplicate")._value.get()
    assert (consumed, added, duplicates) == (8, 4, 2)
    assert metrics.dead_letters.labels("decode_error")._value.get() == 1
    assert metrics.snapshot().consumed == {"feed": 8, "search": 2}
