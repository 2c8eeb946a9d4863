"""What ``unistate reembed`` and ``unistate backfill`` share: their options, the model and clients they
build from settings, and stopping between batches on SIGTERM or Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from state.config import StateConfig
from state.keys import RedisKeys
from state.mixing import MixingPolicy
from state.publisher import RedisPublisher
from streams.app import load_encoder, redis_client
from streams.bulk_publish import BulkPublisher, RateLimiter
from streams.cli.stream_commands import kafka_settings, redis_settings
from streams.errors import ConfigurationError
from streams.notifier import Notifier
from streams.producer import KafkaProducer
from streams.recompute import Recomputer
from streams.retry import RetryPolicy
from streams.settings import ModelSettings, StateSettings
from streams.startup import check_model
from streams.topics import TopicNames

__all__ = ["BulkSession", "bulk_options", "bulk_session", "positive", "positive_int", "stop_on_signals"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BulkSession:
    """The clients of one run; ``bulk`` is ``None`` when built without Kafka (a dry run)."""

    client: redis.Redis | redis.RedisCluster
    keys: RedisKeys
    model_version: str
    state_config: StateConfig
    retry: RetryPolicy
    bulk: BulkPublisher | None


def positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def bulk_options() -> argparse.ArgumentParser:
    """Options of both commands: model, batch size, rate and progress bar."""
    parent = argparse.ArgumentParser(add_help=False)
    g = parent.add_argument_group("model and pace")
    g.add_argument("--model-dir", type=Path, help="exported model directory (UNISTATE_MODEL_ARTIFACT_DIR, "
                   "default models/current)")
    g.add_argument("--batch-size", type=positive_int, default=256, metavar="USERS",
                   help="users per load, model call and publish round trip (default 256)")
    g.add_argument("--rate", type=positive, metavar="USERS_PER_S", help="recompute at most this many users a second")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parent


def _check_update_topic(args: argparse.Namespace, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    from streams.topic_admin import list_topics

    kafka = kafka_settings(args)
    if topic not in list_topics(AdminClient(kafka.admin_config()), kafka.admin_timeout_s):
        raise ConfigurationError(f"update topic {topic} does not exist (create it with `unistate topics create`)")


@contextmanager
def bulk_session(args: argparse.Namespace, stop: threading.Event, kafka: bool = True) -> Iterator[BulkSession]:
    """Load and check the model, then build and enter the Redis client (and the Kafka producer and
    the publishing pieces when ``kafka``)."""
    model = ModelSettings(**({"artifact_dir": args.model_dir} if args.model_dir is not None else {}))
    state = StateSettings()
    policy = MixingPolicy(state.mixing_config())
    encoder = load_encoder(model)
    check_model(encoder, policy)
    settings = redis_settings(args)
    keys = RedisKeys(settings.key_prefix)
    retry = RetryPolicy(settings.retry_attempts, settings.retry_backoff_ms, settings.retry_backoff_max_ms)
    with ExitStack() as stack:
        client = stack.enter_context(redis_client(settings))
        bulk = None
        if kafka:
            kafka_config = kafka_settings(args)
            topic = TopicNames.from_prefix(kafka_config.topic_prefix).updates
            _check_update_topic(args, topic)
            producer = stack.enter_context(KafkaProducer(kafka_config.producer_config(),
                                                         kafka_config.flush_timeout_s))
            publisher = RedisPublisher(client, keys, settings.ttl_s)
            notifier = Notifier(producer, topic, publisher, retry, stop=stop)
            bulk = BulkPublisher(Recomputer(encoder, policy, args.batch_size), publisher, notifier, retry,
                                 RateLimiter(args.rate, stop), stop)
        yield BulkSession(client, keys, encoder.model_version, state.state_config(), retry, bulk)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event set by the first SIGTERM or SIGINT (finish the batch, then stop); a second SIGINT
    interrupts at once."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        logger.warning("signal received signum=%d: stopping after the current batch", signum)
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
