"""Prometheus metrics of the worker, on their own registry (served by ``streams.endpoints``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

__all__ = ["MetricsSnapshot", "WorkerMetrics"]

_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class MetricsSnapshot:
    """The worker's counters at one moment, as plain numbers (demo, benchmarks, tests)."""

    consumed: dict[str, int]  # messages by scenario, malformed ones included
    dead_letters: dict[str, int]  # by reason
    users_updated: int
    publish_refused: int
    unknown_items: int
    model_calls: int
    commits: int

    @property
    def consumed_total(self) -> int:
        """Messages consumed over every scenario."""
        return sum(self.consumed.values())

    @property
    def dead_letters_total(self) -> int:
        """Dead letters over every reason."""
        return sum(self.dead_letters.values())


class WorkerMetrics:
    """Every metric the worker updates; one registry per instance (tests build their own)."""

    def __init__(self, registry: CollectorRegistry | None = None, latency_samples: int = 100_000) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events_consumed = Counter(
            "unistate_events_consumed_total", "Messages consumed, by scenario.", ["scenario"],
            registry=r)
        self.events_applied = Counter(
            "unistate_events_applied_total", "Events applied to user state, by result.",
            ["scenario", "result"], registry=r)
        self.dead_letters = Counter(
            "unistate_dead_letters_total", "Messages sent to the dead-letter topic, by reason.",
            ["reason"], registry=r)
        self.users_updated = Counter(
            "unistate_users_updated_total", "User embeddings written to Redis.", registry=r)
        self.unknown_items = Counter(
            "unistate_unknown_items_total",
            "Model-input events whose item is outside the model's vocabulary (served as the "
            "unknown-item row).", registry=r)
        self.states_quarantined = Counter(
            "unistate_states_quarantined_total",
            "Stored user states that could not be decoded: kept under the quarantine key, the user "
            "restarted from an empty sequence.", registry=r)
        self.publish_refused = Counter(
            "unistate_publish_refused_total",
            "Updates Redis refused because it held a version >= ours.", registry=r)
        self.recompute_batch_users = Histogram(
            "unistate_recompute_batch_users", "Users per model call (micro-batch size).",
            buckets=_BATCH_BUCKETS, registry=r)
        self.recompute_seconds = Histogram(
            "unistate_recompute_seconds", "Model call duration per micro-batch.", registry=r)
        self.event_to_redis_seconds = Histogram(
            "unistate_event_to_redis_seconds",
            "From the message's Kafka timestamp to its user's vectors being in Redis.",
            buckets=_LATENCY_BUCKETS_S, registry=r)
        self.batch_seconds = Histogram(
            "unistate_batch_seconds", "Processing time of one consumed batch.", registry=r)
        self.commits = Counter("unistate_commits_total", "Offset commits.", registry=r)
        self.redis_retries = Counter(
            "unistate_redis_retries_total", "Redis operations retried after an error.", registry=r)
        self.notifications_resent = Counter(
            "unistate_notifications_resent_total",
            "Update notifications sent again for a stored version that was never acknowledged.",
            registry=r)
        self.batch_failures = Counter(
            "unistate_batch_failures_total",
            "Batches that failed on an unavailable dependency and were rewound for another try, "
            "by dependency.", ["dependency"], registry=r)
        self.consumption_paused = Gauge(
            "unistate_consumption_paused",
            "1 while consumption is paused because Redis or the broker is away.", registry=r)
        self.dirty_users = Gauge(
            "unistate_dirty_users",
            "Users with applied events waiting for their recompute window (not yet in Redis).", registry=r)
        self.cached_users = Gauge(
            "unistate_cached_users", "User sequences held in memory.", registry=r)
        self.cached_bytes = Gauge(
            "unistate_cached_bytes", "Estimated memory of the cached user sequences.", registry=r)
        self.consumer_lag = Gauge(
            "unistate_consumer_lag",
            "Messages behind the partition's end (last stable offset minus the group's committed "
            "offset), per assigned partition, from librdkafka statistics.",
            ["topic", "partition"], registry=r)
        self.model = Info("unistate_model", "The served model: version and embedding dimension.", registry=r)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._latency_samples_s: deque[float] = deque(maxlen=latency_samples)

    def set_model(self, model_version: str, dim: int | None) -> None:
        """Publish ``unistate_model_info{model_version=...,dim=...} 1``."""
        self.model.info({"model_version": model_version, "dim": "" if dim is None else str(dim)})

    def observe_latency(self, seconds: float) -> None:
        """Record one event→Redis latency in the histogram and in the recent-samples window."""
        self.event_to_redis_seconds.observe(seconds)
        self._latency_samples_s.append(seconds)

    def snapshot(self) -> MetricsSnapshot:
        """Current counter values (labelled counters as dicts of their non-zero labels)."""
        return MetricsSnapshot(
            consumed=self._by_label("unistate_events_consumed_total", "scenario"),
            dead_letters=self._by_label("unistate_dead_letters_total", "reason"),
            users_updated=int(self._value("unistate_users_updated_total")),
            publish_refused=int(self._value("unistate_publish_refused_total")),
            unknown_items=int(self._value("unistate_unknown_items_total")),
            model_calls=int(self._value("unistate_recompute_batch_users_count")),
            commits=int(self._value("unistate_commits_total")),
        )

    def latency_samples_ms(self) -> list[float]:
        """The most recent event→Redis latencies (ms), oldest first."""
        return [v * 1000 for v in self._latency_samples_s]

    def clear_latency_samples(self) -> None:
        """Forget the recent latency samples (e.g. after a backlog whose wait was by design)."""
        self._latency_samples_s.clear()

    def _value(self, name: str) -> float:
        return float(self.registry.get_sample_value(name) or 0.0)

    def _by_label(self, name: str, label: str) -> dict[str, int]:
        return {sample.labels[label]: int(sample.value)
                for family in self.registry.collect() for sample in family.samples
                if sample.name == name and sample.value}

    def latency_quantiles_ms(self, quantiles: tuple[float, ...] = (0.5, 0.99)) -> list[float]:
        """Exact quantiles (ms) over the most recent samples; empty when none were recorded."""
        if not self._latency_samples_s:
            return []
        samples = np.fromiter(self._latency_samples_s, dtype=np.float64)
        return [float(v) * 1000 for v in np.quantile(samples, quantiles)]

