"""Consumer lag per assigned partition, read from librdkafka's statistics (``stats_cb``)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import Gauge

__all__ = ["ConsumerLag", "brokers_up", "partition_lags"]

logger = logging.getLogger(__name__)


def partition_lags(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """``(topic, partition) → lag`` for the partitions this consumer is assigned.

    librdkafka's ``consumer_lag`` is the end offset (the last stable one under read_committed)
    minus the group's committed offset; it is -1 until the group committed on that partition.
    Such a partition counts 0 when it holds no message (low offset = end offset) and is left out
    otherwise (unknown, not zero).
    """
    lags = {}
    for topic, topic_stats in stats.get("topics", {}).items():
        for part in topic_stats.get("partitions", {}).values():
            partition = int(part.get("partition", -1))
            if partition < 0 or not part.get("desired"):
                continue
            lag = _lag(part)
            if lag is not None:
                lags[(topic, partition)] = lag
    return lags


def brokers_up(stats: dict[str, Any]) -> bool:
    """Whether the consumer holds a connection to at least one broker (bootstrap entries aside)."""
    return any(b.get("state") == "UP" for b in stats.get("brokers", {}).values() if int(b.get("nodeid", -1)) >= 0)


def _lag(part: dict[str, Any]) -> int | None:
    lag = int(part.get("consumer_lag", -1))
    if lag >= 0:
        return lag
    low, end = int(part.get("lo_offset", -1)), int(part.get("ls_offset", part.get("hi_offset", -1)))
    return 0 if 0 <= low == end else None


class ConsumerLag:
    """Keeps ``unistate_consumer_lag{topic,partition}`` equal to the latest statistics.

    librdkafka emits statistics every ``statistics.interval.ms`` from inside ``consume()``, so the
    gauge is refreshed every few seconds, never per message. Partitions that left the assignment
    lose their series.
    """

    def __init__(self, gauge: Gauge, on_brokers: Callable[[bool], None] | None = None) -> None:
        self._gauge = gauge
        #: Called with each statistics' verdict of ``brokers_up`` (readiness while idle).
        self._on_brokers = on_brokers
        self._lock = threading.Lock()
        self._lags: dict[tuple[str, int], int] = {}
        self.updates = 0

    def on_stats(self, stats_json: str) -> None:
        """The consumer's ``stats_cb``: parse the statistics and update the gauge."""
        try:
            stats = json.loads(stats_json)
            lags = partition_lags(stats)
            up = brokers_up(stats)
        except (ValueError, TypeError, AttributeError) as exc:
            logger.warning("unreadable librdkafka statistics error=%s", exc)
            return
        if self._on_brokers is not None:
            self._on_brokers(up)
        with self._lock:
            for topic, partition in self._lags.keys() - lags.keys():
                self._gauge.remove(topic, str(partition))
            for (topic, partition), lag in lags.items():
                self._gauge.labels(topic, str(partition)).set(lag)
            self._lags = lags
            self.updates += 1

    def total(self) -> int | None:
        """The summed lag of the assigned partitions; None before any is known."""
        with self._lock:
            return sum(self._lags.values()) if self._lags else None
