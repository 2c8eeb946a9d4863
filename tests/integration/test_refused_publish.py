"""Two workers briefly own one partition: a publish refused because the other worker wrote the
user first must not lose the batch's events (real Tansu, real Redis, the real model)."""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS

from state.keys import RedisKeys
from state.sequence import event_key
from state.store import SequenceStore
from streams.app import build_worker
from streams.devservers.servers import Server
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames, create_topics
from streams.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
BASE_MS = int(time.time() * 1000) - 3_600_000


def feed_event(k: int) -> dict:
    return {"event_id": f"e{k}", "user_id": "zoe", "ts_ms": BASE_MS + k * 1000, "item_id": f"i{k}",
            "action": "click"}


def consume(worker: Worker, count: int, timeout_s: float = 30) -> list:
    got: list = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count and time.monotonic() < deadline:
        got += [m for m in worker.parts.consumer.consume(100, 0.1) if m.error() is None]
    assert len(got) == count, f"consumed {len(got)} of {count}"
    return got


def test_a_refused_publish_reloads_and_loses_no_event(
    kafka_broker: Server, redis_server: Server, unique: str, tiny_model_dir: Path
) -> None:
    topics = TopicNames.from_prefix(f"{unique}.")

    def worker(group: str) -> Worker:  # separate groups: both own the partition, like a zombie
        kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, group_id=f"{unique}-{group}",
                              topic_prefix=f"{unique}.", consumer_options=BROKER_CONSUMER_OPTIONS)
        return build_worker(kafka, RedisSettings(url=redis_server.url, key_prefix=unique),
                            ModelSettings(artifact_dir=tiny_model_dir, providers=["CPUExecutionProvider"]),
                            WorkerSettings(recompute_interval_ms=0))

    owner, zombie = worker("owner"), worker("zombie")
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    from confluent_kafka.admin import AdminClient

    create_topics(AdminClient(kafka.admin_config()), topics, 1, 1)

    def produce(ks: range) -> None:
        with KafkaProducer(kafka.producer_config()) as producer:
            for k in ks:
                producer.produce(topics.feed, key=b"zoe", value=encode_event(feed_event(k)))
            producer.flush()

    with ExitStack() as stack:
        for w in (owner, zombie):
            stack.enter_context(w.parts.redis_client)
            stack.enter_context(w.parts.producer)
            stack.enter_context(w.parts.consumer)
        produce(range(1, 5))
        zombie.process(consume(zombie, 4))  # the zombie caches zoe at version 1 (e1..e4)
        owner.process(consume(owner, 4))  # all duplicates of what Redis holds
        produce(range(5, 9))
        owner.process(consume(owner, 4))  # the owner writes version 2 (e1..e8)
        produce(range(9, 11))
        result = zombie.process(consume(zombie, 6))  # stale cache: e5..e10 look new, publish refused
        assert zombie.metrics.snapshot().publish_refused >= 1
        assert result.users_written == 1
        stored = SequenceStore(owner.parts.redis_client, RedisKeys(unique)).load_many(["zoe"])["zoe"]
    assert sorted(b.event_id for b in stored.behaviors()) == sorted(event_key(f"e{k}") for k in range(1, 11))
    assert stored.version == 3


def test_a_quarantined_user_is_published_above_its_stored_version(
    kafka_broker: Server, redis_server: Server, unique: str, tiny_model_dir: Path
) -> None:
    """After a quarantine the user restarts empty but at the stored version, so its next publish
    goes through (an empty sequence once counted as 'not found' and restarted at version 0)."""
    import redis

    topics = TopicNames.from_prefix(f"{unique}.")
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=BROKER_CONSUMER_OPTIONS)
    from confluent_kafka.admin import AdminClient

    create_topics(AdminClient(kafka.admin_config()), topics, 1, 1)
    keys = RedisKeys(unique)
    client = redis.Redis.from_url(redis_server.url)
    client.hset(keys.user("zoe"), mapping={"ver": 7, "seq": b"\xc1 garbage"})
    worker = build_worker(kafka, RedisSettings(url=redis_server.url, key_prefix=unique),
                          ModelSettings(artifact_dir=tiny_model_dir, providers=["CPUExecutionProvider"]),
                          WorkerSettings(recompute_interval_ms=0))
    with ExitStack() as stack:
        for part in (worker.parts.redis_client, worker.parts.producer, worker.parts.consumer):
            stack.enter_context(part)
        with KafkaProducer(kafka.producer_config()) as producer:
            producer.produce(topics.feed, key=b"zoe", value=encode_event(feed_event(1)))
            producer.flush()
        result = worker.process(consume(worker, 1))
    assert result.users_written == 1 and worker.metrics.snapshot().publish_refused == 0
    assert client.exists(keys.quarantine("zoe"))
    stored = SequenceStore(client, keys).load_many(["zoe"])["zoe"]
    assert stored.version == 8 and [b.event_id for b in stored.behaviors()] == [event_key("e1")]
