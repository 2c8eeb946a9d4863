"""``unistate topics list|describe|delete`` and ``offsets show|reset`` against a real Tansu broker."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from fixtures.pipeline import BROKER_CONSUMER_OPTIONS, wait_for

from streams.cli import main
from streams.topics import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BASE_MS = 1_511_658_000_000


def _common(bootstrap: str, unique: str) -> list[str]:
    return ["--bootstrap-servers", bootstrap, "--topic-prefix", f"{unique}."]


def _produce_one_per_batch(bootstrap: str, topic: str, partition: int, ts_ms: list[int]) -> None:
    """One message per request: Tansu 0.6 reports a partition's end as its last batch's base offset + 1."""
    producer = Producer({"bootstrap.servers": bootstrap})
    for ts in ts_ms:
        producer.produce(topic, value=b"x", key=b"k", partition=partition, timestamp=ts)
        assert producer.flush(10) == 0


def _committed(bootstrap: str, group: str, partitions: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {(tp.topic, tp.partition): tp.offset
                for tp in consumer.committed([TopicPartition(t, p) for t, p in partitions], timeout=10)}
    finally:
        consumer.close()


def test_topics_list_describe_and_delete_with_confirmation(kafka_broker, unique, capsys) -> None:
    common = _common(kafka_broker.bootstrap, unique)
    names = TopicNames.from_prefix(f"{unique}.")
    assert main(["topics", "create", "--partitions", "2", *common]) == 0
    capsys.readouterr()
    assert main(["topics", "list", *common]) == 0
    out = capsys.readouterr().out
    assert all(f"{t}  partitions=2" in out for t in names.all) and "missing" not in out
    _produce_one_per_batch(kafka_broker.bootstrap, names.feed, 1, [BASE_MS, BASE_MS + 1])
    assert main(["topics", "describe", names.feed, *common]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{names.feed}  partitions=2")
    assert lines[1].split() == ["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "END"]
    assert [lines[2].split()[0], lines[2].split()[-1]] == ["0", "0"]
    assert [lines[3].split()[0], lines[3].split()[-1]] == ["1", "2"]
    # Without --yes nothing is deleted.
    assert main(["topics", "delete", names.dlq, *common]) == 2
    assert "pass --yes" in capsys.readouterr().err
    assert main(["topics", "delete", names.dlq, f"{unique}.nope", "--yes", *common]) == 0
    out = capsys.readouterr().out
    assert f"{names.dlq}: deleted" in out and f"{unique}.nope: absent" in out
    wait_for(lambda: names.dlq not in AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
             .list_topics(timeout=5).topics, 10, "the DLQ topic gone")
    assert main(["topics", "list", *common]) == 0
    assert f"missing unistate topics: {names.dlq}" in capsys.readouterr().out


def test_offsets_show_and_reset_to_earliest_latest_and_a_time(kafka_broker, unique, capsys) -> None:
    common, group = _common(kafka_broker.bootstrap, unique), f"{unique}-g"
    names = TopicNames.from_prefix(f"{unique}.")
    assert main(["topics", "create", "--partitions", "2", *common]) == 0
    _produce_one_per_batch(kafka_broker.bootstrap, names.feed, 0, [BASE_MS, BASE_MS + 1000, BASE_MS + 2000])
    _produce_one_per_batch(kafka_broker.bootstrap, names.feed, 1, [BASE_MS + 500, BASE_MS + 1500])
    feed = [(names.feed, 0), (names.feed, 1)]
    inputs = [(t, p) for t in names.inputs for p in (0, 1)]
    committer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group})
    committer.commit(offsets=[TopicPartition(names.feed, 0, 1), TopicPartition(names.feed, 1, 2)],
                     asynchronous=False)
    committer.close()
    capsys.readouterr()

    assert main(["offsets", "show", "--group", group, *common]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert [names.feed, "0", "1", "3", "2"] in rows and [names.feed, "1", "2", "2", "0"] in rows
    assert [names.search, "0", "-", "0", "-"] in rows and ["total", "lag:", "2"] == rows[-1][:3]

    assert main(["offsets", "reset", "--group", group, "--to", "earliest", "--dry-run", *common]) == 0
    assert "dry run" in capsys.readouterr().out
    assert _committed(kafka_broker.bootstrap, group, feed) == {(names.feed, 0): 1, (names.feed, 1): 2}

    assert main(["offsets", "reset", "--group", group, "--to", "earliest", *common]) == 0
    assert set(_committed(kafka_broker.bootstrap, group, inputs).values()) == {0}
    assert main(["offsets", "reset", "--group", group, "--to", "latest", *common]) == 0
    assert _committed(kafka_broker.bootstrap, group, feed) == {(names.feed, 0): 3, (names.feed, 1): 2}

    # A time: whatever the broker's ListOffsets answers for it (Tansu 0.6 answers the partition
    # start for any time; Kafka the first message at or after it), the end where it has none.
    at_ms = BASE_MS + 1200
    admin = AdminClient({"bootstrap.servers": kafka_broker.bootstrap})
    futures = admin.list_offsets({TopicPartition(t, p): OffsetSpec.for_timestamp(at_ms) for t, p in feed})
    expected = {(tp.topic, tp.partition): f.result(10).offset for tp, f in futures.items()}
    expected = {k: v if v >= 0 else {0: 3, 1: 2}[k[1]] for k, v in expected.items()}
    assert main(["offsets", "reset", "--group", group, "--to", f"timestamp:{at_ms}", *common]) == 0
    assert _committed(kafka_broker.bootstrap, group, feed) == expected


def test_offsets_reset_is_refused_while_the_group_has_members(kafka_broker, unique, capsys) -> None:
    common, group = _common(kafka_broker.bootstrap, unique), f"{unique}-g"
    names = TopicNames.from_prefix(f"{unique}.")
    assert main(["topics", "create", "--partitions", "1", *common]) == 0
    member = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": group, **BROKER_CONSUMER_OPTIONS})
    member.subscribe(list(names.inputs))
    try:
        wait_for(lambda: member.poll(0.1) is None and member.assignment(), 30, "the member's assignment")
        capsys.readouterr()
        assert main(["offsets", "reset", "--group", group, "--to", "earliest", "--dry-run", *common]) == 1
        err = capsys.readouterr().err
        assert f"consumer group '{group}' is active" in err and "stop its workers" in err
    finally:
        member.close()
    assert main(["offsets", "reset", "--group", group, "--to", "earliest", *common]) == 0
