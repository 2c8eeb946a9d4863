"""``unistate backfill FILE`` against a real Tansu broker and a real redis-server: every user of a JSONL
file lands in Redis with vectors and the right event counts, a second file merges without
duplicates, and the documented handover (backfill before T, workers from offsets at T) applies every
event exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, read_topic, running, wait_for

from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.records import SCENARIOS
from state.sequence import event_key
from state.store import SequenceStore
from streams.app import build_worker
from streams.cli import main
from streams.devservers.servers import Server
from streams.notifications import decode_notification
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TS = 1_718_000_000_000


def feed(user: str, k: int, ts_ms: int) -> dict:
    return {"event_id": f"{user}-f{k}", "user_id": user, "item_id": f"i{k}", "scenario": "feed",
            "action": "click", "ts_ms": ts_ms}


EVENTS = [
    feed("b1", 1, TS + 10), feed("b1", 2, TS + 20),
    {"event_id": "b1-s1", "user_id": "b1", "scenario": "search", "action": "query", "ts_ms": TS + 5,
     "text": "espresso grinder"},
    {"event_id": "b2-a1", "user_id": "b2", "item_id": "ad1", "scenario": "ads", "action": "click", "ts_ms": TS},
    feed("b2", 1, TS + 1),
    {"event_id": "b3-s1", "user_id": "b3", "item_id": "i9", "scenario": "search", "action": "click",
     "ts_ms": TS + 2, "text": "latte"},
]
EXPECTED = {"b1": {"feed": 2, "search": 1, "ads": 0}, "b2": {"feed": 1, "search": 0, "ads": 1},
            "b3": {"feed": 0, "search": 1, "ads": 0}}


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture()
def common(kafka_broker: Server, redis_server: Server, unique: str, tiny_model_dir: Path) -> list[str]:
    args = ["--bootstrap-servers", kafka_broker.bootstrap, "--topic-prefix", f"{unique}.",
            "--redis-url", redis_server.url, "--key-prefix", unique]
    assert main(["topics", "create", "--partitions", "1", *args]) == 0
    return [*args, "--model-dir", str(tiny_model_dir), "--no-progress"]


def test_backfill_puts_every_user_in_redis_with_vectors_and_event_counts(
    kafka_broker, redis_client, unique, common, tmp_path, capsys
) -> None:
    late = feed("b1", 3, TS + 1_000)  # at the handover time: left to the workers
    bad = {**feed("b2", 9, TS), "action": "teleport"}
    path = write_jsonl(tmp_path / "events.jsonl", [*EVENTS, late, bad])

    assert main(["backfill", str(path), "--until", str(TS + 1_000), *common]) == 0
    out = capsys.readouterr().out
    assert "8 records read, 7 valid, 1 rejected (validation_error=1), 1 at or after --until" in out
    assert "events: added 6, duplicates 0" in out and "users: 3, written 3" in out

    keys = RedisKeys(unique)
    sequences = SequenceStore(redis_client, keys).load_many(list(EXPECTED))
    assert {u: s.counts() for u, s in sequences.items()} == EXPECTED
    for scenario in SCENARIOS:
        assert EmbeddingReader(redis_client, keys).get(list(EXPECTED), scenario).found.all()
    for user in EXPECTED:
        assert redis_client.hget(keys.user(user), "nv") == redis_client.hget(keys.user(user), "ver") == b"1"
    notes = [decode_notification(m.value()) for m in
             read_topic(kafka_broker.bootstrap, TopicNames.from_prefix(f"{unique}.").updates, 1, 3)]
    assert sorted(n.user_id for n in notes) == sorted(EXPECTED)


def test_backfill_merges_with_the_stored_state_without_duplicates(redis_client, unique, common, tmp_path,
                                                                  capsys) -> None:
    first = write_jsonl(tmp_path / "first.jsonl", [feed("m1", k, TS + k) for k in range(4)])
    second = write_jsonl(tmp_path / "second.jsonl", [feed("m1", k, TS + k) for k in range(2, 7)])
    store = SequenceStore(redis_client, RedisKeys(unique))

    assert main(["backfill", str(first), *common]) == 0
    assert main(["backfill", str(second), *common]) == 0
    assert "events: added 3, duplicates 2" in capsys.readouterr().out
    seq = store.load_many(["m1"])["m1"]
    assert [b.event_id for b in seq.behaviors()] == [event_key(f"m1-f{k}") for k in range(7)]
    assert seq.version == 2

    assert main(["backfill", str(second), *common]) == 0  # again: every event is a duplicate
    assert "events: added 0, duplicates 5" in capsys.readouterr().out
    assert store.load_many(["m1"])["m1"].version == 2  # nothing written


def test_backfill_then_workers_from_the_cut_time_apply_every_event_once(
    kafka_broker, redis_server, redis_client, unique, common, tiny_model_dir, tmp_path
) -> None:
    cut_ms = TS + 100
    history = [feed(f"h{u}", k, TS + 10 * k) for u in range(3) for k in range(10)]
    live = [feed(f"h{u}", k, cut_ms + k) for u in range(3) for k in range(10, 14)]
    path = write_jsonl(tmp_path / "all.jsonl", [*history, *live])
    connection = common[:8]

    assert main(["backfill", str(path), "--until", str(cut_ms), *common]) == 0
    assert main(["replay", str(path), "--no-progress", *connection]) == 0  # the same events are in Kafka
    assert main(["offsets", "reset", "--group", unique, "--to", f"timestamp:{cut_ms}", *connection]) == 0

    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=BROKER_CONSUMER_OPTIONS)
    worker = build_worker(kafka, RedisSettings(url=redis_server.url, key_prefix=unique),
                          ModelSettings(artifact_dir=tiny_model_dir, providers=["CPUExecutionProvider"]),
                          WorkerSettings())
    store, users = SequenceStore(redis_client, RedisKeys(unique)), ["h0", "h1", "h2"]
    with running(worker) as errors:
        wait_for(lambda: errors or all(len(s) == 14 for s in store.load_many(users).values()), 60,
                 "every user with its 14 events")
    for seq in store.load_many(users).values():
        assert [b.event_id for b in seq.behaviors()] == [event_key(f"{seq.user_id}-f{k}") for k in range(14)]
