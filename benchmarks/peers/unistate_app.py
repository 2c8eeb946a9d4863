"""The unistate contestant: the worker's own run loop, built by ``streams.app.build_worker``, with a stub encoder.

``Worker.run`` as the image runs it, with the shipped ``WorkerSettings`` defaults (batches of up to
500 messages, 50 ms consume wait, 500 ms recompute window): the confluent-kafka batch consumer,
``_decode`` (msgspec), ``_apply`` into the cached ``UserSequence``s, the dirty-user tracking of the
coalesced recompute, and a synchronous offset commit per batch. Only the model and the Redis write
are stubbed: ``StubEncoderWorker._recompute_and_publish`` records the users that are due and
publishes nothing. Redis is still read, as the worker reads it: each user not yet cached is loaded
once (one pipelined read per batch that brings new users; the redis-server given is empty).
No metrics port is bound and the throughput log is off.

    python benchmarks/peers/unistate_app.py --bootstrap HOST:PORT --topic-prefix P. --events N \\
        --group G --redis-url redis://127.0.0.1:PORT/0
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from pathlib import Path

import confluent_kafka
from confluent_kafka import Message
from merge_job import ISOLATION, Meter, base_parser, require, result_line

from state.records import ACTIONS, SCENARIOS
from state.sequence import UserSequence
from streams.app import build_worker
from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings
from streams.worker import BatchResult, Contributors, Worker, WorkerParts


class StubEncoder:
    """Satisfies the worker's start-up checks (``EncoderProtocol``); never called by the stub worker."""

    model_version = "stub"
    scenarios = SCENARIOS
    actions = ACTIONS

    def encode(self, sequences: list[object]) -> object:
        raise AssertionError("the stub worker never encodes")


class StubEncoderWorker(Worker):
    """``Worker`` whose recompute step only records the due users: no model call, no Redis write.
    ``meter.first()`` is called before each batch with messages (the first call starts the clock)."""

    def __init__(self, parts: WorkerParts, meter: Meter) -> None:
        super().__init__(parts)
        self.meter = meter
        self.changed: set[str] = set()
        self.recomputes = 0

    def process(self, messages: list[Message], everything: bool = False) -> BatchResult:
        if messages:
            self.meter.first()
        return super().process(messages, everything)

    def _recompute_and_publish(self, changed: dict[str, UserSequence], contributors: Contributors,
                               result: BatchResult) -> dict[str, int]:
        self.changed.update(changed)
        self.recomputes += len(changed)
        return {}  # nothing was written: no latency to observe, nothing to notify


def build(args: argparse.Namespace, meter: Meter) -> StubEncoderWorker:
    """The worker as ``streams.app.build_worker`` composes it, re-made as the stub-encoder subclass."""
    from streams.devservers.servers import BROKER_CONSUMER_OPTIONS

    options = {**BROKER_CONSUMER_OPTIONS, "fetch.wait.max.ms": args.fetch_wait_max_ms, "isolation.level": ISOLATION}
    kafka = KafkaSettings(bootstrap_servers=args.bootstrap, group_id=args.group, topic_prefix=args.topic_prefix,
                          consumer_options=options)
    settings = WorkerSettings(throughput_log_s=0)
    composed = build_worker(kafka, RedisSettings(url=args.redis_url, key_prefix=args.group),
                            ModelSettings(artifact_dir=Path("unused")), settings, encoder=StubEncoder())
    composed.parts.metrics_server = None  # binds no port; the registry still counts
    composed.parts.services = []  # no throughput log thread
    return StubEncoderWorker(composed.parts, meter)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", help="an (empty) redis-server the worker loads unseen users from")
    args = parser.parse_args(argv)
    if args.probe:
        print(f'{{"version": "confluent-kafka {confluent_kafka.__version__}"}}')
        return 0
    require(args, "bootstrap", "topic_prefix", "events", "group", "redis_url")
    logging.basicConfig(level=logging.ERROR)
    meter = Meter(args.events)
    worker = build(args, meter)
    tally: Counter[str] = Counter()  # what the worker did with the messages up to the N-th event
    in_process = [0.0]  # seconds inside Worker.process (decode, apply, stub, commit); the rest is consume()

    def on_batch(messages: list[Message], result: BatchResult, started: float, finished: float) -> None:
        if not messages or meter.done_at is not None:
            return
        in_process[0] += finished - started
        tally.update(added=len(messages) - result.dead_letters - result.duplicates - result.stale,
                     invalid=result.dead_letters, duplicate=result.duplicates, stale=result.stale)
        if meter.count(len(messages), finished):
            worker.stop()

    worker.parts.on_batch = on_batch
    worker.run()  # returns after the batch that completed N (the users still waiting are stub-recomputed on stop)
    print(result_line("unistate", f"confluent-kafka {confluent_kafka.__version__}", meter,
                      {"added": tally["added"], "invalid": tally["invalid"],
                       "not_added": {k: tally[k] for k in ("duplicate", "stale") if tally[k]},
                       "users_changed": len(worker.changed)},
                      batches=worker.batches, users_recomputed=worker.recomputes,
                      in_process_s=round(in_process[0], 3)))
    return 0 if meter.done_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
