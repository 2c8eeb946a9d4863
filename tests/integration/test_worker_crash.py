"""Crash between publish and commit: real worker processes, a real broker and redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from fixtures.pipeline import wait_for

from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.sequence import event_key
from state.store import SequenceStore
from streams.app import EXIT_AFTER_PUBLISH_CODE
from streams.devservers.servers import BROKER_CONSUMER_OPTIONS, free_port
from streams.events import encode_event
from streams.settings import KafkaSettings
from streams.topics import TopicNames, create_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 2


@pytest.fixture(scope="module")
def artifact_dir(tiny_model_dir: Path) -> Path:
    return tiny_model_dir


def worker_env(bootstrap: str, redis_url: str, unique: str, artifact: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNISTATE_")}
    env.update({
        "UNISTATE_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "UNISTATE_KAFKA_GROUP_ID": unique,
        "UNISTATE_KAFKA_TOPIC_PREFIX": f"{unique}.",
        "UNISTATE_KAFKA_CONSUMER_OPTIONS": json.dumps(BROKER_CONSUMER_OPTIONS),
        "UNISTATE_REDIS_URL": redis_url,
        "UNISTATE_REDIS_KEY_PREFIX": unique,
        "UNISTATE_MODEL_ARTIFACT_DIR": str(artifact),
        "UNISTATE_MODEL_PROVIDERS": '["CPUExecutionProvider"]',
        **extra,
    })
    return env


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def committed(bootstrap: str, group: str, names: TopicNames) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed(
            [TopicPartition(t, p) for t in names.inputs for p in range(PARTITIONS)], timeout=10)
    finally:
        consumer.close()
    return {(tp.topic, tp.partition): tp.offset for tp in tps}


def metric(port: int, line_prefix: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.splitlines() if line.startswith(line_prefix))


def test_crash_between_publish_and_commit_redelivers_without_double_counting(
    kafka_broker, redis_server, redis_client, unique, artifact_dir, tmp_path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, topic_prefix=f"{unique}.")
    names = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), names, PARTITIONS, 1)
    base = int(time.time() * 1000) - 60_000
    events = [(names.for_scenario(s), {"event_id": f"e{i}", "user_id": "erin", "ts_ms": base + i, **body})
              for i, (s, body) in enumerate([
                  ("feed", {"action": "click", "item_id": "it_solar_1"}),
                  ("search", {"query": "solar inverter"}),
                  ("ads", {"action": "impression", "ad_id": "ad_solar_2"}),
                  ("feed", {"action": "share", "item_id": "it_solar_3", "dwell_ms": 900}),
              ])]
    # Offsets to be committed, from delivery reports (Tansu under-reports the high watermark
    # of a multi-record batch, so get_watermark_offsets cannot tell).
    ends: dict[tuple[str, int], int] = {}

    def delivered(err: object, msg: Message) -> None:
        assert err is None, err
        tp = (msg.topic(), msg.partition())
        ends[tp] = max(ends.get(tp, 0), msg.offset() + 1)

    producer = Producer(kafka.producer_config())
    for topic, event in events:
        producer.produce(topic, key=b"erin", value=encode_event(event), on_delivery=delivered)
    assert producer.flush(30) == 0
    log = tmp_path / "worker.log"
    keys = RedisKeys(unique)

    # 1. A worker that dies right after Redis (and the update topic) have the batch.
    env = worker_env(kafka_broker.bootstrap, redis_server.url, unique, artifact_dir,
                     UNISTATE_WORKER_FAIL_AFTER_PUBLISH="1")
    crashed = start_worker(env, log)
    assert crashed.wait(timeout=90) == EXIT_AFTER_PUBLISH_CODE, log.read_text()[-3000:]
    first = EmbeddingReader(redis_client, keys).get_user("erin")
    assert first is not None and first.version >= 1
    assert all(o < 0 for o in committed(kafka_broker.bootstrap, unique, names).values())
    applied = SequenceStore(redis_client, keys).load_many(["erin"])["erin"]
    # The crash may hit after the first of several batches: finish the stream with a fresh worker.

    # 2. A fresh worker re-delivers the uncommitted events; the state dedupes them.
    port = free_port()
    fresh = start_worker(worker_env(kafka_broker.bootstrap, redis_server.url, unique, artifact_dir,
                                    UNISTATE_WORKER_METRICS_PORT=str(port)), log)
    try:
        def caught_up() -> bool:
            done = committed(kafka_broker.bootstrap, unique, names)
            return all(done[tp] == end for tp, end in ends.items())

        wait_for(caught_up, 60, f"offsets committed up to {ends}")
        consumed = metric(port, "unistate_events_consumed_total{")
        duplicates = metric(port, 'unistate_events_applied_total{result="duplicate"')
    finally:
        fresh.terminate()
        code = fresh.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    seq = SequenceStore(redis_client, keys).load_many(["erin"])["erin"]
    # none lost, none twice
    assert sorted(b.event_id for b in seq.behaviors()) == sorted(map(event_key, ["e0", "e1", "e2", "e3"]))
    assert consumed >= len(applied)  # the crashed batch came again ...
    assert duplicates == len(applied)  # ... and every replayed event was a no-op
    stored = EmbeddingReader(redis_client, keys).get_user("erin")
    if len(applied) == len(events):  # everything was in the crashed batch: nothing to republish
        assert stored.version == first.version
    assert stored.version == seq.version
