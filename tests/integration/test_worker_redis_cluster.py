"""The worker publishing to a real Redis Cluster (one cluster-mode redis-server owning every slot)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, running, wait_for

from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.records import SCENARIOS
from state.store import SequenceStore
from streams.app import build_worker
from streams.devservers.servers import Server, start_redis
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Server]:
    with start_redis(cluster=True) as server:
        yield server


def test_worker_writes_every_user_to_a_redis_cluster(
    kafka_broker: Server, redis_cluster: Server, unique: str, tiny_model_dir: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, group_id=unique,
                          topic_prefix=f"{unique}.", consumer_options=BROKER_CONSUMER_OPTIONS)
    names = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), names, 2, 1)
    base_ms = int(time.time() * 1000) - 60_000
    users = [f"c{i}" for i in range(12)]  # spread over many hash slots
    with KafkaProducer(kafka.producer_config()) as producer:
        for i, user in enumerate(users):
            for scenario, body in (("feed", {"item_id": "it1", "action": "click"}),
                                   ("search", {"query": "solar panels"}),
                                   ("ads", {"ad_id": "ad1", "action": "impression"})):
                event = {"event_id": f"{user}-{scenario}", "user_id": user, "ts_ms": base_ms + i,
                         **body}
                producer.produce(names.for_scenario(scenario), key=user.encode(),
                                 value=encode_event(event))
        producer.flush()
    redis_settings = RedisSettings(url=redis_cluster.url, cluster=True, key_prefix=unique)
    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=tiny_model_dir,
                          providers=["CPUExecutionProvider"]), WorkerSettings())
    client = redis.RedisCluster.from_url(redis_cluster.url)
    reader = EmbeddingReader(client, RedisKeys(unique))

    def all_users_written() -> bool:
        return all(reader.get(users, s).found.all() for s in SCENARIOS)

    def all_events_stored() -> bool:
        stored = SequenceStore(client, RedisKeys(unique)).load_many(users)
        return len(stored) == len(users) and all(
            seq.counts() == {"feed": 1, "search": 1, "ads": 1} for seq in stored.values())

    with running(worker):
        wait_for(all_users_written, 60, "every user's vectors in the cluster")
        wait_for(all_events_stored, 60, "every user's three events in the cluster's state")
    versions = {int(v) for v in reader.get(users, "ads").version}
    assert versions <= {1, 2, 3}  # one write per batch that changed the user, never more
    client.close()
