"""The stream commands: ``worker``, ``produce`` and ``inspect``, and the options they share."""

from __future__ import annotations

import argparse
import logging
import signal
from pathlib import Path
from typing import Any

from streams.cli.exit_codes import ExitCode
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, StateSettings, WorkerSettings
from streams.topics import TopicNames

__all__ = ["common_options", "kafka_settings", "redis_settings", "register", "worker_settings"]

logger = logging.getLogger(__name__)


def common_options() -> argparse.ArgumentParser:
    """The connection and logging options every stream command takes."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (override UNISTATE_* environment settings)")
    g.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (UNISTATE_KAFKA_BOOTSTRAP_SERVERS)")
    g.add_argument("--topic-prefix", help="topic name prefix (UNISTATE_KAFKA_TOPIC_PREFIX, default 'unistate.')")
    g.add_argument("--redis-url", help="Redis URL (UNISTATE_REDIS_URL)")
    g.add_argument("--key-prefix", help="Redis key prefix (UNISTATE_REDIS_KEY_PREFIX, default 'unistate')")
    g.add_argument("--log-level", help="log level (UNISTATE_WORKER_LOG_LEVEL, default INFO)")
    g.add_argument("--log-format", choices=["kv", "json"], help="log format (UNISTATE_WORKER_LOG_FORMAT)")
    return common


def _given(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, arg) for arg, field in mapping.items()
            if getattr(args, arg, None) is not None}


def kafka_settings(args: argparse.Namespace) -> KafkaSettings:
    """Environment settings with the command line's overrides."""
    return KafkaSettings(**_given(args, {"bootstrap_servers": "bootstrap_servers",
                                         "topic_prefix": "topic_prefix", "group": "group_id"}))


def redis_settings(args: argparse.Namespace) -> RedisSettings:
    """Environment settings with the command line's overrides."""
    return RedisSettings(**_given(args, {"redis_url": "url", "key_prefix": "key_prefix"}))


def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    """Environment settings with the command line's overrides."""
    return WorkerSettings(**_given(args, {
        "metrics_port": "metrics_port", "consume_wait_ms": "consume_wait_ms",
        "max_batch_users": "max_batch_users", "log_level": "log_level", "log_format": "log_format",
    }))


def _cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import build_worker
    from streams.worker import Worker

    running: list[Worker] = []
    stop_requested = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop_requested
        logger.info("signal received signum=%d: finishing the current batch", signum)
        stop_requested = True
        for worker in running:
            worker.stop()

    # Handlers first: a SIGTERM while the model loads ends the command cleanly (exit 0).
    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        model = ModelSettings(**_given(args, {"artifact_dir": "artifact_dir"}))
        state = StateSettings()
        worker = build_worker(kafka_settings(args), redis_settings(args), model, worker_settings(args),
                              state_config=state.state_config(), mixing_config=state.mixing_config())
        running.append(worker)
        if stop_requested:
            logger.info("stopped during start-up: not consuming")
            return ExitCode.OK
        worker.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return ExitCode.OK


def _cmd_produce(args: argparse.Namespace) -> int:
    from streams.cli.produce import produce_events, read_event_file, synthetic_events
    from streams.producer import KafkaProducer

    kafka = kafka_settings(args)
    if args.file is not None:
        events = read_event_file(args.file)
    else:
        events = synthetic_events(args.users, args.seed, args.mean_events)
    with KafkaProducer(kafka.producer_config(), kafka.flush_timeout_s) as producer:
        counts = produce_events(producer, TopicNames.from_prefix(kafka.topic_prefix), events,
                                progress=not args.no_progress)
    print(f"produced {sum(counts.values())} events: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return ExitCode.OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from state.keys import RedisKeys
    from state.mixing import MixingPolicy
    from streams.app import redis_client
    from streams.cli.inspect import format_report, inspect_user

    settings = redis_settings(args)
    with redis_client(settings) as client:
        policy = MixingPolicy(StateSettings().mixing_config())
        lines = inspect_user(client, RedisKeys(settings.key_prefix), policy, args.user,
                             args.first_values)
    if lines is None:
        print(f"user {args.user}: nothing stored under key prefix {settings.key_prefix!r}")
        return ExitCode.ERROR
    print(format_report(lines))
    return ExitCode.OK


def _add_worker(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("worker", parents=[common], help="run the stream worker (Kafka → state → model → Redis)",
                       description="Consume feed/search/ads events, update per-user state, recompute "
                       "interest embeddings and publish them to Redis and the update topic.")
    p.add_argument("--group", help="consumer group id (UNISTATE_KAFKA_GROUP_ID)")
    p.add_argument("--artifact-dir", type=Path, help="exported model directory (UNISTATE_MODEL_ARTIFACT_DIR)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus /metrics here; 0 = off")
    p.add_argument("--consume-wait-ms", type=int, help="consume wait per batch (default 50)")
    p.add_argument("--max-batch-users", type=int, help="users per model call (default 64)")
    p.set_defaults(handler=_cmd_worker)


def _add_produce(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("produce", parents=[common], help="produce events from the generator or a file",
                       description="Send events to the input topics (key = user_id, msgpack values).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--generator", choices=["synthetic"], help="generate synthetic events")
    source.add_argument("--file", type=Path, help="an event file, sent as given and as fast as possible: "
                        ".jsonl, .csv, .parquet or .msgpack (read like `unistate replay FILE`, which also "
                        "checks, paces and reports)")
    p.add_argument("--users", type=int, default=100, help="synthetic users (default 100)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--mean-events", type=int, default=100, help="mean events per synthetic user")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_produce)


def _add_inspect(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("inspect", parents=[common], help="show a user's mixed sequence and vectors",
                       description="Read USER's state from Redis: the mixed sequence by scenario and "
                       "time bucket, then the stored vectors' metadata, norms and first values.")
    p.add_argument("user", metavar="USER", help="user id")
    p.add_argument("--first-values", type=int, default=6, help="vector values shown per query token")
    p.set_defaults(handler=_cmd_inspect)


def register(subparsers: Any) -> None:
    """Add ``worker``, ``produce`` and ``inspect`` to the ``unistate`` command tree."""
    common = common_options()
    for add in (_add_worker, _add_produce, _add_inspect):
        add(subparsers, common)
