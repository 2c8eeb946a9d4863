"""The fault suite's harness: one input stream, worker processes, snapshots of Redis, and the
comparison of a faulted run with the uninterrupted reference run over the same input."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import redis
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from fixtures.pipeline import wait_for

from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.store import SequenceStore
from streams.devservers.servers import BROKER_CONSUMER_OPTIONS, Server, free_port
from streams.dlq import HEADER_REASON
from streams.events import encode_event
from streams.notifications import decode_notification
from streams.topics import TopicNames, create_topics

REPO = Path(__file__).resolve().parents[2]
PARTITIONS = 4
SCENARIOS = ("feed", "search", "ads")

Message3 = tuple[str, bytes | None, bytes | None]  # (scenario, key, value)


def stream_events(n_users: int = 120, mean_events: int = 30, seed: int = 7,
                  duplicate_share: float = 0.03) -> tuple[list[Message3], int]:
    """A deterministic stream of valid events (users' times ascending, within the last hours)
    with a share of producer duplicates (the same event sent twice); returns it and the number
    of distinct events."""
    rng = random.Random(seed)
    base_ms = int(time.time() * 1000) - 3 * 3_600_000
    messages: list[tuple[int, Message3]] = []
    distinct = 0
    for u in range(n_users):
        user = f"user-{u:04d}"
        ts = base_ms + rng.randrange(60_000)
        for n in range(min(200, max(3, int(rng.expovariate(1 / mean_events))))):
            ts += rng.randrange(1_000, 120_000)
            scenario = rng.choices(SCENARIOS, weights=(0.7, 0.15, 0.15))[0]
            event = {"event_id": f"{user}-{n}", "user_id": user, "ts_ms": ts}
            item = f"it_{rng.randrange(200)}"
            if scenario == "feed":
                event |= {"action": rng.choice(["click", "like", "impression"]), "item_id": item}
            elif scenario == "search":
                event |= {"query": f"query {rng.randrange(50)}", "clicked_item_id": item, "position": 1}
            else:
                event |= {"action": rng.choice(["click", "impression"]), "ad_id": f"ad_{rng.randrange(40)}"}
            value = encode_event(event)
            messages.append((ts, (scenario, user.encode(), value)))
            distinct += 1
            if rng.random() < duplicate_share:
                messages.append((ts + rng.randrange(5_000), (scenario, user.encode(), value)))
    messages.sort(key=lambda pair: pair[0])
    return [m for _, m in messages], distinct


@dataclass
class UserState:
    """What the comparison looks at for one user."""

    ids: dict[str, list[str]]
    version: int
    vectors: dict[str, np.ndarray]


@dataclass
class Outcome:
    """One case's figures."""

    case: str
    events_injected: int
    faults_injected: int
    events_lost: int = 0
    events_applied_twice: int = 0
    events_unexpected: int = 0
    vectors_differing: int = 0
    notifications_missing: int = 0
    worker_exits_unexpected: int = 0
    notes: dict[str, object] = field(default_factory=dict)

    def clean(self) -> bool:
        return not (self.events_lost or self.events_applied_twice or self.events_unexpected
                    or self.vectors_differing or self.notifications_missing or self.worker_exits_unexpected)


#: Every run of this process, so a failed case's workers can be killed (``kill_leftovers``).
RUNS: list[Run] = []


def kill_leftovers() -> None:
    """SIGKILL every worker a case left running (a failed assertion skips its ``stop_all``)."""
    for run in RUNS:
        for process, _ in run.workers:
            if process.poll() is None:
                process.kill()
                process.wait(30)
    RUNS.clear()


class Run:
    """One run over the stream: its own topics, consumer group and Redis key prefix."""

    def __init__(self, broker: Server, redis_url: str, artifact: Path, workdir: Path, name: str) -> None:
        self.name = name
        self.unique = f"f{uuid.uuid4().hex[:8]}"
        self.broker = broker
        self.redis_url = redis_url
        self.artifact = artifact
        self.log = workdir / f"{name}-{self.unique}.log"
        self.names = TopicNames.from_prefix(f"{self.unique}.")
        self.keys = RedisKeys(self.unique)
        self.ends: dict[tuple[str, int], int] = {}
        self.workers: list[tuple[subprocess.Popen[bytes], bool]] = []  # (process, killed on purpose)
        self._lock = threading.Lock()
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        create_topics(admin, self.names, PARTITIONS, 1)
        RUNS.append(self)

    # --- input -------------------------------------------------------------------------------
    def produce(self, messages: list[Message3], over_s: float = 0.0) -> None:
        """Produce ``messages`` in order, spread over ``over_s`` seconds."""
        producer = Producer({"bootstrap.servers": self.broker.bootstrap, "linger.ms": 5})
        started = time.monotonic()
        for i, (scenario, key, value) in enumerate(messages):
            if over_s and i % 50 == 0:
                ahead = started + over_s * i / len(messages) - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            producer.produce(self.names.for_scenario(scenario), key=key, value=value, on_delivery=self._delivered)
            producer.poll(0)
        assert producer.flush(60) == 0, "the broker did not take the stream"

    def produce_in_background(self, messages: list[Message3], over_s: float) -> threading.Thread:
        thread = threading.Thread(target=self.produce, args=(messages, over_s), daemon=True)
        thread.start()
        return thread

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        with self._lock:  # Tansu under-reports watermarks: the ends come from delivery reports
            tp = (str(msg.topic()), int(msg.partition()))
            self.ends[tp] = max(self.ends.get(tp, 0), int(msg.offset()) + 1)

    # --- workers -----------------------------------------------------------------------------
    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("UNISTATE_")}
        env.update({
            "UNISTATE_KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "UNISTATE_KAFKA_GROUP_ID": self.unique,
            "UNISTATE_KAFKA_TOPIC_PREFIX": f"{self.unique}.",
            "UNISTATE_KAFKA_CONSUMER_OPTIONS": json.dumps(BROKER_CONSUMER_OPTIONS),
            "UNISTATE_REDIS_URL": self.redis_url,
            "UNISTATE_REDIS_KEY_PREFIX": self.unique,
            "UNISTATE_REDIS_SOCKET_TIMEOUT_S": "2",
            "UNISTATE_MODEL_ARTIFACT_DIR": str(self.artifact),
            "UNISTATE_MODEL_PROVIDERS": '["CPUExecutionProvider"]',
            "UNISTATE_WORKER_METRICS_PORT": str(free_port()),
            "UNISTATE_WORKER_MAX_BATCH_MESSAGES": "100",
            "UNISTATE_WORKER_LOG_LEVEL": os.environ.get("FAULTS_LOG_LEVEL", "INFO"),
            **extra,
        })
        return env

    def start_worker(self, **extra: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as out:
            process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO,
                                       env=self.env(**extra), stdout=out, stderr=subprocess.STDOUT)
        self.workers.append((process, bool(extra.get("UNISTATE_WORKER_FAULT_KILL_AT"))))
        return process

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker on purpose (not counted as an unexpected exit)."""
        process.send_signal(signal.SIGKILL)
        process.wait(30)
        self.workers = [(p, killed or p is process) for p, killed in self.workers]

    def unexpected_exits(self) -> int:
        """Workers that ended although nobody killed or stopped them (``stop_all`` counts the
        stopped ones that did not exit with status 0)."""
        return sum(1 for p, killed in self.workers if not killed and p.poll() is not None)

    def stop_all(self) -> int:
        """SIGTERM every live worker; returns how many did not exit with status 0."""
        live = [p for p, _ in self.workers if p.poll() is None]
        for p in live:
            p.send_signal(signal.SIGCONT)
            p.terminate()
        failed = sum(1 for p in live if p.wait(60) != 0)
        self.workers = [(p, killed or p in live) for p, killed in self.workers]
        return failed

    # --- progress and results ----------------------------------------------------------------
    def committed(self) -> dict[tuple[str, int], int]:
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": self.unique})
        try:
            tps = consumer.committed([TopicPartition(t, p) for t, p in self.ends], timeout=10)
        finally:
            consumer.close()
        return {(tp.topic, tp.partition): tp.offset for tp in tps}

    def caught_up(self) -> bool:
        done = self.committed()
        return all(done.get(tp, -1) >= end for tp, end in self.ends.items())

    def wait_caught_up(self, timeout_s: float = 240) -> None:
        def check() -> bool:
            assert self.unexpected_exits() == 0, self.log.read_text(errors="replace")[-3000:]
            return self.caught_up()

        try:
            wait_for(check, timeout_s, f"{self.name}: every offset committed")
        except AssertionError as exc:
            done = self.committed()
            behind = {f"{t}[{p}]": (done.get((t, p)), end) for (t, p), end in self.ends.items()
                      if done.get((t, p), -1) < end}
            raise AssertionError(f"{exc}; (committed, end) behind: {behind}") from None

    def wait_committed(self, at_least: int, timeout_s: float = 120) -> None:
        """Until the group committed ``at_least`` messages in all (the worker is mid-stream)."""
        wait_for(lambda: sum(max(o, 0) for o in self.committed().values()) >= at_least, timeout_s,
                 f"{self.name}: {at_least} messages committed")

    def snapshot(self, client: redis.Redis, users: list[str]) -> dict[str, UserState]:
        sequences = SequenceStore(client, self.keys).load_many(users)
        reader = EmbeddingReader(client, self.keys)
        states = {}
        for user, seq in sequences.items():
            stored = reader.get_user(user)
            states[user] = UserState(
                {s: [b.event_id for b in seq.scenario_behaviors(s)] for s in SCENARIOS}, seq.version,
                dict(stored.vectors) if stored is not None else {})
        return states

    def notifications(self) -> set[tuple[str, int]]:
        """Every ``(user, version)`` on the update topic."""
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": f"{self.unique}-n",
                             "auto.offset.reset": "earliest", "enable.partition.eof": True,
                             **BROKER_CONSUMER_OPTIONS})
        consumer.subscribe([self.names.updates])
        seen: set[tuple[str, int]] = set()
        quiet_since = time.monotonic()
        try:
            while time.monotonic() - quiet_since < 5:
                for msg in consumer.consume(500, 0.5):
                    if msg.error() is None:
                        note = decode_notification(msg.value())
                        seen.add((note.user_id, note.version))
                        quiet_since = time.monotonic()
        finally:
            consumer.close()
        return seen

    def dead_letters(self) -> Counter[str]:
        """Dead letters by reason header."""
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap, "group.id": f"{self.unique}-d",
                             "auto.offset.reset": "earliest", **BROKER_CONSUMER_OPTIONS})
        consumer.subscribe([self.names.dlq])
        reasons: Counter[str] = Counter()
        quiet_since = time.monotonic()
        try:
            while time.monotonic() - quiet_since < 5:
                for msg in consumer.consume(500, 0.5):
                    if msg.error() is None:
                        headers = dict(msg.headers() or [])
                        reasons[(headers.get(HEADER_REASON) or b"?").decode()] += 1
                        quiet_since = time.monotonic()
        finally:
            consumer.close()
        return reasons


def compare(reference: dict[str, UserState], faulted: dict[str, UserState], outcome: Outcome,
            notified: set[tuple[str, int]], skip: frozenset[str] = frozenset()) -> Outcome:
    """Fill ``outcome`` with what ``faulted`` lost, holds twice or holds extra against ``reference``."""
    for user, ref in reference.items():
        if user in skip:
            continue
        got = faulted.get(user)
        if got is None:
            outcome.events_lost += sum(len(ids) for ids in ref.ids.values())
            continue
        for scenario in SCENARIOS:
            want, have = ref.ids[scenario], got.ids[scenario]
            outcome.events_lost += len(set(want) - set(have))
            outcome.events_unexpected += len(set(have) - set(want))
            outcome.events_applied_twice += len(have) - len(set(have))
            if scenario in ref.vectors and not np.allclose(ref.vectors[scenario], got.vectors.get(scenario),
                                                           atol=1e-4):
                outcome.vectors_differing += 1
        if (user, got.version) not in notified:
            outcome.notifications_missing += 1
    return outcome
