"""``unistate replay``: events from a file or a known dataset, checked as the worker decodes them,
paced and produced to the input topics in event-time order, then a summary."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from encoders.evaluation.datasets.registry import DATASETS
from state.records import Behavior
from streams.cli.event_records import Record, dataset_records, file_records, wire_event
from streams.cli.exit_codes import ExitCode
from streams.cli.schedule import Pacer, send_offsets_s
from streams.cli.stream_commands import common_options, kafka_settings
from streams.errors import PoisonMessageError
from streams.events import EventLimits, decode_event, encode_event
from streams.producer import KafkaProducer
from streams.settings import WorkerSettings
from streams.topics import TopicNames

__all__ = ["Checked", "ReadyEvent", "check_records", "format_summary", "register", "send_events"]


@dataclass(frozen=True)
class ReadyEvent:
    """One event that passed the worker's decoding: its topic's scenario, key, value and event time,
    and the ``Behavior`` the worker decodes from it (what ``unistate backfill`` applies)."""

    scenario: str
    key: bytes
    value: bytes
    ts_ms: int
    behavior: Behavior


@dataclass
class Checked:
    """What checking the records found: the valid events, and the rejects by reason (with a first example)."""

    events: list[ReadyEvent] = field(default_factory=list)
    rejected: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    @property
    def read(self) -> int:
        """Records read, valid or not."""
        return len(self.events) + sum(self.rejected.values())


def _ready(where: str, record: Any, limits: EventLimits, now_ms: int) -> ReadyEvent:
    scenario, wire = wire_event(record, where)
    try:
        value = encode_event(wire)
    except (TypeError, ValueError) as exc:  # e.g. a Parquet timestamp column msgpack cannot hold
        raise PoisonMessageError("encode_error", f"cannot encode as msgpack: {exc}") from exc
    user_id = wire.get("user_id")
    key = user_id.encode() if isinstance(user_id, str) else None
    behavior = decode_event(scenario, key, value, now_ms, limits)  # the worker's decoding and validation
    return ReadyEvent(scenario, key or b"", value, behavior.ts_ms, behavior)


def check_records(records: Iterable[Record], limits: EventLimits, now_ms: int) -> Checked:
    """Convert and validate every record exactly as the worker's decoder would; valid events are
    returned sorted by event time (stable), rejects are counted by dead-letter reason."""
    checked = Checked()
    for where, record in records:
        try:
            checked.events.append(_ready(where, record, limits, now_ms))
        except PoisonMessageError as exc:
            checked.rejected[exc.reason] += 1
            checked.examples.setdefault(exc.reason, f"{where}: {exc.detail}")
    checked.events.sort(key=lambda e: e.ts_ms)
    return checked


def send_events(
    producer: KafkaProducer, topics: TopicNames, events: Sequence[ReadyEvent], offsets_s: Sequence[float] | None,
    event_time: bool = True, progress: bool = True,
) -> Counter[str]:
    """Produce ``events`` on schedule (key = user id; CreateTime = event time or now), flush, and
    return the counts per scenario."""
    counts: Counter[str] = Counter()
    pacer = Pacer(offsets_s)
    for i, event in enumerate(tqdm(events, total=len(events), unit="ev", desc="replay", disable=not progress)):
        pacer.wait(i)
        producer.produce(topics.for_scenario(event.scenario), key=event.key, value=event.value,
                         timestamp_ms=event.ts_ms if event_time else None)
        counts[event.scenario] += 1
    producer.flush()
    return counts


def _counts(counts: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def format_summary(checked: Checked, produced: Counter[str] | None, elapsed_s: float) -> str:
    """The end-of-run report; ``produced`` is ``None`` for a dry run."""
    sent = sum(produced.values()) if produced is not None else 0
    lines = [
        f"{'dry run: ' if produced is None else ''}{checked.read} records read, {len(checked.events)} valid, "
        f"{sum(checked.rejected.values())} rejected",
        f"produced per scenario: {_counts(produced)}" if produced is not None
        else f"valid per scenario (nothing produced): {_counts(Counter(e.scenario for e in checked.events))}",
        f"rejected by reason (the worker would dead-letter them; not produced): {_counts(checked.rejected)}",
        *(f"  {reason}, first: {example}" for reason, example in sorted(checked.examples.items())),
        f"elapsed {elapsed_s:.1f} s" + (f", {sent / elapsed_s:.0f} events/s" if sent and elapsed_s > 0 else ""),
    ]
    return "\n".join(lines)


def _cmd_replay(args: argparse.Namespace) -> int:
    started = time.monotonic()
    records = dataset_records(args.dataset, args.root) if args.dataset else file_records(args.file)
    worker = WorkerSettings()
    checked = check_records(records, EventLimits(worker.max_message_bytes, worker.max_future_skew_ms),
                            int(time.time() * 1000))
    produced = None
    if not args.dry_run:
        kafka = kafka_settings(args)
        offsets_s = send_offsets_s([e.ts_ms for e in checked.events], args.rate, args.speedup)
        with KafkaProducer(kafka.producer_config(), kafka.flush_timeout_s) as producer:
            produced = send_events(producer, TopicNames.from_prefix(kafka.topic_prefix), checked.events, offsets_s,
                                   event_time=args.timestamp == "event", progress=not args.no_progress)
    print(format_summary(checked, produced, time.monotonic() - started))
    return ExitCode.OK


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def register(subparsers: Any) -> None:
    """Add ``unistate replay`` to the command tree."""
    p = subparsers.add_parser(
        "replay", parents=[common_options()], help="replay a file or a known dataset into the input topics",
        description="Read events (JSONL, CSV, Parquet or msgpack in the input topics' schema, or a known "
        "--dataset), check each one as the worker decodes it, and produce the valid ones in event-time "
        "order, keyed by user. Rejects are counted by dead-letter reason, not produced. See docs/replay.md.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, metavar="FILE",
                        help="events: .jsonl, .csv, .parquet or .msgpack (user_id, item_id, scenario, action, "
                        "ts_ms, optional text and event_id; wire fields such as query or ad_id also work)")
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a known dataset (../shared/data; "
                        "the scenario mapping of `unistate evaluate`)")
    p.add_argument("--root", type=Path, help="the dataset's location (default ../shared/data/<folder>)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--rate", type=_positive, metavar="EVENTS_PER_S", help="send at this steady rate")
    pace.add_argument("--speedup", type=_positive, metavar="X",
                      help="event-time pacing: the gaps between events' ts_ms divided by X")
    p.add_argument("--timestamp", choices=["event", "produce"], default="event",
                   help="Kafka message timestamp: the event's ts_ms (default) or the produce time")
    p.add_argument("--dry-run", action="store_true", help="check every event and count rejects; produce nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_replay)
