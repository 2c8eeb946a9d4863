"""Worker end-to-end benchmark: real Tansu broker + real redis-server, synthetic events, the worker in-process.

For each worker configuration (``max_batch_users`` : ``consume_wait_ms``) the benchmark gives the
worker its own topics, consumer group and Redis key prefix, then

1. **backlog drain** — produces the first part of a synthetic event stream
   (``encoders.data.synthetic.generate_events``) before the worker starts, starts the worker
   (``streams.app.build_worker``, as ``tests/integration/test_worker_pipeline.py`` does) and times
   it from its first consumed batch to the batch that completes the backlog: events/s, users
   recomputed, mean users per model call;
2. **live tail** — produces the rest of the stream at a paced rate while the worker runs and
   records the worker's own event→Redis latency observations (Kafka CreateTime of each message
   to the moment Redis acknowledged its user's new vectors), p50/p99/max;
3. **check** — every user with events has a Redis entry (``state.reader.EmbeddingReader``).

Ratios are against the baseline configuration (``--baseline``, default 1:50, i.e. one user per
model call), measured in the same process on the same servers.

    .venv/bin/python benchmarks/bench_worker.py            # defaults: about 2 minutes on 2 cores
    .venv/bin/python benchmarks/bench_worker.py --help
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

logger = logging.getLogger("bench_worker")

SPAN_MS = 30 * 86_400_000
ScenarioEvent = tuple[str, dict]


@dataclass(frozen=True)
class WorkerConfig:
    max_batch_users: int
    consume_wait_ms: int
    recompute_interval_ms: int = 0  # 0: every batch recomputes its users (no coalescing)

    @classmethod
    def parse(cls, text: str) -> WorkerConfig:
        users, latency, *interval = text.split(":")
        return cls(int(users), int(latency), int(interval[0]) if interval else 0)

    def __str__(self) -> str:
        return f"{self.max_batch_users}:{self.consume_wait_ms}:{self.recompute_interval_ms}"


@dataclass
class Progress:
    """What the instrumented worker has done: batch spans and messages processed."""

    spans: list[tuple[float, float, int]] = field(default_factory=list)
    messages: int = 0
    #: Kafka leg of each message: CreateTime → the worker started processing its batch.
    kafka_ms: list[float] = field(default_factory=list)
    done: threading.Condition = field(default_factory=threading.Condition)


@dataclass
class RunResult:
    config: WorkerConfig
    backlog_events: int
    produce_s: float
    join_s: float
    drain_s: float
    batches: int
    users_recomputed: int
    model_calls: int
    live_events: int
    live_rate: float
    latencies_ms: list[float]
    kafka_ms: list[float]
    users_with_events: int
    users_in_redis: int
    dead_letters: dict[str, int]

    @property
    def events_per_s(self) -> float:
        return self.backlog_events / self.drain_s

    @property
    def users_per_call(self) -> float:
        return self.users_recomputed / max(self.model_calls, 1)

    def latency(self, q: float, values: list[float] | None = None) -> float:
        values = self.latencies_ms if values is None else values
        return float(np.percentile(values, q)) if values else float("nan")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=250, help="synthetic users (default 250)")
    parser.add_argument("--mean-events", type=int, default=100,
                        help="mean events per user (default 100: about 25k events in all)")
    parser.add_argument("--live-events", type=int, default=2000,
                        help="events of the stream's tail produced live at --live-rate (default 2000)")
    parser.add_argument("--live-rate", type=float, default=500.0, help="live events per second (default 500)")
    parser.add_argument("--configs", nargs="+", type=WorkerConfig.parse,
                        default=[WorkerConfig(1, 50), WorkerConfig(64, 50), WorkerConfig(64, 5)],
                        help="worker configs max_batch_users:consume_wait_ms[:recompute_interval_ms] "
                        "(interval default 0: no coalescing; default configs 1:50 64:50 64:5)")
    parser.add_argument("--baseline", type=WorkerConfig.parse, default=WorkerConfig(1, 50),
                        help="config the ratios are against (default 1:50)")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic (default 2)")
    parser.add_argument("--max-batch-messages", type=int, default=500,
                        help="worker max_batch_messages (default 500, the WorkerSettings default)")
    parser.add_argument("--artifact-dir", type=Path, default=None,
                        help="exported model to serve (default: train+export a small one, ~5 s)")
    parser.add_argument("--drain-timeout-s", type=float, default=120.0,
                        help="give up on a configuration after this long (default 120)")
    parser.add_argument("--allowed-lateness-ms", type=int, default=0,
                        help="StateConfig.allowed_lateness_ms for the worker (default 0: the "
                             "StateConfig default, 1 day, judged per scenario)")
    parser.add_argument("--fetch-wait-max-ms", type=int, default=None,
                        help="librdkafka fetch.wait.max.ms for the worker's consumer (default: the worker's, 100)")
    parser.add_argument("--seed", type=int, default=3)
    return parser.parse_args(argv)


def split_stream(args: argparse.Namespace) -> tuple[list[ScenarioEvent], list[ScenarioEvent]]:
    """The synthetic stream, shifted to end a minute ago, split into backlog and live tail."""
    from encoders.data.synthetic import generate_events

    start_ms = int(time.time() * 1000) - SPAN_MS - 60_000
    events = list(generate_events(args.users, seed=args.seed, start_ms=start_ms, span_ms=SPAN_MS,
                                  mean_events=args.mean_events))
    live = min(args.live_events, len(events) // 2)
    return events[: len(events) - live], events[len(events) - live :]


def batch_observer(progress: Progress):  # noqa: ANN201 - the worker's on_batch hook
    """An ``on_batch`` hook recording each batch's span and its messages' Kafka leg."""

    def observe(messages, result, started: float, finished: float) -> None:  # noqa: ANN001
        started_ms = time.time() * 1000 - (time.perf_counter() - started) * 1000
        kafka_ms = [started_ms - m.timestamp()[1] for m in messages if m.timestamp()[0]]
        with progress.done:
            progress.kafka_ms.extend(kafka_ms)
            progress.spans.append((started, finished, len(messages)))
            progress.messages += len(messages)
            progress.done.notify_all()

    return observe


def wait_messages(progress: Progress, target: int, timeout_s: float, errors: list[BaseException],
                  bar: tqdm, settled: Callable[[], bool] = lambda: True) -> None:
    """Until the worker processed ``target`` messages and ``settled()`` (no user waits for its
    recompute window: everything is in Redis)."""
    deadline = time.monotonic() + timeout_s
    with progress.done:
        while progress.messages < target or not settled():
            if errors:
                raise errors[0]
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"worker processed {progress.messages} of {target} messages in {timeout_s}s")
            progress.done.wait(min(left, 0.2))
            bar.n = min(progress.messages, target)
            bar.refresh()


def run_config(config: WorkerConfig, servers: tuple, encoder, artifact: Path,  # noqa: ANN001
               backlog: list[ScenarioEvent], live: list[ScenarioEvent], args: argparse.Namespace) -> RunResult:
    import redis
    from confluent_kafka.admin import AdminClient

    from state.config import StateConfig
    from state.keys import RedisKeys
    from state.reader import EmbeddingReader
    from streams.app import build_worker
    from streams.cli.produce import produce_events
    from streams.devservers.background import running
    from streams.devservers.pacing import produce_paced
    from streams.devservers.servers import BROKER_CONSUMER_OPTIONS
    from streams.producer import KafkaProducer
    from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
    from streams.topics import TopicNames, create_topics

    broker, redis_server = servers
    unique = f"b{uuid.uuid4().hex[:8]}"
    consumer_options = dict(BROKER_CONSUMER_OPTIONS)
    if args.fetch_wait_max_ms is not None:
        consumer_options["fetch.wait.max.ms"] = args.fetch_wait_max_ms
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=consumer_options)
    state_config = StateConfig(allowed_lateness_ms=args.allowed_lateness_ms) if args.allowed_lateness_ms else None
    redis_settings = RedisSettings(url=redis_server.url, key_prefix=unique)
    topics = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), topics, args.partitions, 1)
    started = time.perf_counter()
    with KafkaProducer(kafka.producer_config()) as producer:
        produce_events(producer, topics, backlog, total=len(backlog), progress=True)
    produce_s = time.perf_counter() - started

    worker = build_worker(kafka, redis_settings, ModelSettings(artifact_dir=artifact),
                          WorkerSettings(max_batch_users=config.max_batch_users,
                                         consume_wait_ms=config.consume_wait_ms,
                                         recompute_interval_ms=config.recompute_interval_ms,
                                         max_batch_messages=args.max_batch_messages),
                          encoder=encoder, state_config=state_config)
    progress = Progress()
    worker.parts.on_batch = batch_observer(progress)
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(backlog), desc=f"  drain {config}", unit="ev", leave=False))
        run_started = time.perf_counter()
        errors = stack.enter_context(running(worker))
        published = lambda: worker.metrics.dirty_users._value.get() == 0  # noqa: E731
        wait_messages(progress, len(backlog), args.drain_timeout_s, errors, bar, published)
        first_start, last_end = progress.spans[0][0], progress.spans[-1][1]
        batches = sum(1 for *_, n in progress.spans if n)
        drained = worker.metrics.snapshot()
        worker.metrics.clear_latency_samples()  # backlog messages waited in Kafka by design: not latency
        progress.kafka_ms.clear()
        with KafkaProducer(kafka.producer_config()) as producer:
            produce_paced(producer, topics, live, args.live_rate, progress=True)
        bar.reset(total=len(backlog) + len(live))
        wait_messages(progress, len(backlog) + len(live), args.drain_timeout_s, errors, bar, published)
    users = sorted({e["user_id"] for _, e in backlog + live})
    client = redis.Redis.from_url(redis_server.url)
    try:
        found = EmbeddingReader(client, RedisKeys(unique)).get(users, "feed").found
    finally:
        client.close()
    return RunResult(
        config=config, backlog_events=len(backlog), produce_s=produce_s,
        join_s=first_start - run_started, drain_s=last_end - first_start, batches=batches,
        users_recomputed=drained.users_updated, model_calls=drained.model_calls,
        live_events=len(live), live_rate=args.live_rate,
        latencies_ms=worker.metrics.latency_samples_ms(), kafka_ms=list(progress.kafka_ms),
        users_with_events=len(users),
        users_in_redis=int(found.sum()), dead_letters=worker.metrics.snapshot().dead_letters,
    )


def tables(results: list[RunResult], baseline: WorkerConfig) -> str:
    base = next((r for r in results if r.config == baseline), results[0])
    out = [f"ratios against {base.config} (max_batch_users:consume_wait_ms:recompute_interval_ms)", "",
           "| config | backlog events | drain s | events/s | × baseline | users recomputed "
           "| model calls | mean users/call | batches | group join s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        out.append(f"| {r.config} | {r.backlog_events:,} | {r.drain_s:.1f} | {r.events_per_s:,.0f} "
                   f"| **{r.events_per_s / base.events_per_s:.2f}×** | {r.users_recomputed:,} "
                   f"| {r.model_calls:,} | {r.users_per_call:.1f} | {r.batches} | {r.join_s:.1f} |")
    out += ["", "live tail: events produced at the given rate after the backlog drained; "
                "latency = Kafka CreateTime → Redis acknowledged (the worker's own observations)", "",
            "| config | live events @ rate | latency obs. | p50 ms | p99 ms | max ms | p50 × baseline "
            "| Kafka leg p50 / p99 ms | users with events | in Redis | dead letters (all phases) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        out.append(f"| {r.config} | {r.live_events:,} @ {r.live_rate:.0f}/s | {len(r.latencies_ms):,} "
                   f"| {r.latency(50):.1f} | {r.latency(99):.1f} | {r.latency(100):.1f} "
                   f"| {r.latency(50) / base.latency(50):.2f}× "
                   f"| {r.latency(50, r.kafka_ms):.1f} / {r.latency(99, r.kafka_ms):.1f} | {r.users_with_events} "
                   f"| {r.users_in_redis} | {dict(sorted(r.dead_letters.items())) or 0} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the DLQ warns per dead letter; they are counted below
    from bench_encoder import artifact_or_build

    from encoders.serving import InterestEncoder
    from streams.devservers.servers import start_broker, start_redis

    configs = list(dict.fromkeys([args.baseline, *args.configs]))
    backlog, live = split_stream(args)
    results: list[RunResult] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unistate-bench-worker-")))
        artifact = artifact_or_build(tmp, args.artifact_dir)
        encoder = InterestEncoder.load(artifact, providers=["CPUExecutionProvider"])
        broker = stack.enter_context(start_broker())
        redis_server = stack.enter_context(start_redis())
        for config in tqdm(configs, desc="configs", unit="cfg"):
            results.append(run_config(config, (broker, redis_server), encoder, artifact, backlog, live, args))
    n_events = len(backlog) + len(live)
    print(f"## bench_worker\n\n{args.users} users, {n_events:,} events "
          f"({len(backlog):,} backlog + {len(live):,} live), {args.partitions} partitions, "
          f"max_batch_messages={args.max_batch_messages}, model "
          f"d_model={encoder.manifest.config.d_model} n_layers={encoder.manifest.config.n_layers} on ONNX Runtime CPU; "
          f"allowed_lateness_ms={args.allowed_lateness_ms or 'default'}, "
          f"fetch.wait.max.ms={args.fetch_wait_max_ms or 'default'}; "
          f"mean backlog produce {statistics.mean(r.produce_s for r in results):.1f} s\n")
    print(tables(results, args.baseline))
    missing = [r for r in results if r.users_in_redis != r.users_with_events]
    if missing:
        print(f"\nERROR: users without a Redis entry in {[str(r.config) for r in missing]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
