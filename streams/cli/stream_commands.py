"""The stream commands: ``worker``, ``produce`` and ``inspect``, and the options they share."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli.exit_codes import ExitCode
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, StateSettings, WorkerSettings
from streams.topics import TopicNames

if TYPE_CHECKING:
    from encoders.item_index import ItemIndex

__all__ = ["common_options", "kafka_settings", "model_settings", "redis_settings", "register", "worker_settings"]

logger = logging.getLogger(__name__)


def common_options(kafka: bool = True) -> argparse.ArgumentParser:
    """The connection and logging options of the stream commands (``kafka=False``: Redis and logs only)."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("connection (override UNISTATE_* environment settings)")
    if kafka:
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


def model_settings(args: argparse.Namespace) -> ModelSettings:
    """Environment settings with ``--model-dir``."""
    return ModelSettings(**_given(args, {"model_dir": "artifact_dir"}))


def _item_index(args: argparse.Namespace) -> ItemIndex | None:
    """The exported model's item index; ``None`` when only the default directory was implied and
    holds no model (a directory given by flag or environment must load)."""
    from encoders.item_index import ItemIndex

    model = model_settings(args)
    if "artifact_dir" not in model.model_fields_set and not model.artifact_dir.is_dir():
        return None
    return ItemIndex.load(model.artifact_dir)


def _cmd_inspect(args: argparse.Namespace) -> int:
    from state.keys import RedisKeys
    from state.mixing import MixingPolicy
    from state.reader import EmbeddingReader
    from streams.app import redis_client
    from streams.cli.inspect import build_report, format_report
    from streams.cli.inspect_plot import plot_timeline, require_matplotlib

    if args.plot is not None:
        try:
            require_matplotlib()
        except ModuleNotFoundError as exc:
            print(f"unistate: {exc}", file=sys.stderr)
            return ExitCode.ERROR
    settings, state = redis_settings(args), StateSettings()
    index = _item_index(args)
    with redis_client(settings) as client:
        emb = EmbeddingReader(client, RedisKeys(settings.key_prefix)).get_user(args.user)
    if emb is None:
        print(f"user {args.user}: nothing stored under key prefix {settings.key_prefix!r}", file=sys.stderr)
        return ExitCode.ERROR
    report = build_report(emb, MixingPolicy(state.mixing_config()), state.state_config(), index,
                          top=args.top, precision=args.precision)
    if args.plot is not None:
        plot_timeline(report, args.plot)
    print(json.dumps(report, indent=2) if args.json else format_report(report, args.first_values))
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
    del common  # inspect reads Redis and the model only: no Kafka flags
    p = sub.add_parser("inspect", parents=[common_options(kafka=False)],
                       help="show a user's mixed sequence, vectors and top items",
                       description="Read USER's state from Redis (one read of the user's key): the mixed "
                       "sequence by scenario and time bucket, the stored vectors, and with the exported "
                       "model the top items per scenario and the sequence's items the model does not know.")
    p.add_argument("user", metavar="USER", help="user id")
    g = p.add_argument_group("model and output")
    g.add_argument("--model-dir", type=Path, help="exported model directory (UNISTATE_MODEL_ARTIFACT_DIR, default "
                   "models/current; skipped when that default is absent)")
    g.add_argument("--top", type=int, default=5, help="top items shown per scenario (default 5)")
    g.add_argument("--precision", type=int, default=4, help="decimals of vector values and scores (default 4)")
    g.add_argument("--first-values", type=int, default=6, help="vector values shown per query vector in "
                   "the text report (default 6; --json has them all)")
    g.add_argument("--json", action="store_true", help="print the report as JSON")
    g.add_argument("--plot", type=Path, metavar="FILE.png", help="draw the events' timeline by scenario and "
                   "mixing time bucket (needs matplotlib: pip install 'unistate[plot]')")
    p.set_defaults(handler=_cmd_inspect)


def register(subparsers: Any) -> None:
    """Add ``worker``, ``produce`` and ``inspect`` to the ``unistate`` command tree."""
    common = common_options()
    for add in (_add_worker, _add_produce, _add_inspect):
        add(subparsers, common)
