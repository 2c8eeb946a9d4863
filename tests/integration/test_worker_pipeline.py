"""The worker end to end against a real Tansu broker and redis-server: merge, model parity, DLQ."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, read_topic, running, wait_for

from state.keys import RedisKeys
from state.mixing import MixingPolicy
from state.reader import EmbeddingReader
from state.sequence import event_key
from state.store import SequenceStore
from streams.app import build_worker
from streams.cli import main
from streams.dlq import HEADER_OFFSET, HEADER_PARTITION, HEADER_REASON, HEADER_SOURCE_TOPIC
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.recompute import sequence_input
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

@pytest.fixture(scope="module")
def artifact_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


@pytest.fixture(scope="module")
def encoder(artifact_dir: Path):  # noqa: ANN201 - InterestEncoder
    from encoders.serving import InterestEncoder

    return InterestEncoder.load(artifact_dir, providers=["CPUExecutionProvider"])


def settings_for(bootstrap: str, redis_url: str, unique: str) -> tuple[KafkaSettings, RedisSettings]:
    kafka = KafkaSettings(bootstrap_servers=bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=BROKER_CONSUMER_OPTIONS)
    redis_settings = RedisSettings(url=redis_url, key_prefix=unique, retry_attempts=2,
                                   retry_backoff_ms=50)
    return kafka, redis_settings


def make_topics(kafka: KafkaSettings, partitions: int = 2) -> TopicNames:
    names = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), names, partitions, 1)
    return names


def produce(kafka: KafkaSettings, messages: list[tuple[str, bytes | None, bytes, list | None]]) -> None:
    with KafkaProducer(kafka.producer_config()) as producer:
        for topic, key, value, headers in messages:
            producer.produce(topic, key=key, value=value, headers=headers)
        producer.flush()


def now_ms() -> int:
    return int(time.time() * 1000)


def events_for(user: str, base_ms: int) -> list[tuple[str, dict]]:
    return [
        ("feed", {"event_id": f"{user}-f1", "user_id": user, "ts_ms": base_ms, "action": "click",
                  "item_id": "it_coffee_1", "dwell_ms": 1200}),
        ("search", {"event_id": f"{user}-s1", "user_id": user, "ts_ms": base_ms + 1000,
                    "query": "espresso grinder", "clicked_item_id": "it_coffee_2", "position": 1}),
        ("ads", {"event_id": f"{user}-a1", "user_id": user, "ts_ms": base_ms + 2000,
                 "action": "click", "ad_id": "ad_coffee_3"}),
        ("feed", {"event_id": f"{user}-f2", "user_id": user, "ts_ms": base_ms + 3000,
                  "action": "like", "item_id": "it_coffee_4"}),
        ("search", {"event_id": f"{user}-s2", "user_id": user, "ts_ms": base_ms + 4000,
                    "query": "latte art"}),
    ]


def as_messages(names: TopicNames, events: list[tuple[str, dict]]) -> list[tuple[str, bytes, bytes, None]]:
    return [(names.for_scenario(s), e["user_id"].encode(), encode_event(e), None) for s, e in events]


def stored_counts(client: redis.Redis, keys: RedisKeys, user: str) -> dict[str, int] | None:
    seq = SequenceStore(client, keys).load_many([user]).get(user)
    return seq.counts() if seq is not None else None


def test_events_from_three_topics_land_in_one_sequence_and_redis_equals_the_model(
    kafka_broker, redis_server, redis_client, unique, artifact_dir, encoder
) -> None:
    kafka, redis_settings = settings_for(kafka_broker.bootstrap, redis_server.url, unique)
    names = make_topics(kafka)
    base = now_ms() - 60_000
    events = events_for("alice", base) + events_for("bob", base + 500)
    produce(kafka, as_messages(names, events))
    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact_dir),
                          WorkerSettings(), encoder=encoder)
    keys = RedisKeys(unique)
    expected = {"feed": 2, "search": 2, "ads": 1}
    with running(worker):
        wait_for(lambda: all(stored_counts(redis_client, keys, u) == expected for u in ("alice", "bob")),
                 60, "both users' five events in Redis")
    seq = SequenceStore(redis_client, keys).load_many(["alice"])["alice"]
    assert {b.event_id for b in seq.behaviors()} == {event_key(e["event_id"]) for _, e in events[:5]}
    assert {b.scenario for b in seq.behaviors()} == {"feed", "search", "ads"}
    assert seq.watermark_ms == base + 4000
    # What Redis holds equals a direct model call on the stored sequence.
    stored = EmbeddingReader(redis_client, keys).get_user("alice")
    direct = encoder.encode([sequence_input(seq, MixingPolicy())])[0]
    assert stored is not None and stored.version == seq.version >= 1
    assert stored.model_version == encoder.model_version
    for s, scenario in enumerate(encoder.scenarios):
        np.testing.assert_allclose(stored.vectors[scenario], direct[s], rtol=1e-5, atol=1e-6)
        norms = np.linalg.norm(stored.vectors[scenario], axis=-1)  # the queries, then the recent items
        assert stored.vectors[scenario].shape[0] == encoder.n_queries == 4
        if scenario == "feed":  # no recent items (copies of row 0); the pool moved the learned ones
            np.testing.assert_allclose(stored.vectors[scenario][2:], stored.vectors[scenario][[0, 0]])
            assert np.abs(norms[:2] - 1.0).max() > 1e-3
        else:
            np.testing.assert_allclose(norms[:2], 1.0, atol=1e-4)
            assert (norms[2:] <= 1.0 + 1e-4).all()
    # Downstream consumers see a notification per publish, the last one at the stored version.
    notes = [msgpack.unpackb(m.value()) for m in read_topic(kafka_broker.bootstrap, names.updates, 2,
                                                               stored.version)
             if m.key() == b"alice"]
    assert max(n["version"] for n in notes) == stored.version
    consumed = {s: worker.metrics.events_consumed.labels(s)._value.get() for s in expected}
    assert consumed == {"feed": 4.0, "search": 4.0, "ads": 2.0}
    assert worker.metrics.commits._value.get() >= 1


def test_malformed_messages_reach_the_dlq_and_the_worker_keeps_going(
    kafka_broker, redis_server, redis_client, unique, artifact_dir, encoder
) -> None:
    kafka, redis_settings = settings_for(kafka_broker.bootstrap, redis_server.url, unique)
    names = make_topics(kafka, partitions=1)
    base = now_ms() - 3 * 86_400_000
    good = {"event_id": "c-1", "user_id": "carol", "ts_ms": base, "action": "click", "item_id": "i1"}
    late = {"event_id": "c-0", "user_id": "carol", "ts_ms": base - 2 * 86_400_000,
            "action": "click", "item_id": "i0"}
    after = {"event_id": "c-2", "user_id": "carol", "ts_ms": base + 1, "query": "tent"}
    bad = [
        (names.feed, b"carol", b"\xc1not msgpack", [("trace", b"abc")]),
        (names.feed, b"carol", encode_event({**good, "event_id": "c-x", "action": "dance"}), None),
        (names.ads, b"mallory", encode_event({"event_id": "c-y", "user_id": "carol",
                                                "ts_ms": base, "action": "click", "ad_id": "a"}), None),
        (names.search, b"carol", encode_event({**after, "query": "x" * 70_000}), None),
    ]
    produce(kafka, [(names.feed, b"carol", encode_event(good), None), *bad,
                    (names.feed, b"carol", encode_event(late), None),
                    (names.search, b"carol", encode_event(after), None)])
    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact_dir),
                          WorkerSettings(), encoder=encoder)
    keys = RedisKeys(unique)
    with running(worker):
        wait_for(lambda: stored_counts(redis_client, keys, "carol") == {"feed": 1, "search": 1, "ads": 0},
                 60, "carol's two good events in Redis")
        dead = read_topic(kafka_broker.bootstrap, names.dlq, 1, 5)
    by_reason = {dict(m.headers())[HEADER_REASON].decode(): m for m in dead}
    assert set(by_reason) == {"decode_error", "validation_error", "key_mismatch",
                              "message_too_large", "too_late"}
    first = by_reason["decode_error"]
    headers = dict(first.headers())
    assert first.value() == b"\xc1not msgpack" and first.key() == b"carol"
    assert headers["trace"] == b"abc"  # original headers kept
    assert headers[HEADER_SOURCE_TOPIC] == names.feed.encode()
    assert headers[HEADER_PARTITION] == b"0" and headers[HEADER_OFFSET] == b"1"
    assert worker.metrics.dead_letters.labels("too_late")._value.get() == 1


def test_worker_refuses_topics_that_are_not_copartitioned(
    kafka_broker, redis_server, unique, artifact_dir, capsys
) -> None:
    kafka, _ = settings_for(kafka_broker.bootstrap, redis_server.url, unique)
    names = TopicNames.from_prefix(kafka.topic_prefix)
    admin = AdminClient(kafka.admin_config())
    counts = {names.feed: 2, names.search: 3, names.ads: 2}
    for future in admin.create_topics([NewTopic(t, n, 1) for t, n in counts.items()]).values():
        future.result()
    common = ["--bootstrap-servers", kafka_broker.bootstrap, "--topic-prefix", kafka.topic_prefix,
              "--redis-url", redis_server.url, "--key-prefix", unique]
    assert main(["worker", "--artifact-dir", str(artifact_dir), "--group", unique, *common]) == 2
    assert "not co-partitioned" in capsys.readouterr().err
    # `topics create` with another partition count than the existing topics: a clear error too.
    assert main(["topics", "create", "--partitions", "3", *common]) == 2
    assert "partition count other than 3" in capsys.readouterr().err


def test_cli_topics_produce_worker_inspect(
    kafka_broker, redis_server, redis_client, unique, artifact_dir, tmp_path, capsys
) -> None:
    common = ["--bootstrap-servers", kafka_broker.bootstrap, "--topic-prefix", f"{unique}.",
              "--redis-url", redis_server.url, "--key-prefix", unique]
    assert main(["topics", "create", "--partitions", "2", *common]) == 0
    assert main(["topics", "create", "--partitions", "2", *common]) == 0  # idempotent
    events = tmp_path / "events.jsonl"
    base = now_ms() - 60_000
    events.write_text("".join(json.dumps({"scenario": s, **e}) + "\n" for s, e in events_for("dave", base)))
    assert main(["produce", "--file", str(events), "--no-progress", *common]) == 0
    assert "produced 5 events" in capsys.readouterr().out
    keys = RedisKeys(unique)
    kafka, redis_settings = settings_for(kafka_broker.bootstrap, redis_server.url, unique)
    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact_dir), WorkerSettings())
    with running(worker):
        wait_for(lambda: stored_counts(redis_client, keys, "dave") == {"feed": 2, "search": 2, "ads": 1},
                 60, "dave's events in Redis")
    redis_only = common[4:]  # inspect takes no Kafka flags
    assert main(["inspect", "dave", *redis_only]) == 0
    out = capsys.readouterr().out
    assert "mixed sequence: 5 of 5 buffered events" in out
    assert "search: 2 chosen" in out and "espresso grinder" in out and "norms=" in out
    assert main(["inspect", "nobody", *redis_only]) == 1


def committed_offsets(bootstrap: str, group: str, topics: list[str]) -> dict[str, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(t, 0) for t in topics], timeout=10)
    finally:
        consumer.close()
    return {tp.topic: tp.offset for tp in offsets if tp.offset >= 0}


def test_redis_down_pauses_the_worker_without_committing_and_it_resumes(
    kafka_broker, unique, artifact_dir, encoder
) -> None:
    from streams.devservers.servers import start_redis

    own_redis = start_redis()
    port = own_redis.port
    try:
        kafka, redis_settings = settings_for(kafka_broker.bootstrap, own_redis.url, unique)
        names = make_topics(kafka, partitions=1)
        first, second = events_for("frank", now_ms() - 60_000)[:2]
        produce(kafka, as_messages(names, [first]))
        worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact_dir),
                              WorkerSettings(), encoder=encoder)
        client = redis.Redis.from_url(own_redis.url)
        with running(worker) as errors:
            wait_for(lambda: stored_counts(client, RedisKeys(unique), "frank"), 60, "frank in Redis")
            client.close()
            own_redis.stop()
            produce(kafka, as_messages(names, [second]))
            failures = worker.metrics.batch_failures.labels("redis")
            wait_for(lambda: failures._value.get() >= 1, 30, "a batch failed and consumption paused")
            time.sleep(2)  # the outage lasts: the worker waits, it does not exit
            assert not errors and any(t.name == "unistate-worker" and t.is_alive() for t in threading.enumerate())
            # Only the first event's batch is committed while Redis is away.
            assert committed_offsets(kafka_broker.bootstrap, unique, list(names.inputs)) == {names.feed: 1}
            own_redis = start_redis(port)  # the same address: the worker's client reconnects
            client = redis.Redis.from_url(own_redis.url)
            wait_for(lambda: worker.available and worker.metrics.consumption_paused._value.get() == 0, 60,
                     "consumption resumed")
            # The restarted redis-server kept nothing (no persistence): the second event is there.
            wait_for(lambda: (stored_counts(client, RedisKeys(unique), "frank") or {}).get("search") == 1,
                     60, "the second event in Redis")
        assert worker.metrics.batch_failures.labels("redis")._value.get() >= 1
    finally:
        own_redis.stop()
    assert committed_offsets(kafka_broker.bootstrap, unique, list(names.inputs)) == {names.feed: 1, names.search: 1}
