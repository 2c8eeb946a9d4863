"""Merge-path benchmark: the worker's own decode + apply on synthetic encoded messages, in-process.

No broker and no Redis: synthetic events (``encoders.data.synthetic.generate_events``) are encoded
with ``streams.events.encode_event`` into ``confluent_kafka.Message`` objects built in-process
(topic, partition, offset, key, value, CreateTime timestamp), cut into batches of ``--batch``
messages and fed to ``Worker._decode`` and ``Worker._apply`` of a worker built with inert parts
whose sequence cache holds every user (empty, as a warm worker with new users would). That is the
path consume → decode → validate → apply → changed users, metrics included; recompute and publish
are not part of it.

In the same run, interleaved repeat by repeat, the same message values go through

- **msgspec typed decode alone**: ``msgspec.msgpack.Decoder(struct).decode`` into structs that
  declare the whole schema as msgspec constraints (``streams.fast_decode``'s structs with the ids'
  no-control-characters rule as a msgspec ``pattern``): the baseline of issue #10's ratio;
- the same into ``streams.fast_decode``'s own structs (the id rule left to Python, as the worker
  checks it), shown for reference;
- **msgpack.unpackb alone**: ``msgpack.unpackb(value, raw=False, strict_map_key=True)``;

and every figure is also given as a ratio of the first and the last.

    .venv/bin/python benchmarks/bench_merge.py            # defaults: about 20 s on 2 cores
    .venv/bin/python benchmarks/bench_merge.py --help
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import platform
import statistics
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import msgpack
import msgspec
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from msgspec import Meta

from streams.events import MAX_ID_CHARS
from streams.fast_decode import WIRE_TYPES, AdsWire, FeedWire, SearchWire

SPAN_MS = 30 * 86_400_000
PatternId = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS, pattern=r"\A[^\x00-\x1f\x7f]+\Z")]


class FeedSchema(FeedWire):
    """``FeedWire`` with every id rule declared to msgspec."""

    event_id: PatternId
    user_id: PatternId
    item_id: PatternId


class SearchSchema(SearchWire):
    """``SearchWire`` with every id rule declared to msgspec."""

    event_id: PatternId
    user_id: PatternId
    clicked_item_id: PatternId | None | msgspec.UnsetType = msgspec.UNSET


class AdsSchema(AdsWire):
    """``AdsWire`` with every id rule declared to msgspec."""

    event_id: PatternId
    user_id: PatternId
    ad_id: PatternId
    creative_id: PatternId | None | msgspec.UnsetType = msgspec.UNSET


SCHEMA_TYPES = {"feed": FeedSchema, "search": SearchSchema, "ads": AdsSchema}


class NullProducer:
    """Accepts dead letters and drops them (a valid stream has none)."""

    def __init__(self) -> None:
        self.produced = 0

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None, **_: object) -> None:
        self.produced += 1


@dataclass
class Sample:
    """Seconds spent by each measured path in one repeat."""

    decode_s: float
    apply_s: float
    msgspec_s: float
    wire_s: float
    unpackb_s: float

    @property
    def merge_s(self) -> float:
        return self.decode_s + self.apply_s


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1000, help="synthetic users (default 1000)")
    parser.add_argument("--mean-events", type=int, default=100,
                        help="mean events per user (default 100: about 100k events in all)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per input topic (default 4)")
    parser.add_argument("--batch", type=int, default=500,
                        help="messages per worker batch (default 500, the WorkerSettings default)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed repeats of each path, interleaved; the median is reported (default 5)")
    parser.add_argument("--no-gc", action="store_true",
                        help="disable Python's cyclic garbage collector while timing (shows its share; the "
                             "worker runs with it on)")
    parser.add_argument("--seed", type=int, default=3)
    return parser.parse_args(argv)


#: What one message is built from: topic, partition, offset, key, value, CreateTime (ms).
Record = tuple[str, int, int, bytes, bytes, int]


def build_records(args: argparse.Namespace, topic_of: dict[str, str]) -> list[Record]:
    """The synthetic stream, shifted to end a minute ago, in consumption order."""
    from encoders.data.synthetic import generate_events
    from streams.events import encode_event

    start_ms = int(time.time() * 1000) - SPAN_MS - 60_000
    offsets: Counter[tuple[str, int]] = Counter()
    records = []
    for scenario, wire in generate_events(args.users, seed=args.seed, start_ms=start_ms, span_ms=SPAN_MS,
                                          mean_events=args.mean_events):
        topic, key = topic_of[scenario], wire["user_id"].encode()
        partition = zlib.crc32(key) % args.partitions
        records.append((topic, partition, offsets[topic, partition], key, encode_event(wire), wire["ts_ms"]))
        offsets[topic, partition] += 1
    return records


def to_messages(records: list[Record]) -> list[Message]:
    """One consumed batch: ``confluent_kafka.Message`` objects, as the consumer hands them over."""
    return [Message(topic=topic, partition=partition, offset=offset, key=key, value=value,
                    timestamp=(TIMESTAMP_CREATE_TIME, ts_ms))
            for topic, partition, offset, key, value, ts_ms in records]


def build_worker():  # noqa: ANN201 - streams.worker.Worker, imported late
    """A worker whose parts are inert: nothing here connects (Redis, Kafka) or encodes."""
    import redis

    from state.keys import RedisKeys
    from streams.topics import TopicNames
    from streams.worker import Worker, WorkerParts

    parts = WorkerParts(consumer=None, producer=NullProducer(), redis_client=redis.Redis(port=1), encoder=object(),
                        policy=object(), topics=TopicNames.from_prefix("bench."), keys=RedisKeys("bench"),
                        ttl_s=3600)
    return Worker(parts)


def warm_cache(worker, user_ids: list[str]) -> None:  # noqa: ANN001
    """Every user cached with an empty sequence, as if loaded from Redis as new users."""
    from state.sequence import UserSequence

    worker._cache = worker._new_cache()
    for user_id in user_ids:
        worker._cache.put(UserSequence(user_id, worker.parts.state_config))


def time_merge(worker, batches: list[list[Record]], user_ids: list[str]) -> tuple[float, float, Counter]:  # noqa: ANN001
    """Seconds in ``Worker._decode`` and in ``Worker._apply`` over every batch, and their outcomes.
    Each batch's messages are built just before it (untimed) and dropped after it, so only one
    batch of them is alive at a time, as in the worker."""
    from streams.worker import BatchResult

    warm_cache(worker, user_ids)
    decode_s = apply_s = 0.0
    outcomes: Counter[str] = Counter()
    for records in batches:
        batch = to_messages(records)
        result = BatchResult(messages=len(batch))
        t0 = time.perf_counter()
        decoded = worker._decode(batch, result)
        t1 = time.perf_counter()
        worker._apply(decoded, result)
        t2 = time.perf_counter()
        worker._dirty.clear()  # published, as the recompute step would (not part of the merge path)
        decode_s, apply_s = decode_s + t1 - t0, apply_s + t2 - t1
        outcomes.update(decoded=len(decoded), dead_letters=result.dead_letters, duplicates=result.duplicates,
                        stale=result.stale)
    return decode_s, apply_s, outcomes


def time_each(values_by_scenario: dict[str, list[bytes]], decode: Callable[[str], Callable[[bytes], object]]) -> float:
    """Seconds to run ``decode(scenario)`` over every value of each scenario."""
    total = 0.0
    for scenario, values in values_by_scenario.items():
        fn = decode(scenario)
        t0 = time.perf_counter()
        for value in values:
            fn(value)
        total += time.perf_counter() - t0
    return total


def machine() -> str:
    """One line about where and when this ran."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return (f"nproc={len(os.sched_getaffinity(0))}, CPU model `{model}`, Python {platform.python_version()}, "
            f"msgspec {msgspec.__version__}, msgpack {'.'.join(map(str, msgpack.version))}, "
            f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")


def row(name: str, n: int, seconds: list[float], msgspec_rate: float, unpackb_rate: float) -> str:
    rates = sorted(n / s for s in seconds)
    median = statistics.median(rates)
    return (f"| {name} | {median:,.0f} ({rates[0]:,.0f}–{rates[-1]:,.0f}) | {median / msgspec_rate:.1%} "
            f"| {median / unpackb_rate:.1%} |")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    worker = build_worker()
    topic_of = {scenario: topic for topic, scenario in worker._scenario_of.items()}
    records = build_records(args, topic_of)
    n = len(records)
    batches = [records[i : i + args.batch] for i in range(0, n, args.batch)]
    user_ids = sorted({key.decode() for _, _, _, key, _, _ in records})
    values: dict[str, list[bytes]] = {}
    for topic, _, _, _, value, _ in records:
        values.setdefault(worker._scenario_of[topic], []).append(value)
    schema_decoders = {s: msgspec.msgpack.Decoder(t).decode for s, t in SCHEMA_TYPES.items()}
    wire_decoders = {s: msgspec.msgpack.Decoder(t).decode for s, t in WIRE_TYPES.items()}

    samples, outcomes = [], Counter()
    if args.no_gc:
        gc.disable()
    for _ in range(args.repeats):
        decode_s, apply_s, outcomes = time_merge(worker, batches, user_ids)
        msgspec_s = time_each(values, schema_decoders.__getitem__)
        wire_s = time_each(values, wire_decoders.__getitem__)
        unpackb_s = time_each(values, lambda _s: lambda v: msgpack.unpackb(v, raw=False, strict_map_key=True))
        samples.append(Sample(decode_s, apply_s, msgspec_s, wire_s, unpackb_s))
        print(f"repeat {len(samples)}: merge {n / samples[-1].merge_s:,.0f}/s", file=sys.stderr)

    msgspec_rate = statistics.median(n / s.msgspec_s for s in samples)
    unpackb_rate = statistics.median(n / s.unpackb_s for s in samples)
    print(f"## bench_merge\n\n{machine()}\n\n{len(user_ids)} users, {n:,} messages "
          f"({', '.join(f'{s} {len(v):,}' for s, v in values.items())}), batches of {args.batch}, "
          f"{args.repeats} repeats (median, min–max){', cyclic GC disabled' if args.no_gc else ''}\n")
    print("| path | events/s | × msgspec typed decode | × msgpack.unpackb |\n|---|---:|---:|---:|")
    print(row("**merge path** (`_decode` + `_apply`)", n, [s.merge_s for s in samples], msgspec_rate, unpackb_rate))
    print(row("… `_decode` alone", n, [s.decode_s for s in samples], msgspec_rate, unpackb_rate))
    print(row("… `_apply` alone", n, [s.apply_s for s in samples], msgspec_rate, unpackb_rate))
    print(row("msgspec typed decode alone", n, [s.msgspec_s for s in samples], msgspec_rate, unpackb_rate))
    print(row("… into `fast_decode` structs (id rule not in msgspec)", n, [s.wire_s for s in samples],
              msgspec_rate, unpackb_rate))
    print(row("`msgpack.unpackb` alone", n, [s.unpackb_s for s in samples], msgspec_rate, unpackb_rate))
    print(f"\noutcomes of the last repeat: {dict(outcomes)}")
    if outcomes["decoded"] != n or outcomes["dead_letters"] or outcomes["duplicates"] or outcomes["stale"]:
        print("ERROR: every synthetic message should decode and be applied once")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
