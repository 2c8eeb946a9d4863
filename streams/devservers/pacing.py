"""Produces events at a steady rate, so latency reflects a live stream rather than a backlog."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

from tqdm import tqdm

from streams.events import encode_event
from streams.producer import KafkaProducer
from streams.topics import TopicNames

__all__ = ["produce_paced"]


def produce_paced(
    producer: KafkaProducer, topics: TopicNames, events: Sequence[tuple[str, dict[str, Any]]],
    rate_per_s: float, progress: bool = False,
) -> None:
    """Send ``(scenario, event)`` pairs at about ``rate_per_s`` (each CreateTime is its send time),
    keyed by user, then flush."""
    pause = threading.Event()
    started = time.perf_counter()
    for i, (scenario, event) in enumerate(tqdm(events, desc="live", unit="ev", leave=False,
                                               disable=not progress)):
        ahead_s = started + i / rate_per_s - time.perf_counter()
        if ahead_s > 0:
            pause.wait(ahead_s)
        producer.produce(topics.for_scenario(scenario), key=event["user_id"].encode(),
                         value=encode_event(event))
    producer.flush()
