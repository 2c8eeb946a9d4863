"""``unistate demo``: embedded broker and Redis, a trained model, events streamed through the worker."""

from __future__ import annotations

import logging
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import redis
from confluent_kafka.admin import AdminClient

from state.config import MixingConfig
from state.keys import RedisKeys
from state.mixing import MixingPolicy
from state.reader import EmbeddingReader
from state.records import SCENARIOS
from streams.app import build_worker
from streams.devservers.background import running
from streams.devservers.pacing import produce_paced
from streams.devservers.servers import BROKER_CONSUMER_OPTIONS, start_broker, start_redis
from streams.errors import StreamsError
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames, create_topics
from streams.worker import Worker

__all__ = ["register", "run_demo"]

logger = logging.getLogger(__name__)
#: The demo fails when users' vectors are this alike or more: a collapsed model scores ~0.998
#: (every user the same); the demo's small model stored 0.60-0.70 on 2026-11-29.
MAX_CROSS_USER_COSINE = 0.9

def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


def _malformed(topics: TopicNames, user_id: str) -> list[tuple[str, bytes, bytes]]:
    """(topic, key, value) of messages a real producer might get wrong; each must reach the DLQ."""
    now_ms = int(time.time() * 1000)
    good = {"event_id": "bad-1", "user_id": user_id, "ts_ms": now_ms, "item_id": "i1",
            "action": "click", "dwell_ms": 10}
    return [
        (topics.feed, user_id.encode(), b"\xc1 not msgpack"),
        (topics.feed, user_id.encode(), encode_event({**good, "action": "teleport"})),
        (topics.search, user_id.encode(), encode_event({"event_id": "bad-2", "user_id": user_id,
                                                         "ts_ms": now_ms})),
        (topics.ads, b"someone-else", encode_event({"event_id": "bad-3", "user_id": user_id,
                                                     "ts_ms": now_ms, "ad_id": "a1",
                                                     "action": "click"})),
        (topics.feed, user_id.encode(), encode_event({**good, "event_id": "bad-4", "ts_ms": 5})),
    ]


def _wait_consumed(worker: Worker, expected: int, errors: list[BaseException], limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while (consumed := worker.metrics.snapshot().consumed_total) < expected:
        if errors:
            raise StreamsError("the worker stopped before consuming every event") from errors[0]
        if time.monotonic() > deadline:
            raise StreamsError(f"worker consumed {consumed}/{expected} events within {limit_s:.0f}s")
        time.sleep(0.05)


def _train_and_export(work_dir: Path, n_users: int, seed: int) -> Path:
    """What ``unistate train --preset demo`` then ``unistate export`` make: the worker serves it."""
    from dataclasses import replace

    from encoders import presets
    from encoders.data.synthetic import synthetic_dataset
    from encoders.export import export
    from encoders.train import train

    policy = MixingPolicy(MixingConfig())
    config = replace(presets.demo(), seed=seed)
    checkpoint = train(config, synthetic_dataset(n_users, seed), policy, work_dir / "checkpoint",
                       mixing_policy=policy.describe())
    artifact_dir = work_dir / "model"
    export(checkpoint, artifact_dir)
    return artifact_dir


def _show_users(client: redis.Redis, keys: RedisKeys, user_ids: list[str], now_ms: int) -> None:
    reader = EmbeddingReader(client, keys)
    for user_id in user_ids:
        stored = reader.get_user(user_id)
        if stored is None:
            _say(f"user {user_id}: nothing in Redis")
            continue
        _say(f"user {user_id}: version={stored.version} model={stored.model_version} "
             f"event-time watermark={stored.watermark_ms} "
             f"age={(now_ms - stored.computed_at_ms) / 1000:.1f}s ttl={stored.ttl_s}s")
        for scenario, vectors in stored.vectors.items():
            head = ", ".join(f"{v:+.3f}" for v in vectors[0][:4])
            norms = ", ".join(f"{n:.3f}" for n in np.linalg.norm(vectors, axis=1))
            print(f"      {scenario:<6} Q×D={vectors.shape[0]}×{vectors.shape[1]} "
                  f"|q|=[{norms}] q0=[{head}, ...]")


def _check(client: redis.Redis, keys: RedisKeys, user_ids: list[str]) -> bool:
    """Every user has vectors in every scenario, and they are personalized (not one shared vector)."""
    from encoders.evaluation.personalization import cross_user_cosine

    reader = EmbeddingReader(client, keys)
    results = {s: reader.get(user_ids, s) for s in SCENARIOS}
    updated = int((results[SCENARIOS[0]].version > 0).sum())
    _say(f"users updated (a version in Redis): {updated} of {len(user_ids)} users with events")
    missing = {s: int((~r.found).sum()) for s, r in results.items()}
    cosine = {s: round(cross_user_cosine(r.vectors[r.found]), 3) for s, r in results.items() if r.found.sum() > 1}
    _say(f"mean cosine between different users' vectors (1 = every user the same; at most "
         f"{MAX_CROSS_USER_COSINE} passes): {cosine}")
    ok = not any(missing.values()) and all(c <= MAX_CROSS_USER_COSINE for c in cosine.values())
    verdict = "PASSED" if ok else "FAILED"
    _say(f"check {verdict}: {len(user_ids)} users with events; missing vectors per scenario: {missing}")
    return ok


def _synthetic(n_users: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    from encoders.data.synthetic import generate_events

    return list(generate_events(n_users, seed=seed, mean_events=60))


def run_demo(n_users: int = 200, seed: int = 7, rate_per_s: int = 2000, limit_s: float = 180.0) -> int:
    """Run the whole pipeline once on embedded servers; returns 0 when every user landed in Redis."""
    with ExitStack() as stack:
        work_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unistate-demo-")))
        _say("starting embedded Tansu broker and redis-server on free ports")
        broker, redis_server = stack.enter_context(start_broker()), stack.enter_context(start_redis())
        _say(f"broker {broker.bootstrap}, redis {redis_server.url}")
        _say("training and exporting the interest model on synthetic multi-scenario data")
        artifact_dir = _train_and_export(work_dir, n_users, seed)
        kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, group_id="unistate-demo",
                              consumer_options=BROKER_CONSUMER_OPTIONS)
        redis_settings = RedisSettings(url=redis_server.url)
        topics = TopicNames.from_prefix(kafka.topic_prefix)
        create_topics(AdminClient(kafka.admin_config()), topics, partitions=3, replication_factor=1)
        _say(f"topics created: {', '.join(topics.all)} (3 partitions each)")
        worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact_dir),
                              WorkerSettings())
        errors = stack.enter_context(running(worker))
        events = _synthetic(n_users, seed)
        user_ids = sorted({event["user_id"] for _, event in events})
        bad = _malformed(topics, user_ids[0])
        _say(f"streaming {len(events)} events of {len(user_ids)} users and {len(bad)} malformed "
             f"messages at ~{rate_per_s}/s through the worker")
        producer = stack.enter_context(KafkaProducer(kafka.producer_config(), kafka.flush_timeout_s))
        for topic, key, value in bad:
            producer.produce(topic, value=value, key=key)
        producer.flush()
        _wait_consumed(worker, len(bad), errors, limit_s)  # the worker has joined its group
        produce_paced(producer, topics, events, rate_per_s)
        _wait_consumed(worker, len(events) + len(bad), errors, limit_s)
        worker.stop()
        _report(worker, events)
        client = stack.enter_context(redis.Redis.from_url(redis_server.url))
        keys = RedisKeys(redis_settings.key_prefix)
        _show_users(client, keys, user_ids[:3], int(time.time() * 1000))
        return 0 if _check(client, keys, user_ids) else 1


def _report(worker: Worker, events: list[tuple[str, dict[str, Any]]]) -> None:
    snapshot = worker.metrics.snapshot()
    produced = {s: sum(1 for scenario, _ in events if scenario == s) for s in SCENARIOS}
    quantiles = worker.metrics.latency_quantiles_ms((0.5, 0.99))
    _say(f"events produced per scenario: {produced}")
    _say(f"events consumed per scenario (incl. malformed): {snapshot.consumed}")
    _say(f"dead-lettered: {snapshot.dead_letters_total}; embedding writes: {snapshot.users_updated} "
         f"(at most one per user per recompute window that changed it)")
    if quantiles:
        _say(f"event→Redis latency: p50={quantiles[0]:.0f} ms p99={quantiles[1]:.0f} ms")


def register(subparsers: Any) -> None:
    """Add ``unistate demo`` to the CLI."""
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on an embedded broker and redis-server",
        description="Start Tansu and redis-server on free ports, train and export a model on "
                    "synthetic data, stream events (and malformed ones) through the worker, "
                    "print what landed in Redis, and check every user has vectors.")
    parser.add_argument("--users", type=int, default=200, help="synthetic users (default 200)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--rate", type=int, default=2000, help="events per second (default 2000)")
    parser.set_defaults(handler=lambda args: run_demo(args.users, args.seed, args.rate))

