"""Settings read from the environment (the only module that does): Kafka, Redis, model, worker."""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from state.config import MixingConfig, StateConfig

__all__ = [
    "CONSUMER_DEFAULTS",
    "PRODUCER_DEFAULTS",
    "KafkaSettings",
    "ModelSettings",
    "RedisSettings",
    "StateSettings",
    "WorkerSettings",
    "unknown_variables",
]

#: librdkafka consumer defaults; ``KafkaSettings.consumer_options`` is merged over them.
#: Offsets are stored by hand after Redis acknowledged, and committed synchronously per batch.
#: Statistics every 5 s feed the consumer-lag gauge (``streams.lag``).
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "isolation.level": "read_committed",
    "session.timeout.ms": 10_000,
    "heartbeat.interval.ms": 1_000,
    "partition.assignment.strategy": "range",
    "fetch.wait.max.ms": 100,
    "statistics.interval.ms": 5_000,
}

#: librdkafka producer defaults; ``KafkaSettings.producer_options`` is merged over them.
#: ``murmur2_random`` is the Java client's partitioner, so every producer co-partitions users.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "partitioner": "murmur2_random",
    "message.timeout.ms": 30_000,
}


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, frozen=True, extra="forbid")


class KafkaSettings(BaseSettings):
    """Kafka connection, group and topic prefix (``UNISTATE_KAFKA_*``).

    ``consumer_options`` / ``producer_options`` are librdkafka options (JSON in the environment)
    merged over ``CONSUMER_DEFAULTS`` / ``PRODUCER_DEFAULTS``; ``client_options`` go to both and
    to the admin client (security, SASL, ...).
    """

    model_config = _config("UNISTATE_KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    group_id: str = "unistate-worker"
    topic_prefix: str = "unistate."
    client_id: str = "unistate"
    client_options: dict[str, Any] = Field(default_factory=dict)
    consumer_options: dict[str, Any] = Field(default_factory=dict)
    producer_options: dict[str, Any] = Field(default_factory=dict)
    sasl_password: SecretStr | None = None
    admin_timeout_s: float = Field(default=15.0, gt=0)
    flush_timeout_s: float = Field(default=30.0, gt=0)

    def _common(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
        }
        if self.sasl_password is not None:
            common["sasl.password"] = self.sasl_password.get_secret_value()
        return {**common, **self.client_options}

    def consumer_config(self) -> dict[str, Any]:
        """The librdkafka consumer configuration: defaults, then common, then overrides."""
        return {**CONSUMER_DEFAULTS, **self._common(), "group.id": self.group_id,
                **self.consumer_options}

    def producer_config(self) -> dict[str, Any]:
        """The librdkafka producer configuration: defaults, then common, then overrides."""
        return {**PRODUCER_DEFAULTS, **self._common(), **self.producer_options}

    def admin_config(self) -> dict[str, Any]:
        """The librdkafka admin-client configuration."""
        return self._common()


class RedisSettings(BaseSettings):
    """Redis connection, key prefix, TTL and the bounded retry policy (``UNISTATE_REDIS_*``)."""

    model_config = _config("UNISTATE_REDIS_")

    url: str = "redis://127.0.0.1:6379/0"
    cluster: bool = False
    password: SecretStr | None = None
    key_prefix: str = "unistate"
    ttl_s: int = Field(default=30 * 24 * 3600, gt=0)
    socket_timeout_s: float = Field(default=5.0, gt=0)
    retry_attempts: int = Field(default=5, ge=1)
    retry_backoff_ms: int = Field(default=200, ge=0)
    retry_backoff_max_ms: int = Field(default=5_000, ge=0)


class ModelSettings(BaseSettings):
    """Where the exported model lies and which ONNX Runtime providers serve it (``UNISTATE_MODEL_*``)."""

    model_config = _config("UNISTATE_MODEL_")

    artifact_dir: Path = Path("models/current")
    providers: list[str] | None = None


class WorkerSettings(BaseSettings):
    """The worker loop: batching, latency budget, limits, metrics, logs (``UNISTATE_WORKER_*``).

    Health: ``/healthz`` fails when the loop has not ticked for ``liveness_window_s``; ``/readyz``
    pings Redis when no Redis operation succeeded for ``readiness_redis_ping_s``.
    ``throughput_log_s``: one throughput log line per this many seconds (0 = off).
    Coalesced recompute: a user is recomputed at most once per ``recompute_interval_ms`` (0: after
    every batch), sooner when it gathered ``recompute_max_events`` new events, and every waiting
    user is due when more than ``max_dirty_users`` wait; offsets are committed only below the
    events still waiting.
    ``fail_after_publish`` and ``fault_kill_at`` are test hooks for the fault suite:
    ``fail_after_publish`` exits (status 75) right after Redis and the notification topic have a
    batch's results, before its offsets are committed; ``fault_kill_at="POINT:N"`` SIGKILLs the
    process the N-th time a batch reaches POINT: ``published`` (Redis written, notifications not
    flushed) or ``flushed`` (notifications acknowledged, offsets not committed).
    """

    model_config = _config("UNISTATE_WORKER_")

    max_batch_messages: int = Field(default=500, ge=1)
    consume_wait_ms: int = Field(default=50, ge=1)
    max_batch_users: int = Field(default=64, ge=1)
    recompute_interval_ms: int = Field(default=500, ge=0)
    recompute_max_events: int = Field(default=64, ge=1)
    max_dirty_users: int = Field(default=20_000, ge=1)
    max_message_bytes: int = Field(default=64 * 1024, ge=64)
    max_future_skew_ms: int = Field(default=5 * 60_000, ge=0)
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_addr: str = "0.0.0.0"
    liveness_window_s: float = Field(default=60.0, gt=0)
    readiness_redis_ping_s: float = Field(default=5.0, ge=0)
    throughput_log_s: float = Field(default=30.0, ge=0)
    log_level: str = "INFO"
    log_format: Literal["kv", "json"] = "kv"
    fail_after_publish: bool = False
    fault_kill_at: str = Field(default="", pattern=r"^$|^(published|flushed):[1-9][0-9]*$")


_STATE, _MIXING = StateConfig(), MixingConfig()


class StateSettings(BaseSettings):
    """Per-user state bounds and the 2-D mixing policy (``UNISTATE_STATE_*``; dicts and lists as
    JSON). Defaults are ``state.config``'s; see docs/mixing.md for their rationale."""

    model_config = _config("UNISTATE_STATE_")

    buffer_capacity: dict[str, int] = Field(default_factory=lambda: dict(_STATE.buffer_capacity))
    allowed_lateness_ms: int = _STATE.allowed_lateness_ms
    idle_evict_s: float = _STATE.idle_evict_s
    cache_max_bytes: int = _STATE.cache_max_bytes
    recent_ids_capacity: int = _STATE.recent_ids_capacity
    scenario_slots: dict[str, int] = Field(default_factory=lambda: dict(_MIXING.scenario_slots))
    bucket_bounds_ms: tuple[int, ...] = _MIXING.bucket_bounds_ms
    bucket_shares: tuple[float, ...] = _MIXING.bucket_shares
    redistribute_unused: bool = _MIXING.redistribute_unused

    def state_config(self) -> StateConfig:
        """The validated ``StateConfig`` (raises pydantic's ValidationError when inconsistent)."""
        return StateConfig(buffer_capacity=self.buffer_capacity,
                           allowed_lateness_ms=self.allowed_lateness_ms,
                           idle_evict_s=self.idle_evict_s,
                           cache_max_bytes=self.cache_max_bytes,
                           recent_ids_capacity=self.recent_ids_capacity)

    def mixing_config(self) -> MixingConfig:
        """The validated ``MixingConfig``."""
        return MixingConfig(scenario_slots=self.scenario_slots,
                            bucket_bounds_ms=self.bucket_bounds_ms,
                            bucket_shares=self.bucket_shares,
                            redistribute_unused=self.redistribute_unused)


_ALL_SETTINGS: tuple[type[BaseSettings], ...] = (KafkaSettings, RedisSettings, ModelSettings, WorkerSettings,
                                                 StateSettings)


def unknown_variables() -> list[str]:
    """``UNISTATE_*`` environment variables no setting reads (a typo would otherwise be silently
    ignored), each with the closest known name when there is one."""
    known = {f"{cls.model_config['env_prefix']}{name}".upper() for cls in _ALL_SETTINGS
             for name in cls.model_fields}
    out = []
    for name in sorted(n for n in os.environ if n.upper().startswith("UNISTATE_") and n.upper() not in known):
        close = difflib.get_close_matches(name.upper(), known, n=1)
        out.append(f"{name} (did you mean {close[0]}?)" if close else name)
    return out
