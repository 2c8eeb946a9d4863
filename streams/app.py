"""The composition root of the worker: settings in, a ``Worker`` with every client built out."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit

import redis

from state.config import MixingConfig, StateConfig
from state.keys import RedisKeys
from state.mixing import MixingPolicy
from streams.consumer import EventConsumer
from streams.endpoints import StatusServer
from streams.errors import ConfigurationError, RedisUnavailableError
from streams.events import EventLimits
from streams.health import Health, RedisProbe
from streams.lag import ConsumerLag
from streams.metrics import WorkerMetrics
from streams.producer import KafkaProducer
from streams.recompute import EncoderProtocol
from streams.retry import RetryPolicy
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.throughput import ThroughputLog
from streams.topics import TopicNames
from streams.worker import Worker, WorkerParts

__all__ = ["EXIT_AFTER_PUBLISH_CODE", "build_worker", "load_encoder", "redacted", "redis_client", "redis_probe"]

logger = logging.getLogger(__name__)

#: Exit status of the ``fail_after_publish`` test hook (the process dies before the commit).
EXIT_AFTER_PUBLISH_CODE = 75


def redis_client(settings: RedisSettings) -> redis.Redis | redis.RedisCluster:
    """A Redis (or Redis Cluster) client. A plain client connects on its first command; a
    cluster client reads the slot map when built, so an unreachable cluster fails here."""
    password = settings.password.get_secret_value() if settings.password else None
    client_class = redis.RedisCluster if settings.cluster else redis.Redis
    try:
        return client_class.from_url(
            settings.url, password=password, decode_responses=False,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.socket_timeout_s,
        )
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise RedisUnavailableError(f"cannot reach Redis Cluster at {redacted(settings.url)}: {exc}") from exc


def redis_probe(client: redis.Redis | redis.RedisCluster) -> RedisProbe:
    """A readiness probe: PING through ``client``; None when Redis answered, else the error."""

    def ping() -> str | None:
        try:
            client.ping()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            return f"ping failed: {type(exc).__name__}: {exc}"
        return None

    return ping


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def load_encoder(settings: ModelSettings) -> EncoderProtocol:
    """Load the exported model with ONNX Runtime; a bad or missing artifact is fatal."""
    from encoders.errors import EncoderError
    from encoders.serving import InterestEncoder

    try:
        return InterestEncoder.load(settings.artifact_dir, providers=settings.providers)
    except (EncoderError, OSError) as exc:
        raise ConfigurationError(f"cannot load model from {settings.artifact_dir}: {exc}") from exc


def _crash_after_publish(point: str) -> None:
    if point == "flushed":
        logger.error("fail_after_publish: exiting before the offset commit (test hook)")
        logging.shutdown()
        os._exit(EXIT_AFTER_PUBLISH_CODE)


def _kill_at(spec: str) -> Callable[[str], None]:
    """The ``fault_kill_at`` hook: SIGKILL this process the N-th time a batch reaches POINT."""
    point, _, nth = spec.partition(":")
    seen = 0

    def hook(reached: str) -> None:
        nonlocal seen
        if reached == point:
            seen += 1
            if seen == int(nth):
                logger.error("fault_kill_at=%s: killing this process (test hook)", spec)
                logging.shutdown()
                os.kill(os.getpid(), signal.SIGKILL)

    return hook


def build_worker(
    kafka: KafkaSettings,
    redis_settings: RedisSettings,
    model: ModelSettings,
    worker: WorkerSettings,
    encoder: EncoderProtocol | None = None,
    state_config: StateConfig | None = None,
    mixing_config: MixingConfig | None = None,
    fault_hook: Callable[[str], None] | None = None,
) -> Worker:
    """Build every client (none connects yet) and the worker that will enter them."""
    topics = TopicNames.from_prefix(kafka.topic_prefix)
    metrics = WorkerMetrics()
    if fault_hook is None and worker.fail_after_publish:
        fault_hook = _crash_after_publish
    elif fault_hook is None and worker.fault_kill_at:
        fault_hook = _kill_at(worker.fault_kill_at)
    policy = MixingPolicy(mixing_config)
    encoder = encoder if encoder is not None else load_encoder(model)
    metrics.set_model(encoder.model_version, getattr(encoder, "dim", None))
    client = redis_client(redis_settings)
    health = Health(worker.liveness_window_s, worker.readiness_redis_ping_s, redis_probe(client))
    lag = ConsumerLag(metrics.consumer_lag, on_brokers=health.set_brokers_up)
    parts = WorkerParts(
        consumer=EventConsumer({**kafka.consumer_config(), "stats_cb": lag.on_stats}, topics.inputs),
        producer=KafkaProducer(kafka.producer_config(), kafka.flush_timeout_s),
        redis_client=client,
        encoder=encoder,
        policy=policy,
        topics=topics,
        keys=RedisKeys(redis_settings.key_prefix),
        ttl_s=redis_settings.ttl_s,
        retry=RetryPolicy(redis_settings.retry_attempts, redis_settings.retry_backoff_ms,
                          redis_settings.retry_backoff_max_ms),
        state_config=state_config or StateConfig(),
        limits=EventLimits(worker.max_message_bytes, worker.max_future_skew_ms),
        metrics=metrics,
        metrics_server=StatusServer(metrics.registry, health, worker.metrics_port, worker.metrics_addr),
        health=health,
        services=[ThroughputLog(metrics, lag, worker.throughput_log_s)],
        max_batch_messages=worker.max_batch_messages,
        consume_wait_ms=worker.consume_wait_ms,
        max_batch_users=worker.max_batch_users,
        recompute_interval_ms=worker.recompute_interval_ms,
        recompute_max_events=worker.recompute_max_events,
        max_dirty_users=worker.max_dirty_users,
        metadata_timeout_s=kafka.admin_timeout_s,
        fault_hook=fault_hook,
    )
    return Worker(parts)
