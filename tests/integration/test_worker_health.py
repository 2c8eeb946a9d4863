"""A running worker's status endpoints against a real Tansu broker and real redis-servers:
readiness, liveness, the consumer-lag gauge and the model info on /metrics."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, running, wait_for

from streams.app import build_worker
from streams.devservers.servers import free_port, start_redis
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames, create_topics
from streams.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path):  # noqa: ANN201 - InterestEncoder
    from encoders.serving import InterestEncoder

    return InterestEncoder.load(tiny_model_dir, providers=["CPUExecutionProvider"])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except urllib.error.URLError:  # not listening yet
        return 0, ""


def worker_with_endpoints(bootstrap: str, redis_url: str, unique: str, model_dir: Path,
                          encoder: object) -> tuple[Worker, TopicNames, KafkaSettings, int]:
    """Topics with 2 partitions, one feed event produced, and a worker serving on a free port."""
    kafka = KafkaSettings(bootstrap_servers=bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options={**BROKER_CONSUMER_OPTIONS, "statistics.interval.ms": 200})
    names = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), names, 2, 1)
    event = {"event_id": f"{unique}-1", "user_id": "hana", "ts_ms": int(time.time() * 1000) - 60_000,
             "action": "click", "item_id": "it_coffee_1"}
    with KafkaProducer(kafka.producer_config()) as producer:
        producer.produce(names.feed, key=b"hana", value=encode_event(event))
        producer.flush()
    port = free_port()
    settings = WorkerSettings(metrics_port=port, metrics_addr="127.0.0.1", readiness_redis_ping_s=0.2)
    redis_settings = RedisSettings(url=redis_url, key_prefix=unique, retry_attempts=2, retry_backoff_ms=50)
    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=model_dir), settings,
                          encoder=encoder)  # type: ignore[arg-type]
    return worker, names, kafka, port


def lag_series(port: int) -> dict[tuple[str, str], float]:
    """``(topic, partition) → value`` of every ``unistate_consumer_lag`` sample on /metrics."""
    series = {}
    for line in get(port, "/metrics")[1].splitlines():
        if line.startswith("unistate_consumer_lag{"):
            labels, value = line[len("unistate_consumer_lag{"):].split("} ")
            pairs = dict(pair.split("=") for pair in labels.split(","))
            series[(pairs["topic"].strip('"'), pairs["partition"].strip('"'))] = float(value)
    return series


def test_lag_gauge_and_model_info_appear_once_the_worker_consumed(
    kafka_broker, redis_server, unique, tiny_model_dir, encoder
) -> None:
    worker, names, _, port = worker_with_endpoints(kafka_broker.bootstrap, redis_server.url, unique,
                                                   tiny_model_dir, encoder)
    every_partition = {(t, p) for t in names.inputs for p in ("0", "1")}
    with running(worker) as errors:
        wait_for(lambda: errors or worker.metrics.users_updated._value.get() >= 1, 60, "hana published")
        wait_for(lambda: errors or get(port, "/readyz") == (200, "ready\n"), 30, "/readyz 200")
        # hana's partition is committed (lag 0); the others hold nothing (lag 0 too).
        lags = wait_for(lambda: errors or (lambda s: s if set(s) == every_partition else None)(lag_series(port)),
                        30, "a lag series per assigned input partition")
        assert get(port, "/healthz") == (200, "ok\n")
        text = get(port, "/metrics")[1]
    assert not errors
    assert set(lags.values()) == {0.0}  # never the DLQ or the update topic, which it does not consume
    assert f'unistate_model_info{{dim="{encoder.dim}",model_version="{encoder.model_version}"}} 1.0' in text
    assert "process_resident_memory_bytes" in text


def test_readiness_fails_when_redis_stops_while_liveness_holds(
    kafka_broker, unique, tiny_model_dir, encoder
) -> None:
    own_redis = start_redis()
    try:
        worker, _, _, port = worker_with_endpoints(kafka_broker.bootstrap, own_redis.url, unique,
                                                   tiny_model_dir, encoder)
        with running(worker) as errors:
            wait_for(lambda: errors or worker.metrics.users_updated._value.get() >= 1, 60, "hana published")
            wait_for(lambda: errors or get(port, "/readyz") == (200, "ready\n"), 30, "/readyz 200")
            own_redis.stop()  # the worker is idle: only the readiness probe notices
            status, body = wait_for(lambda: (lambda r: r if r[0] == 503 else None)(get(port, "/readyz")),
                                    30, "/readyz 503 after redis stopped")
            assert body.startswith("redis: ping failed: ConnectionError"), body
            assert len(body.splitlines()) == 1  # only Redis fails: the loop, model and assignment are fine
            assert get(port, "/healthz") == (200, "ok\n")  # alive: a restart would not help
        assert not errors
    finally:
        own_redis.stop()
