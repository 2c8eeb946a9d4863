"""Produces events (from the synthetic generator or a file) to the input topics, keyed by user."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from streams.cli.event_records import ScenarioEvent, file_records, wire_event
from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.topics import TopicNames

__all__ = ["produce_events", "read_event_file", "synthetic_events"]

logger = logging.getLogger(__name__)


def synthetic_events(n_users: int, seed: int, mean_events: int = 100) -> Iterator[ScenarioEvent]:
    """``(scenario, event)`` pairs from ``encoders.data.synthetic`` in event-time order."""
    from encoders.data.synthetic import generate_events

    return generate_events(n_users, seed=seed, mean_events=mean_events)


def read_event_file(path: Path) -> Iterator[ScenarioEvent]:
    """``(scenario, wire event)`` pairs of an event file, read and converted as ``unistate replay``
    reads them (``streams.cli.event_records``: .jsonl, .csv, .parquet or .msgpack)."""
    for where, record in file_records(path):
        yield wire_event(record, where)


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
