"""The Faust interest agent against a real Tansu broker and redis-server: exact users, Redis's vectors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import numpy as np
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.reader import EmbeddingReader
from state.records import SCENARIOS
from streams.producer import KafkaProducer
from streams.topics import TopicNames, create_topics

faust = pytest.importorskip("faust", reason="faust-streaming is not installed")

from streams.integrations.faust import (  # noqa: E402 - after the importorskip
    InterestBatch,
    InterestUpdates,
    register_interest_agent,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

PARTITIONS = 2
Q, D = 2, 8


def unit_vectors(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal((len(SCENARIOS), Q, D)).astype(np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def publish(client: redis.Redis, keys: RedisKeys, stored: dict[str, int]) -> dict[str, np.ndarray]:
    """Write each user at its version with real (random, normalised) vectors; return them."""
    rng, now = np.random.default_rng(7), int(time.time() * 1000)
    vectors = {u: unit_vectors(rng) for u in stored}
    updates = [UserUpdate(u, v, now - 1000 * v, now, "test-model", SCENARIOS, vectors[u], b"")
               for u, v in stored.items()]
    assert RedisPublisher(client, keys).publish(updates) == [True] * len(updates)
    return vectors


def notification(user_id: str, version: int) -> bytes:
    return msgpack.packb({"user_id": user_id, "version": version, "watermark_ms": 1,
                          "computed_at_ms": 2, "model_version": "test-model"}, use_bin_type=True)


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    """Sum of the group's committed offsets over the topic's partitions (what Faust committed)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        parts = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=5)
    finally:
        consumer.close()
    return sum(max(tp.offset, 0) for tp in parts)


async def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    """Poll ``condition`` (possibly blocking, so in a thread) until truthy; never a fixed sleep."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.05)


def test_agent_delivers_exactly_the_notified_users_with_the_vectors_redis_holds(
    kafka_broker, redis_client, unique, tmp_path: Path
) -> None:
    names = TopicNames.from_prefix(f"{unique}.")
    create_topics(AdminClient({"bootstrap.servers": kafka_broker.bootstrap}), names, PARTITIONS, 1)
    keys = RedisKeys(unique)
    # bob: Redis holds v3, notified v2 (newer is fine); erin: Redis behind (v1 < notified v2).
    stored = {"alice": 1, "bob": 3, "carol": 2, "erin": 1}
    vectors = publish(redis_client, keys, stored)
    messages = [("alice", notification("alice", 1)), ("bob", notification("bob", 2)),
                ("carol", notification("carol", 2)), ("alice", notification("alice", 1)),
                ("dave", notification("dave", 1)), ("erin", notification("erin", 2)),
                ("zed", b"\xc1 not msgpack")]
    with KafkaProducer({"bootstrap.servers": kafka_broker.bootstrap}) as producer:
        for key, value in messages:
            producer.produce(names.updates, key=key.encode(), value=value)
        assert producer.flush() == len(messages)

    received: list[InterestBatch] = []
    threads_before = set(threading.enumerate())

    async def on_interests(batch: InterestBatch) -> None:
        received.append(batch)

    async def run_app() -> InterestUpdates:
        app = faust.App(
            f"{unique}-faust", broker=f"kafka://{kafka_broker.bootstrap}", web_enabled=False,
            autodiscover=False, datadir=str(tmp_path / "faust"), store="memory://",
            topic_partitions=PARTITIONS, topic_replication_factor=1,
            consumer_auto_offset_reset="earliest", broker_session_timeout=6.0,
            broker_heartbeat_interval=0.5, broker_commit_interval=0.2,
        )
        updates = register_interest_agent(app, f"{unique}.", redis_client, on_interests,
                                          scenario="ads", key_prefix=unique, batch_size=16,
                                          batch_within_s=0.2)
        await app.start()
        try:
            await wait_until(lambda: updates.stats.notifications == len(messages), 40,
                             "every notification taken by the agent")
            await wait_until(lambda: committed_total(kafka_broker.bootstrap, app.conf.id,
                                                     names.updates) == len(messages),
                             15, "Faust to commit the group's offsets")
        finally:
            await app.stop()
        return updates

    updates = asyncio.run(run_app())

    got = {u: (b, i) for b in received for i, u in enumerate(b.user_ids)}
    assert sorted(u for b in received for u in b.user_ids) == ["alice", "bob", "carol", "erin"]
    truth = EmbeddingReader(redis_client, keys).get(sorted(got), "ads")
    for j, user in enumerate(truth.user_ids):
        batch, i = got[user]
        assert batch.scenario == "ads" and batch.vectors.shape[1:] == (Q, D)
        np.testing.assert_array_equal(batch.vectors[i], truth.vectors[j])
        np.testing.assert_array_equal(batch.vectors[i], vectors[user][SCENARIOS.index("ads")])
        assert batch.versions[i] == truth.version[j] == stored[user]
        assert batch.watermark_ms[i] == truth.watermark_ms[j]
        assert 0 <= batch.age_ms[i] < 60_000
    stats = updates.stats
    assert (stats.undecodable, stats.missing, stats.behind, stats.stale, stats.delivered) == \
        (1, 1, 1, 1, 4)
    left = [t.name for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not left, f"threads left behind: {left}"


def test_a_user_already_delivered_at_that_version_is_not_delivered_again(
    redis_client, unique
) -> None:
    keys = RedisKeys(unique)
    vectors = publish(redis_client, keys, {"alice": 2})
    received: list[InterestBatch] = []

    async def on_interests(batch: InterestBatch) -> None:
        received.append(batch)

    updates = InterestUpdates(EmbeddingReader(redis_client, keys), on_interests, scenario="feed")

    async def three_batches() -> list[InterestBatch | None]:
        # v1 notified, Redis holds v2: v2 delivered; then v1 and v2 again: nothing new.
        return [await updates.handle([notification("alice", 1)]),
                await updates.handle([notification("alice", 1), notification("alice", 2)]),
                await updates.handle([notification("alice", 2)])]

    first, second, third = asyncio.run(three_batches())
    assert first is not None and first.user_ids == ["alice"] and first.versions.tolist() == [2]
    np.testing.assert_array_equal(first.vectors[0], vectors["alice"][SCENARIOS.index("feed")])
    assert second is None and third is None and len(received) == 1
    assert (updates.stats.notifications, updates.stats.stale, updates.stats.delivered) == (4, 3, 1)


def test_a_batch_scores_the_exported_items_like_the_targeting_reads(
    redis_client, unique, tiny_model_dir: Path
) -> None:
    from streams.integrations.targeting import ItemIndex, ItemTargeting

    keys, index = RedisKeys(unique), ItemIndex.load(tiny_model_dir)
    rng = np.random.default_rng(3)
    for user_id, model_version in (("alice", index.model_version), ("bob", index.model_version),
                                   ("old", "previous-model")):
        vectors = rng.standard_normal((len(SCENARIOS), 2, index.dim)).astype(np.float32)
        update = UserUpdate(user_id, 1, 1_000, 2_000, model_version, SCENARIOS, vectors, b"")
        assert RedisPublisher(redis_client, keys).publish([update]) == [True]

    async def ignore(batch: InterestBatch) -> None:
        pass

    updates = InterestUpdates(EmbeddingReader(redis_client, keys), ignore, scenario="ads")
    batch = asyncio.run(updates.handle([notification(u, 1) for u in ("alice", "bob", "old")]))
    assert batch is not None and batch.model_versions == [index.model_version] * 2 + ["previous-model"]
    top = batch.top_items(index, k=4)
    expected = ItemTargeting(redis_client, keys, index).top_k(["alice", "bob", "old"], "ads", k=4)
    assert top.ranked == expected.ranked and list(top.ranked) == ["alice", "bob"]
    assert top.other_model == ["old"] and all(i.startswith("ad_") for r in top.ranked.values() for i, _ in r)


def test_the_ad_targeting_example_logs_the_exported_ads_and_binds_no_port(
    redis_server, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.util
    import logging

    from streams.integrations.faust import HeadlessApp
    from streams.integrations.targeting import ItemIndex

    monkeypatch.setenv("UNISTATE_MODEL_ARTIFACT_DIR", str(tiny_model_dir))
    monkeypatch.setenv("UNISTATE_REDIS_URL", redis_server.url)
    path = Path(__file__).parents[2] / "deploy" / "faust_ad_targeting_example.py"
    spec = importlib.util.spec_from_file_location("faust_ad_targeting_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    assert isinstance(example.app, HeadlessApp) and list(example.app.boot_strategy.web_server()) == []

    index = ItemIndex.load(tiny_model_dir)
    ad = next(i for i in index.ids if i.startswith("ad_"))
    queries = np.stack([index.vectors[index.ids.index(ad)]] * 2)[None]
    batch = InterestBatch("ads", ["alice"], queries, np.array([3]), np.array([1]), np.array([5]),
                          [index.model_version])
    with caplog.at_level(logging.INFO, logger=example.__name__):
        asyncio.run(example.on_interests(batch))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("top ads")]
    assert line.startswith("top ads user_id=alice ads=") and line.count(":") == example.TOP_K
    assert all(entry.split(":")[0].startswith("ad_") for entry in line.split("ads=")[1].split()[0].split(","))
