"""``unistate replay`` through a real Tansu broker: a Taobao slice reaches Redis through a real
worker; CSV and Parquet files round-trip to the topics as the worker decodes them."""

from __future__ import annotations

import csv
import itertools
import time
from pathlib import Path

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, read_topic, running, wait_for

from encoders.evaluation.datasets.registry import DATASETS, SHARED_DATA
from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.records import Behavior
from state.store import SequenceStore
from streams.app import build_worker
from streams.cli import main
from streams.events import EventLimits, decode_event
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.topics import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

TAOBAO = SHARED_DATA / DATASETS["taobao"][1] / "UserBehavior.csv"
SLICE_LINES = 200
TS = 1_718_000_000_000
COLUMNS = ["event_id", "user_id", "item_id", "scenario", "action", "ts_ms", "text"]
RECORDS = [
    {"event_id": "f-1", "user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "like", "ts_ms": TS + 3},
    {"event_id": "s-1", "user_id": "u1", "item_id": "i2", "scenario": "search", "action": "click", "ts_ms": TS + 1,
     "text": "espresso grinder"},
    {"event_id": "s-2", "user_id": "u2", "scenario": "search", "action": "query", "ts_ms": TS + 2, "text": "latte"},
    {"event_id": "a-1", "user_id": "u2", "item_id": "ad1", "scenario": "ads", "action": "conversion", "ts_ms": TS},
    {"user_id": "u2", "item_id": "i3", "scenario": "feed", "action": "click", "ts_ms": TS + 4},  # id: FILE:5
]


def _common(bootstrap: str, redis_url: str, prefix: str) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--topic-prefix", f"{prefix}.", "--redis-url", redis_url,
            "--key-prefix", prefix]


def test_a_replayed_taobao_slice_ends_with_every_user_in_redis(
    kafka_broker, redis_server, redis_client, unique, tiny_model_dir, tmp_path, capsys
) -> None:
    if not TAOBAO.is_file():
        pytest.skip(f"the Taobao slice is not at {TAOBAO} (see ../shared/data/README.md)")
    with TAOBAO.open() as lines:
        head = list(itertools.islice(lines, SLICE_LINES))
    (tmp_path / "UserBehavior.csv").write_text("".join(head))
    users = sorted({f"tb{line.split(',')[0]}" for line in head})
    common = _common(kafka_broker.bootstrap, redis_server.url, unique)
    assert main(["topics", "create", "--partitions", "2", *common]) == 0
    assert main(["replay", "--dataset", "taobao", "--root", str(tmp_path), "--no-progress", *common]) == 0
    out = capsys.readouterr().out
    assert f"{SLICE_LINES} records read, {SLICE_LINES} valid, 0 rejected" in out

    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=BROKER_CONSUMER_OPTIONS)
    worker = build_worker(kafka, RedisSettings(url=redis_server.url, key_prefix=unique),
                          ModelSettings(artifact_dir=tiny_model_dir), WorkerSettings())
    store, keys = SequenceStore(redis_client, RedisKeys(unique)), RedisKeys(unique)
    with running(worker) as errors:
        wait_for(lambda: errors or len(store.load_many(users)) == len(users), 90, "every user of the slice in Redis")
    sequences = store.load_many(users)
    assert sum(sum(s.counts().values()) for s in sequences.values()) == SLICE_LINES
    assert EmbeddingReader(redis_client, keys).get(users, "feed").found.all()


def _write_csv(path: Path) -> Path:
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        writer.writerows(RECORDS)
    return path


def _write_parquet(path: Path) -> Path:
    pa = pytest.importorskip("pyarrow", reason="pyarrow (the parquet extra) is not installed")
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in RECORDS]), path)
    return path


def _expected(file_name: str) -> list[Behavior]:
    return sorted([
        Behavior("f-1", "u1", "feed", TS + 3, "like", item_id="i1"),
        Behavior("s-1", "u1", "search", TS + 1, "click", item_id="i2", text="espresso grinder"),
        Behavior("s-2", "u2", "search", TS + 2, "query", text="latte"),
        Behavior("a-1", "u2", "ads", TS, "conversion", item_id="ad1"),
        Behavior(f"{file_name}:5", "u2", "feed", TS + 4, "click", item_id="i3"),
    ], key=lambda b: b.event_id)


@pytest.mark.parametrize("suffix, timestamp", [("csv", "event"), ("parquet", "produce")])
def test_csv_and_parquet_files_round_trip_to_the_topics(
    kafka_broker, redis_server, unique, tmp_path, capsys, suffix: str, timestamp: str
) -> None:
    path = _write_csv(tmp_path / "events.csv") if suffix == "csv" else _write_parquet(tmp_path / "events.parquet")
    common = _common(kafka_broker.bootstrap, redis_server.url, unique)
    names = TopicNames.from_prefix(f"{unique}.")
    assert main(["topics", "create", "--partitions", "1", *common]) == 0
    started_ms = int(time.time() * 1000)
    assert main(["replay", str(path), "--timestamp", timestamp, "--no-progress", *common]) == 0
    assert "produced per scenario: ads=1 feed=2 search=2" in capsys.readouterr().out

    per_topic = {s: read_topic(kafka_broker.bootstrap, names.for_scenario(s), 1, n)
                 for s, n in (("feed", 2), ("search", 2), ("ads", 1))}
    now_ms = int(time.time() * 1000)
    decoded = [(m, decode_event(s, m.key(), m.value(), now_ms, EventLimits()))
               for s, msgs in per_topic.items() for m in msgs]
    assert sorted((b for _, b in decoded), key=lambda b: b.event_id) == _expected(path.name)
    for m, behavior in decoded:
        assert m.timestamp()[0] == TIMESTAMP_CREATE_TIME
        assert m.timestamp()[1] == behavior.ts_ms if timestamp == "event" else m.timestamp()[1] >= started_ms
    for msgs in per_topic.values():  # event-time order within a partition
        assert [m.timestamp()[1] for m in msgs] == sorted(m.timestamp()[1] for m in msgs)
