"""Settings: environment prefixes and librdkafka options merged over the defaults."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.settings import (
    CONSUMER_DEFAULTS,
    KafkaSettings,
    RedisSettings,
    StateSettings,
    WorkerSettings,
)


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNISTATE_KAFKA_BOOTSTRAP_SERVERS", "k:1")
    monkeypatch.setenv("UNISTATE_KAFKA_CONSUMER_OPTIONS", '{"session.timeout.ms": 6000}')
    monkeypatch.setenv("UNISTATE_REDIS_TTL_S", "60")
    monkeypatch.setenv("UNISTATE_WORKER_FAIL_AFTER_PUBLISH", "1")
    kafka = KafkaSettings()
    assert kafka.consumer_config()["bootstrap.servers"] == "k:1"
    assert kafka.consumer_config()["session.timeout.ms"] == 6000
    assert RedisSettings().ttl_s == 60
    assert WorkerSettings().fail_after_publish is True


def test_options_merge_over_documented_defaults() -> None:
    kafka = KafkaSettings(group_id="g", consumer_options={"fetch.wait.max.ms": 10},
                          client_options={"security.protocol": "SSL"},
                          producer_options={"linger.ms": 0})
    consumer = kafka.consumer_config()
    untouched = {k: v for k, v in CONSUMER_DEFAULTS.items() if k != "fetch.wait.max.ms"}
    assert {k: consumer[k] for k in untouched} == untouched
    assert consumer["group.id"] == "g" and consumer["fetch.wait.max.ms"] == 10
    assert consumer["security.protocol"] == "SSL"
    producer = kafka.producer_config()
    assert producer["linger.ms"] == 0 and producer["partitioner"] == "murmur2_random"
    assert "group.id" not in producer


def test_secret_is_hidden_but_passed(monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = KafkaSettings(sasl_password="hunter2")
    assert "hunter2" not in repr(kafka)
    assert kafka.admin_config()["sasl.password"] == "hunter2"


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValidationError):
        WorkerSettings(consume_wait_ms=0)
    with pytest.raises(ValidationError):
        KafkaSettings(unknown_option=1)


def test_state_and_mixing_are_configurable_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNISTATE_STATE_SCENARIO_SLOTS", '{"feed": 16, "search": 8, "ads": 8}')
    monkeypatch.setenv("UNISTATE_STATE_BUCKET_SHARES", "[0.6, 0.3, 0.1]")
    monkeypatch.setenv("UNISTATE_STATE_ALLOWED_LATENESS_MS", "3600000")
    settings = StateSettings()
    assert settings.mixing_config().total_slots == 32
    assert settings.mixing_config().bucket_shares == (0.6, 0.3, 0.1)
    assert settings.state_config().allowed_lateness_ms == 3_600_000


def test_inconsistent_mixing_settings_fail_with_a_validation_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UNISTATE_STATE_BUCKET_SHARES", "[0.9, 0.9, 0.1]")
    with pytest.raises(ValidationError):
        StateSettings().mixing_config()
