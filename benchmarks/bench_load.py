"""Load benchmark: the worker's rate/latency curve under a Zipf load of many users, real model on CPU.

Issue #10's target: "Real model, CPU, 100k users with Zipf activity: lag flat at >= 10k events/s per
worker process, event -> Redis p99 <= 1 s with the default window". One worker
(``streams.app.build_worker``, default ``WorkerSettings``: coalesced recompute every 500 ms) runs on a
background thread for the whole sweep, against a real Tansu broker and a real redis-server
(``streams.devservers.servers``), serving a small model trained and exported first
(``bench_encoder.build_artifact``) on ONNX Runtime CPU.

Load: ``--users`` user ids, each event's user drawn with probability proportional to 1/rank^s
(``--zipf-s``); ~70% feed, 15% search, 15% ads valid wire events (``streams.events.encode_event``)
with unique event ids and ``ts_ms`` paced at the rate from when the step was drawn (live events: the
step is drawn a few seconds at most before it is sent). A warm-up of ``--warmup-s`` at the
first rate (group join, first users; not reported) precedes the sweep. For each rate of ``--rates``:

1. the step's ``rate x --step-s`` messages are drawn and encoded *before* the step starts;
2. they are produced paced at the rate (``KafkaProducer.produce``, keyed by user, CreateTime = send
   time) from the main thread, sampling lag = produced - consumed every 0.5 s (consumed: messages the
   worker finished, counted by its ``on_batch`` hook);
3. the benchmark waits until the worker caught up (consumed == produced, no dirty user waiting for its
   recompute window) for at most ``--drain-timeout-s``; a step that cannot is *saturated* and ends
   the sweep.

Per step: achieved produce and consume rates over the step, lag at the step's end, lag growth (slope
of a least-squares line through the lag samples of the step's second half), the worker's own
event->Redis latencies (Kafka CreateTime -> Redis acknowledged) of the step's events, i.e. observed
from the step's start until it caught up (drained by the hook after every batch, on the worker's
thread), and the users recomputed and model calls over the same span (``worker.metrics.snapshot()``).
Verdict: ``flat`` when lag growth < 2% of the rate and p99 <= 1000 ms. Producer and worker share one
process (and its GIL): the producer thread's CPU share is reported beside the table (the process's
share includes ONNX Runtime's intra-op threads, which spin while they wait).

The sweep takes about 2 minutes when every step keeps up (a saturated step adds up to
``--drain-timeout-s``), after the ~5 s model build (``bench_encoder.build_artifact``: one epoch);
``--artifact-dir`` serves an existing export instead.

    .venv/bin/python benchmarks/bench_load.py            # defaults: ~2 min
    .venv/bin/python benchmarks/bench_load.py --users 2000 --rates 200 400 --step-s 4   # smoke run
    .venv/bin/python benchmarks/bench_load.py --help
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

logger = logging.getLogger("bench_load")

SCENARIO_SHARES = {"feed": 0.70, "search": 0.15, "ads": 0.15}
SAMPLE_S = 0.5
FLAT_GROWTH_SHARE = 0.02
P99_TARGET_MS = 1000.0
#: One message ready to send: topic, key, value.
Outgoing = tuple[str, bytes, bytes]


def _settings_default(name: str) -> Any:
    from streams.settings import WorkerSettings

    return WorkerSettings.model_fields[name].default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100_000,
                        help="user ids the events are drawn over (default 100000)")
    parser.add_argument("--zipf-s", type=float, default=1.1,
                        help="Zipf exponent: user of rank r has activity proportional to 1/r^s (default 1.1)")
    parser.add_argument("--rates", type=float, nargs="+", default=[2000, 5000, 10000, 20000],
                        help="produce rates of the steps, events/s, in order (default 2000 5000 10000 20000)")
    parser.add_argument("--step-s", type=float, default=20.0, help="seconds each rate is held (default 20)")
    parser.add_argument("--warmup-s", type=float, default=5.0,
                        help="unreported warm-up at the first rate before the sweep (default 5; 0: none)")
    parser.add_argument("--drain-timeout-s", type=float, default=60.0,
                        help="after a step, wait this long for the worker to catch up, else the step is "
                             "saturated and the sweep stops (default 60)")
    parser.add_argument("--partitions", type=int, default=2, help="partitions per topic (default 2)")
    parser.add_argument("--max-batch-users", type=int, default=_settings_default("max_batch_users"),
                        help="worker max_batch_users, users per model call (default: the WorkerSettings default, "
                             f"{_settings_default('max_batch_users')})")
    parser.add_argument("--recompute-interval-ms", type=int, default=_settings_default("recompute_interval_ms"),
                        help="worker recompute_interval_ms, the coalescing window (default: the WorkerSettings "
                             f"default, {_settings_default('recompute_interval_ms')})")
    parser.add_argument("--artifact-dir", type=Path, default=None,
                        help="exported model to serve (default: train+export a small one with "
                             "bench_encoder.build_artifact, one epoch: ~5 s)")
    parser.add_argument("--seed", type=int, default=3, help="seed of the user and event draws (default 3)")
    return parser.parse_args(argv)


@dataclass(frozen=True)
class Catalogue:
    """What events are made of: user ids (by rank), their Zipf draw CDF, items, ads, queries, actions."""

    user_ids: list[str]
    cdf: np.ndarray
    items: list[str]
    ads: list[str]
    queries: list[str]
    feed_actions: tuple[str, ...]
    ads_actions: tuple[str, ...]

    @classmethod
    def build(cls, users: int, zipf_s: float) -> Catalogue:
        from typing import get_args

        from encoders.data.synthetic import TOPICS, ad_ids, feed_item_ids
        from streams.events import AdsAction, FeedAction

        weights = 1.0 / np.arange(1, users + 1, dtype=np.float64) ** zipf_s
        user_ids = [f"zu{rank:06d}" for rank in range(1, users + 1)]
        queries = [f"{a} {b}" for words in TOPICS.values() for a, b in itertools.combinations(words, 2)]
        return cls(user_ids=user_ids, cdf=np.cumsum(weights) / weights.sum(),
                   items=feed_item_ids(), ads=ad_ids(), queries=queries,
                   feed_actions=get_args(FeedAction), ads_actions=get_args(AdsAction))

    @property
    def top_share(self) -> float:
        """The share of all events that go to the most active user."""
        return float(self.cdf[0])


@dataclass(frozen=True)
class Plan:
    """One step's messages, encoded before it starts."""

    rate: float
    messages: list[Outgoing]
    active_users: int


def draw_events(cat: Catalogue, rng: np.random.Generator, n: int, rate: float,
                prefix: str) -> Iterator[tuple[str, dict]]:
    """``n`` ``(scenario, wire event)`` pairs: Zipf users, the scenario mix, ``ts_ms`` paced from now."""
    users = np.minimum(np.searchsorted(cat.cdf, rng.random(n), side="right"), len(cat.user_ids) - 1).tolist()
    bounds = np.cumsum(list(SCENARIO_SHARES.values()))[:-1]
    scenarios = np.searchsorted(bounds, rng.random(n), side="right").tolist()
    picks, actions = rng.integers(0, 1 << 30, size=n).tolist(), rng.integers(0, 1 << 30, size=n).tolist()
    dwell_ms = rng.exponential(8000, size=n).astype(np.int64).tolist()
    names = list(SCENARIO_SHARES)
    now_ms = int(time.time() * 1000)
    for i in range(n):
        base = {"event_id": f"{prefix}{i}", "user_id": cat.user_ids[users[i]], "ts_ms": now_ms + int(i * 1000 / rate)}
        pick, action, scenario = picks[i], actions[i], names[scenarios[i]]
        if scenario == "feed":
            base |= {"item_id": cat.items[pick % len(cat.items)], "dwell_ms": dwell_ms[i],
                     "action": cat.feed_actions[action % len(cat.feed_actions)]}
        elif scenario == "search":
            clicked = action % 10 < 6
            base |= {"query": cat.queries[pick % len(cat.queries)],
                     "clicked_item_id": cat.items[pick % len(cat.items)] if clicked else None,
                     "position": action % 10 if clicked else None}
        else:
            ad = cat.ads[pick % len(cat.ads)]
            base |= {"ad_id": ad, "creative_id": f"{ad}_c{action % 3}",
                     "action": cat.ads_actions[action % len(cat.ads_actions)]}
        yield scenario, base


def plan_step(cat: Catalogue, rng: np.random.Generator, topics, rate: float, step_s: float,  # noqa: ANN001
              prefix: str) -> Plan:
    """Draw and encode a step's messages (topic, key = user id, msgpack value)."""
    from streams.events import encode_event

    n = int(rate * step_s)
    topic_of = {s: topics.for_scenario(s) for s in SCENARIO_SHARES}
    messages = [(topic_of[s], e["user_id"].encode(), encode_event(e))
                for s, e in tqdm(draw_events(cat, rng, n, rate, prefix), total=n, desc=f"  encode {rate:,.0f}/s",
                                 unit="ev", leave=False)]
    return Plan(rate, messages, len({key for _, key, _ in messages}))


@dataclass
class Progress:
    """What the worker finished (written by its ``on_batch`` hook, on the worker thread)."""

    messages: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    done: threading.Condition = field(default_factory=threading.Condition)

    def take_latencies(self) -> list[float]:
        """The latencies gathered since the last call; starts a new gathering."""
        with self.done:
            out, self.latencies_ms = self.latencies_ms, []
        return out


def batch_observer(progress: Progress, metrics):  # noqa: ANN001, ANN201 - the worker's on_batch hook
    """An ``on_batch`` hook counting finished messages and moving the worker's latency samples into
    ``progress`` (on the worker's thread: no race with the worker appending, no window overflow)."""

    def observe(messages, result, started: float, finished: float) -> None:  # noqa: ANN001
        samples = metrics.latency_samples_ms()
        metrics.clear_latency_samples()
        with progress.done:
            progress.messages += len(messages)
            progress.latencies_ms.extend(samples)
            progress.done.notify_all()

    return observe


@dataclass(frozen=True)
class Produced:
    """A produced step: duration, samples (seconds from its start, produced, consumed since its start), CPU."""

    produce_s: float
    samples: list[tuple[float, int, int]]
    thread_cpu_s: float
    process_cpu_s: float

    @property
    def produced(self) -> int:
        return self.samples[-1][1]

    @property
    def consumed(self) -> int:
        return self.samples[-1][2]

    @property
    def lag_end(self) -> int:
        return self.samples[-1][1] - self.samples[-1][2]

    def lag_growth(self) -> float:
        """Lag growth, events/s: slope of the least-squares line through the second half's samples."""
        half = [(t, p - c) for t, p, c in self.samples if t >= self.produce_s / 2]
        if len(half) < 2:
            return float("nan")
        t, lag = np.array(half, dtype=np.float64).T
        return float(np.polyfit(t, lag, 1)[0])


def produce_step(producer, plan: Plan, progress: Progress) -> Produced:  # noqa: ANN001 - KafkaProducer
    """Send the plan's messages paced at its rate, sampling lag every ``SAMPLE_S``; then flush."""
    messages, rate, produce = plan.messages, plan.rate, producer.produce
    start_consumed = progress.messages
    bar = tqdm(total=len(messages), desc=f"  produce {rate:,.0f}/s", unit="ev", leave=False)
    cpu0, process_cpu0 = time.thread_time(), time.process_time()
    start = time.perf_counter()
    samples = [(0.0, 0, 0)]
    next_sample = start + SAMPLE_S
    for i, (topic, key, value) in enumerate(messages):
        now = time.perf_counter()
        ahead_s = start + i / rate - now
        if ahead_s > 0.001:
            time.sleep(ahead_s)
            now = time.perf_counter()
        if now >= next_sample:
            samples.append((now - start, i, progress.messages - start_consumed))
            bar.update(i - bar.n)
            next_sample += SAMPLE_S
        produce(topic, value, key=key)
    end = time.perf_counter()
    samples.append((end - start, len(messages), progress.messages - start_consumed))
    cpu = time.thread_time() - cpu0, time.process_time() - process_cpu0
    bar.close()
    producer.flush()
    return Produced(end - start, samples, *cpu)


def wait_caught_up(progress: Progress, first: int, target: int, dirty_users, timeout_s: float,  # noqa: ANN001
                   errors: list[BaseException]) -> float | None:
    """Seconds until the worker finished ``target`` messages (``first`` of them before the step) and
    no user waits for its recompute window (all in Redis); None when not within ``timeout_s``."""
    started = time.monotonic()
    with tqdm(total=target - first, desc="  catch up", unit="ev", leave=False) as bar:
        while progress.messages < target or dirty_users() > 0:  # the gauge is read outside the hook's lock
            if errors:
                raise errors[0]
            left = started + timeout_s - time.monotonic()
            if left <= 0:
                return None
            with progress.done:
                progress.done.wait(min(left, 0.2))
            bar.update(min(progress.messages, target) - first - bar.n)
    return time.monotonic() - started


@dataclass(frozen=True)
class StepResult:
    rate: float
    active_users: int
    produced: Produced
    latencies_ms: list[float]
    users_recomputed: int
    model_calls: int
    catch_up_s: float | None

    def latency(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")

    @property
    def verdict(self) -> str:
        problems = []
        if not self.produced.lag_growth() < FLAT_GROWTH_SHARE * self.rate:
            problems.append("lag grows")
        if not self.latencies_ms:
            problems.append("no latency observed")
        elif self.latency(99) > P99_TARGET_MS:
            problems.append("p99 > 1 s")
        if self.catch_up_s is None:
            problems.append("saturated")
        return ", ".join(problems) or "flat"


def run_step(worker, producer, plan: Plan, progress: Progress, errors: list[BaseException],  # noqa: ANN001
             args: argparse.Namespace) -> StepResult:
    """Produce one planned step, wait for the worker to catch up, and read what it did meanwhile."""
    dirty_users = lambda: worker.metrics.registry.get_sample_value("unistate_dirty_users") or 0  # noqa: E731
    before = worker.metrics.snapshot()
    progress.take_latencies()
    first = progress.messages
    produced = produce_step(producer, plan, progress)
    catch_up_s = wait_caught_up(progress, first, first + len(plan.messages), dirty_users, args.drain_timeout_s,
                                errors)
    after = worker.metrics.snapshot()
    return StepResult(plan.rate, plan.active_users, produced, progress.take_latencies(),
                      after.users_updated - before.users_updated, after.model_calls - before.model_calls,
                      catch_up_s)


@dataclass(frozen=True)
class Sweep:
    """The warm-up (None when skipped), the steps run, and the dead letters of the whole run."""

    warmup: StepResult | None
    steps: list[StepResult]
    dead_letters: dict[str, int]


def sweep(servers: tuple, encoder, artifact: Path, cat: Catalogue, args: argparse.Namespace) -> Sweep:  # noqa: ANN001
    """Warm-up, then every rate in turn on one worker; stops after a step (or a warm-up) it could
    not catch up from."""
    from confluent_kafka.admin import AdminClient

    from streams.app import build_worker
    from streams.devservers.background import running
    from streams.devservers.servers import BROKER_CONSUMER_OPTIONS
    from streams.producer import KafkaProducer
    from streams.settings import KafkaSettings, ModelSettings, RedisSettings
    from streams.topics import TopicNames, create_topics

    broker, redis_server = servers
    unique = f"l{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap, group_id=unique, topic_prefix=f"{unique}.",
                          consumer_options=dict(BROKER_CONSUMER_OPTIONS))
    topics = TopicNames.from_prefix(kafka.topic_prefix)
    create_topics(AdminClient(kafka.admin_config()), topics, args.partitions, 1)
    worker = build_worker(kafka, RedisSettings(url=redis_server.url, key_prefix=unique),
                          ModelSettings(artifact_dir=artifact), worker_settings(args), encoder=encoder)
    progress = Progress()
    worker.parts.on_batch = batch_observer(progress, worker.metrics)
    rng = np.random.default_rng(args.seed)
    warmup, results = None, []
    with ExitStack() as stack:
        producer = stack.enter_context(KafkaProducer(kafka.producer_config()))
        errors = stack.enter_context(running(worker))
        if args.warmup_s > 0:
            plan = plan_step(cat, rng, topics, args.rates[0], args.warmup_s, f"{unique}-w-")
            warmup = run_step(worker, producer, plan, progress, errors, args)
        last = warmup
        for k, rate in enumerate(tqdm(args.rates, desc="rates", unit="step")):
            if last is not None and last.catch_up_s is None:
                break
            plan = plan_step(cat, rng, topics, rate, args.step_s, f"{unique}-{k}-")
            last = run_step(worker, producer, plan, progress, errors, args)
            results.append(last)
    return Sweep(warmup, results, worker.metrics.snapshot().dead_letters)


def worker_settings(args: argparse.Namespace):  # noqa: ANN201 - streams.settings.WorkerSettings
    from streams.settings import WorkerSettings

    return WorkerSettings(max_batch_users=args.max_batch_users, recompute_interval_ms=args.recompute_interval_ms)


def table(results: list[StepResult], rates: list[float]) -> str:
    out = ["| rate ev/s | produced ev/s | consumed ev/s | lag at end | lag growth ev/s | p50 ms | p99 ms | max ms "
           "| users recomputed | model calls | users/call | verdict |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        p = r.produced
        out.append(f"| {r.rate:,.0f} | {p.produced / p.produce_s:,.0f} | {p.consumed / p.produce_s:,.0f} "
                   f"| {p.lag_end:,} | {p.lag_growth():,.0f} | {r.latency(50):.0f} | {r.latency(99):.0f} "
                   f"| {r.latency(100):.0f} | {r.users_recomputed:,} | {r.model_calls:,} "
                   f"| {r.users_recomputed / max(r.model_calls, 1):.1f} | **{r.verdict}** |")
    for rate in rates[len(results):]:
        out.append(f"| {rate:,.0f} | – | – | – | – | – | – | – | – | – | – | not run |")
    out += ["", "| rate ev/s | users active | latency obs. | producer thread CPU (of one core) "
                "| process CPU (all threads) | catch-up s |",
            "|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        p = r.produced
        catch_up = f"{r.catch_up_s:.1f}" if r.catch_up_s is not None else "> timeout"
        out.append(f"| {r.rate:,.0f} | {r.active_users:,} | {len(r.latencies_ms):,} "
                   f"| {p.thread_cpu_s / p.produce_s:.0%} | {p.process_cpu_s / p.produce_s:.0%} | {catch_up} |")
    return "\n".join(out)


def machine(load_at_start: tuple[float, float, float]) -> str:
    """``bench_merge.machine()`` plus the libraries this benchmark leans on and the load before it ran."""
    import confluent_kafka
    import onnxruntime
    from bench_merge import machine as base_machine

    return (f"{base_machine()}, onnxruntime {onnxruntime.__version__}, confluent-kafka "
            f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]}), "
            f"load average before the run {' '.join(f'{v:.2f}' for v in load_at_start)}")


def setup_line(args: argparse.Namespace, cat: Catalogue, encoder) -> str:  # noqa: ANN001
    config, settings = encoder.manifest.config, worker_settings(args)
    mix = "/".join(f"{share:.0%} {s}" for s, share in SCENARIO_SHARES.items())
    return (f"{args.users:,} users, Zipf s={args.zipf_s} (top user {cat.top_share:.1%} of events), {mix}; "
            f"{args.partitions} partitions; steps of {args.step_s:g} s after a {args.warmup_s:g} s warm-up; "
            f"model d_model={config.d_model} n_layers={config.n_layers} dim={config.dim} max_len={config.max_len} "
            f"n_items={config.n_items} on ONNX Runtime CPU; WorkerSettings max_batch_messages="
            f"{settings.max_batch_messages} consume_wait_ms={settings.consume_wait_ms} max_batch_users="
            f"{settings.max_batch_users} recompute_interval_ms={settings.recompute_interval_ms} "
            f"recompute_max_events={settings.recompute_max_events}")


def warmup_line(warmup: StepResult) -> str:
    caught_up = (f"caught up {warmup.catch_up_s:.1f} s after its last send (group join included)"
                 if warmup.catch_up_s is not None else "NOT caught up: the sweep did not run")
    return (f"warm-up (not in the table): {warmup.produced.produced:,} events at {warmup.rate:,.0f}/s, "
            f"{warmup.active_users:,} users, {caught_up}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_at_start = os.getloadavg()
    logging.basicConfig(level=logging.ERROR)  # the DLQ warns per dead letter; they are counted below
    from bench_encoder import artifact_or_build

    from encoders.serving import InterestEncoder
    from streams.devservers.servers import start_broker, start_redis

    cat = Catalogue.build(args.users, args.zipf_s)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unistate-bench-load-")))
        artifact = artifact_or_build(tmp, args.artifact_dir)
        encoder = InterestEncoder.load(artifact, providers=["CPUExecutionProvider"])
        servers = stack.enter_context(start_broker()), stack.enter_context(start_redis())
        run = sweep(servers, encoder, artifact, cat, args)
    print(f"## bench_load\n\n{setup_line(args, cat, encoder)}\n\n{machine(load_at_start)}\n")
    if run.warmup is not None:
        print(f"{warmup_line(run.warmup)}\n")
    print(table(run.steps, args.rates))
    if run.dead_letters:
        print(f"\nERROR: the worker dead-lettered generated events: {dict(sorted(run.dead_letters.items()))}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
