"""The consumer wrapper refuses auto-commit settings."""

from __future__ import annotations

import pytest

from streams.consumer import EventConsumer
from streams.errors import ConfigurationError
from streams.settings import KafkaSettings


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
