"""The consumer wrapper's offset arithmetic and its refusal of auto-commit settings."""

from __future__ import annotations

import pytest
from confluent_kafka import Message

from streams.consumer import EventConsumer, next_offsets
from streams.errors import ConfigurationError
from streams.settings import KafkaSettings


def test_next_offsets_are_one_past_the_highest_per_partition() -> None:
    msgs = [Message(topic=t, partition=p, offset=o)
            for t, p, o in [("a", 0, 5), ("a", 0, 3), ("a", 1, 0), ("b", 0, 9)]]
    assert [(tp.topic, tp.partition, tp.offset) for tp in next_offsets(msgs)] == [
        ("a", 0, 6), ("a", 1, 1), ("b", 0, 10)]
    assert next_offsets([]) == []


def test_auto_commit_or_auto_store_is_refused() -> None:
    config = KafkaSettings().consumer_config()
    EventConsumer(config, ["t"])  # builds nothing, connects nowhere
    for key in ("enable.auto.commit", "enable.auto.offset.store"):
        with pytest.raises(ConfigurationError):
            EventConsumer({**config, key: True}, ["t"])


def test_constructor_does_not_connect() -> None:
    consumer = EventConsumer(KafkaSettings(bootstrap_servers="127.0.0.1:1").consumer_config(), ["t"])
    with pytest.raises(Exception, match="outside its `with` block"):
        consumer.client  # noqa: B018
