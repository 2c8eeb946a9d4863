"""Listing, describing and deleting topics and reading partition offsets (creation: ``streams.topics``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import IsolationLevel, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, OffsetSpec

from streams.errors import KafkaUnavailableError, TopicsError
from streams.topics import partition_counts

__all__ = [
    "Partition",
    "PartitionInfo",
    "TopicInfo",
    "delete_topics",
    "describe_topics",
    "list_offsets",
    "list_topics",
    "partitions_of",
    "results",
]

logger = logging.getLogger(__name__)

K = TypeVar("K")
#: ``(topic, partition)``
Partition = tuple[str, int]


def results(futures: Mapping[K, Future[Any]], what: str, timeout_s: float) -> dict[K, Any]:
    """The results of admin-client futures; broker errors and silence become ``KafkaUnavailableError``.

    Keep the dict the admin call returned alive until here: its futures are completed through it.
    """
    out: dict[K, Any] = {}
    for key, future in futures.items():
        try:
            out[key] = future.result(timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"{what} {key}: {exc}") from exc
        except TimeoutError as exc:
            raise KafkaUnavailableError(f"{what} {key}: no answer within {timeout_s}s") from exc
    return out


def list_topics(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    """Every topic in the cluster (internal ``__*`` ones left out) and its partition count, by name."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot read cluster metadata: {exc}") from exc
    return {name: len(meta.partitions) for name, meta in sorted(metadata.topics.items())
            if meta.error is None and not name.startswith("__")}


def partitions_of(admin: AdminClient, topics: Iterable[str], timeout_s: float) -> list[Partition]:
    """Every partition of ``topics``; a missing topic is a ``TopicsError``."""
    topics = tuple(topics)
    counts = partition_counts(admin, topics, timeout_s)
    missing = [t for t in topics if t not in counts]
    if missing:
        raise TopicsError(f"topics not found: {missing}")
    return [(t, p) for t in topics for p in range(counts[t])]


def list_offsets(
    admin: AdminClient, partitions: Iterable[Partition], spec: OffsetSpec, timeout_s: float
) -> dict[Partition, int]:
    """The offset ``spec`` names in each partition (earliest, latest, or the first at or after a
    time: -1 when there is none), as a ``read_committed`` consumer sees the end."""
    request = {TopicPartition(t, p): spec for t, p in partitions}
    if not request:
        return {}
    futures = admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=timeout_s)
    answers = results(futures, "list offsets of", timeout_s)
    return {(tp.topic, tp.partition): info.offset for tp, info in answers.items()}


@dataclass(frozen=True)
class PartitionInfo:
    """One partition: its leader and replicas (broker ids) and its earliest and end offsets."""

    partition: int
    leader: int | None
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    earliest: int
    end: int


@dataclass(frozen=True)
class TopicInfo:
    """One topic: its partitions and the settings that differ from the broker's defaults."""

    name: str
    partitions: tuple[PartitionInfo, ...]
    configs: dict[str, str]


def _configs(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, dict[str, str]]:
    futures = admin.describe_configs([ConfigResource("topic", n) for n in names], request_timeout=timeout_s)
    answers = results(futures, "describe configs of", timeout_s)
    return {resource.name: {k: str(e.value) for k, e in sorted(entries.items()) if not e.is_default}
            for resource, entries in answers.items()}


def describe_topics(admin: AdminClient, names: Iterable[str], timeout_s: float) -> list[TopicInfo]:
    """Partitions, replicas, offsets and non-default settings of each topic in ``names``."""
    names = list(names)
    partitions = partitions_of(admin, names, timeout_s)
    futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout_s)
    described = results(futures, "describe topic", timeout_s)
    earliest = list_offsets(admin, partitions, OffsetSpec.earliest(), timeout_s)
    end = list_offsets(admin, partitions, OffsetSpec.latest(), timeout_s)
    configs = _configs(admin, names, timeout_s)
    out = []
    for name in names:
        parts = tuple(
            PartitionInfo(p.id, p.leader.id if p.leader else None, tuple(r.id for r in p.replicas),
                          tuple(r.id for r in p.isr), earliest[(name, p.id)], end[(name, p.id)])
            for p in sorted(described[name].partitions, key=lambda p: p.id))
        out.append(TopicInfo(name, parts, configs.get(name, {})))
    return out


def delete_topics(admin: AdminClient, names: Iterable[str], timeout_s: float) -> dict[str, str]:
    """Delete the topics of ``names`` that exist; returns topic → ``deleted`` | ``absent``."""
    names = list(names)
    existing = partition_counts(admin, tuple(names), timeout_s)
    doomed = [n for n in names if n in existing]
    if doomed:
        futures = admin.delete_topics(doomed, operation_timeout=timeout_s, request_timeout=timeout_s)
        results(futures, "delete topic", timeout_s)
    logger.info("topics deleted names=%s", doomed)
    return {n: "deleted" if n in existing else "absent" for n in names}
