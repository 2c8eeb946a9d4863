"""Consumer-group offsets: committed, end and lag per partition, and resets to earliest, latest or a time."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from streams.errors import GroupActiveError, KafkaUnavailableError
from streams.topic_admin import Partition, list_offsets, partitions_of, results

__all__ = ["OffsetTarget", "PartitionOffsets", "apply_reset", "check_inactive", "group_offsets", "plan_reset"]

logger = logging.getLogger(__name__)

#: States in which a group has (or is getting) members that own partitions.
_ACTIVE = {ConsumerGroupState.STABLE, ConsumerGroupState.PREPARING_REBALANCING,
           ConsumerGroupState.COMPLETING_REBALANCING}


@dataclass(frozen=True)
class OffsetTarget:
    """Where a reset moves a group: the ``earliest`` or ``latest`` offset, or the first message at
    or after ``timestamp_ms`` (the end when there is none)."""

    kind: Literal["earliest", "latest", "timestamp"]
    timestamp_ms: int | None = None

    @classmethod
    def parse(cls, text: str) -> OffsetTarget:
        """``earliest``, ``latest`` or ``timestamp:MS``; raises ``ValueError`` otherwise."""
        if text in ("earliest", "latest"):
            return cls(text)
        kind, _, ms = text.partition(":")
        if kind == "timestamp" and ms.strip().isdigit():
            return cls("timestamp", int(ms))
        raise ValueError(f"{text!r}: use earliest, latest or timestamp:MS (ms since the epoch)")

    def spec(self) -> OffsetSpec:
        """The admin client's ``OffsetSpec`` for this target."""
        if self.kind == "timestamp":
            return OffsetSpec.for_timestamp(self.timestamp_ms)
        return OffsetSpec.earliest() if self.kind == "earliest" else OffsetSpec.latest()

    def __str__(self) -> str:
        return f"timestamp:{self.timestamp_ms}" if self.kind == "timestamp" else self.kind


@dataclass(frozen=True)
class PartitionOffsets:
    """A group's position in one partition: ``committed`` (``None``: nothing committed) and ``end``."""

    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int | None:
        """Messages after the committed offset (``None`` without a commit)."""
        return None if self.committed is None else self.end - self.committed


def _committed(
    admin: AdminClient, group: str, partitions: Sequence[Partition], timeout_s: float
) -> dict[Partition, int | None]:
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in partitions])]
    futures = admin.list_consumer_group_offsets(request, request_timeout=timeout_s)
    answer = results(futures, "committed offsets of group", timeout_s)[group]
    return {(tp.topic, tp.partition): tp.offset if tp.offset >= 0 else None for tp in answer.topic_partitions}


def group_offsets(admin: AdminClient, group: str, topics: Iterable[str], timeout_s: float) -> list[PartitionOffsets]:
    """Committed offset, end offset and lag of ``group`` in every partition of ``topics``."""
    partitions = partitions_of(admin, topics, timeout_s)
    committed = _committed(admin, group, partitions, timeout_s)
    end = list_offsets(admin, partitions, OffsetSpec.latest(), timeout_s)
    return [PartitionOffsets(t, p, committed.get((t, p)), end[(t, p)]) for t, p in partitions]


def check_inactive(admin: AdminClient, group: str, timeout_s: float) -> None:
    """Raise ``GroupActiveError`` when ``group`` has members (they would overwrite a reset)."""
    futures = admin.describe_consumer_groups([group], request_timeout=timeout_s)
    description = results(futures, "describe group", timeout_s)[group]
    if description.members or description.state in _ACTIVE:
        state = getattr(description.state, "name", description.state)
        raise GroupActiveError(
            f"consumer group {group!r} is active (state {state}, {len(description.members)} members "
            "reported): stop its workers, wait for the session timeout, then reset")


def plan_reset(
    admin: AdminClient, group: str, topics: Iterable[str], target: OffsetTarget, timeout_s: float
) -> list[tuple[PartitionOffsets, int]]:
    """Each partition's current position and the offset ``target`` moves it to."""
    current = group_offsets(admin, group, topics, timeout_s)
    partitions = [(c.topic, c.partition) for c in current]
    wanted = list_offsets(admin, partitions, target.spec(), timeout_s)
    plan = []
    for c in current:
        offset = wanted[(c.topic, c.partition)]
        plan.append((c, offset if offset >= 0 else c.end))  # -1: no message at or after the time
    return plan


def apply_reset(admin: AdminClient, group: str, plan: Sequence[tuple[PartitionOffsets, int]], timeout_s: float) -> None:
    """Commit the planned offsets for ``group`` (checked inactive first)."""
    check_inactive(admin, group, timeout_s)
    offsets = [TopicPartition(c.topic, c.partition, new) for c, new in plan]
    futures = admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, offsets)],
                                                 request_timeout=timeout_s)
    answer = results(futures, "alter offsets of group", timeout_s)[group]
    failed = [tp for tp in answer.topic_partitions if tp.error is not None]
    if failed:
        raise KafkaUnavailableError(f"the broker refused some offsets of group {group!r}: {failed}")
    logger.info("offsets reset group=%s partitions=%d", group, len(offsets))
