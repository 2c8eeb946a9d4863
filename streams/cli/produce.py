"""Produces events (from the synthetic generator or a file) to the input topics, keyed by user."""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
from tqdm import tqdm

from state.records import SCENARIOS
from streams.errors import StreamsError
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.topics import TopicNames

__all__ = ["produce_events", "read_event_file", "synthetic_events"]

logger = logging.getLogger(__name__)

ScenarioEvent = tuple[str, dict[str, Any]]


def synthetic_events(n_users: int, seed: int, mean_events: int = 100) -> Iterator[ScenarioEvent]:
    """``(scenario, event)`` pairs from ``encoders.data.synthetic`` in event-time order."""
    from encoders.data.synthetic import generate_events

    return generate_events(n_users, seed=seed, mean_events=mean_events)


def _split(record: Any, where: str) -> ScenarioEvent:
    if not isinstance(record, dict) or record.get("scenario") not in SCENARIOS:
        raise StreamsError(f"{where}: each record needs a 'scenario' field, one of {list(SCENARIOS)}")
    event = dict(record)
    return str(event.pop("scenario")), event


def read_event_file(path: Path) -> Iterator[ScenarioEvent]:
    """Events from ``.jsonl`` (one JSON object per line) or ``.msgpack`` (a stream of maps),
    each with a ``scenario`` field naming its topic."""
    path = Path(path)
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise StreamsError(f"{path}:{number}: not JSON: {exc}") from exc
                    yield _split(record, f"{path}:{number}")
    elif path.suffix in (".msgpack", ".mpk"):
        with path.open("rb") as stream:
            for number, record in enumerate(msgpack.Unpacker(stream, raw=False), 1):
                yield _split(record, f"{path} record {number}")
    else:
        raise StreamsError(f"{path}: unknown event file type (use .jsonl or .msgpack)")


def produce_events(
    producer: KafkaProducer, topics: TopicNames, events: Iterable[ScenarioEvent],
    total: int | None = None, progress: bool = True,
) -> Counter[str]:
    """Send every event to its scenario's topic (key = user_id), flush, return counts per scenario.

    Event dicts are sent as given (the worker validates; a bad one lands in the DLQ).
    """
    counts: Counter[str] = Counter()
    bar = tqdm(events, total=total, unit="ev", disable=not progress, desc="produce")
    for scenario, event in bar:
        user_id = str(event.get("user_id", ""))
        producer.produce(topics.for_scenario(scenario), key=user_id.encode(), value=encode_event(event))
        counts[scenario] += 1
    producer.flush()
    logger.info("produced counts=%s", dict(counts))
    return counts
