"""Topic names (the only place they are spelled) and their creation and co-partitioning checks."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from state.records import SCENARIOS
from streams.errors import KafkaUnavailableError, TopicsError

__all__ = ["TopicNames", "check_copartitioned", "create_topics", "partition_counts"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicNames:
    """Every topic unistate reads or writes, derived from one prefix.

    ``feed``, ``search``, ``ads``: input events keyed by user id (co-partitioned);
    ``dlq``: dead letters; ``updates``: one notification per recomputed user (key user id).
    """

    feed: str
    search: str
    ads: str
    dlq: str
    updates: str

    @classmethod
    def from_prefix(cls, prefix: str = "unistate.") -> TopicNames:
        """Names ``{prefix}feed``, ``{prefix}search``, ``{prefix}ads``, ``{prefix}dlq``, ``{prefix}updates``."""
        return cls(
            feed=f"{prefix}feed",
            search=f"{prefix}search",
            ads=f"{prefix}ads",
            dlq=f"{prefix}dlq",
            updates=f"{prefix}updates",
        )

    @property
    def inputs(self) -> tuple[str, ...]:
        """The input topics in scenario order (``state.records.SCENARIOS``)."""
        return tuple(self.for_scenario(s) for s in SCENARIOS)

    @property
    def all(self) -> tuple[str, ...]:
        """Inputs, then the DLQ and the update-notification topic."""
        return (*self.inputs, self.dlq, self.updates)

    def for_scenario(self, scenario: str) -> str:
        """The input topic of ``scenario``."""
        if scenario not in SCENARIOS:
            raise TopicsError(f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
        return str(getattr(self, scenario))

    def scenario_of(self) -> dict[str, str]:
        """Map input topic name → scenario (the topic decides the scenario)."""
        return {self.for_scenario(s): s for s in SCENARIOS}


def partition_counts(
    client: AdminClient | Consumer, topics: tuple[str, ...], timeout_s: float
) -> dict[str, int]:
    """Partition count of each existing topic among ``topics`` (missing topics are left out).

    ``client`` is anything with ``list_topics``: an admin client or a consumer.
    """
    try:
        metadata = client.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"cannot read cluster metadata: {exc}") from exc
    counts: dict[str, int] = {}
    for name in topics:
        meta = metadata.topics.get(name)
        if meta is not None and meta.error is None:
            counts[name] = len(meta.partitions)
    return counts


def check_copartitioned(counts: Mapping[str, int], names: TopicNames) -> int:
    """Return the shared partition count of the input topics, or raise ``TopicsError``."""
    missing = [t for t in names.inputs if t not in counts]
    if missing:
        raise TopicsError(
            f"input topics missing: {missing}; create them with `unistate topics create`"
        )
    per_topic = {t: counts[t] for t in names.inputs}
    if len(set(per_topic.values())) != 1:
        raise TopicsError(
            "input topics are not co-partitioned (they need the same partition count so one "
            f"user's events meet in one worker): {per_topic}"
        )
    return next(iter(per_topic.values()))


def create_topics(
    admin: AdminClient,
    names: TopicNames,
    partitions: int,
    replication_factor: int,
    timeout_s: float = 15.0,
    topic_config: dict[str, Any] | None = None,
) -> dict[str, str]:
    """Create every unistate topic; idempotent. Returns topic → ``created`` | ``exists``.

    An existing topic with a partition count other than ``partitions`` is a ``TopicsError``.
    """
    config = {k: str(v) for k, v in (topic_config or {}).items()}
    new = [NewTopic(t, partitions, replication_factor, config=config) for t in names.all]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    outcome: dict[str, str] = {}
    for topic, future in futures.items():
        try:
            future.result()
            outcome[topic] = "created"
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[topic] = "exists"
                continue
            raise KafkaUnavailableError(f"cannot create topic {topic}: {exc}") from exc
    _check_existing(admin, names, partitions, outcome, timeout_s)
    logger.info("topics ready partitions=%d outcome=%s", partitions, outcome)
    return outcome


def _check_existing(
    admin: AdminClient, names: TopicNames, partitions: int, outcome: dict[str, str],
    timeout_s: float,
) -> None:
    existing = tuple(t for t, o in outcome.items() if o == "exists")
    if not existing:
        return
    counts = partition_counts(admin, existing, timeout_s)
    wrong = {t: n for t, n in counts.items() if n != partitions}
    if wrong:
        raise TopicsError(
            f"topics exist with a partition count other than {partitions}: {wrong}; "
            "delete them or pass --partitions to match"
        )
