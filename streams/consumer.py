"""A thin consumer wrapper: subscribe on ``__enter__``, batch consume, store and commit by hand."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streams.errors import ConfigurationError, KafkaUnavailableError
from streams.logs import kafka_client_logger

__all__ = ["EventConsumer"]

logger = logging.getLogger(__name__)

PartitionsCallback = Callable[[list[TopicPartition]], None]


class EventConsumer:
    """Consumes the input topics in one group; never stores or commits offsets by itself.

    The constructor only keeps the configuration; the client is built and subscribed on
    ``__enter__`` and closed (leaving the group) on ``__exit__``.
    """

    def __init__(
        self, config: dict[str, Any], topics: Sequence[str],
        on_revoke: PartitionsCallback | None = None, on_assign: PartitionsCallback | None = None,
    ) -> None:
        if config.get("enable.auto.offset.store") not in (False, "false") or config.get(
            "enable.auto.commit"
        ) not in (False, "false"):
            raise ConfigurationError(
                "the worker stores and commits offsets itself: enable.auto.offset.store and "
                "enable.auto.commit must be false"
            )
        self._config = dict(config)
        self._topics = list(topics)
        self.on_revoke = on_revoke
        self.on_assign = on_assign
        self._consumer: Consumer | None = None
        self._paused = False

    def __enter__(self) -> EventConsumer:
        self._config.setdefault("error_cb", self._on_error)
        self._config.setdefault("logger", kafka_client_logger())
        try:
            self._consumer = Consumer(self._config)
            self._consumer.subscribe(
                self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot start consumer: {exc}") from exc
        logger.info("consumer subscribed topics=%s group=%s", self._topics, self._config.get("group.id"))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close()
            except KafkaException as exc:
                logger.warning("consumer close failed error=%s", exc)
            self._consumer = None

    @property
    def client(self) -> Consumer:
        """The underlying confluent-kafka consumer (built on ``__enter__``)."""
        if self._consumer is None:
            raise KafkaUnavailableError("consumer used outside its `with` block")
        return self._consumer

    def consume(self, num_messages: int, wait_s: float) -> list[Message]:
        """Up to ``num_messages`` messages, waiting at most ``wait_s``; error events are raised
        when fatal and logged otherwise (partition EOF, transient broker trouble)."""
        try:
            batch = self.client.consume(num_messages=num_messages, timeout=wait_s)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"consume failed: {exc}") from exc
        messages: list[Message] = []
        for msg in batch:
            err = msg.error()
            if err is None:
                messages.append(msg)
            elif err.fatal():
                raise KafkaUnavailableError(f"fatal consumer error: {err}")
            elif err.code() != KafkaError._PARTITION_EOF:
                logger.warning("consumer error code=%s detail=%s", err.name(), err.str())
        return messages

    def commit(self, offsets: list[TopicPartition]) -> None:
        """Store ``offsets`` (the next offset to read, per partition) and commit them synchronously."""
        if not offsets:
            return
        try:
            self.client.store_offsets(offsets=offsets)
            committed = self.client.commit(asynchronous=False) or []
        except KafkaException as exc:
            raise KafkaUnavailableError(f"offset commit failed: {exc}") from exc
        failed = [tp for tp in committed if tp.error is not None]
        if failed:
            raise KafkaUnavailableError(f"offset commit failed for {failed}")

    def pause_all(self) -> None:
        """Stop fetching from every assigned partition, and from partitions assigned later until
        ``resume_all`` (group membership continues)."""
        self._paused = True
        self._pause_assigned()

    def poll_paused(self, wait_s: float) -> None:
        """Serve group callbacks while paused. Messages of partitions assigned meanwhile (and so
        not paused) are not dropped: their partitions are sought back and paused."""
        messages = self.consume(100, wait_s)
        if messages:
            self.rewind(messages)
            self._pause_assigned()

    def rewind(self, messages: Sequence[Message]) -> None:
        """Seek every partition of ``messages`` still assigned back to its first offset there, so
        the batch is consumed again; partitions assigned elsewhere meanwhile are skipped."""
        first: dict[tuple[str, int], int] = {}
        for msg in messages:
            tp = (str(msg.topic()), int(msg.partition()))
            first[tp] = min(first.get(tp, int(msg.offset())), int(msg.offset()))
        assigned = {(tp.topic, tp.partition) for tp in self._assignment()}
        for (topic, partition), offset in first.items():
            if (topic, partition) not in assigned:
                continue
            try:
                self.client.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # e.g. revoked between the two calls
                logger.warning("seek failed topic=%s partition=%d error=%s", topic, partition, exc)

    def resume_all(self) -> None:
        """Fetch again from every assigned partition."""
        self._paused = False
        assignment = self._assignment()
        if assignment:
            self.client.resume(assignment)

    def _assignment(self) -> list[TopicPartition]:
        try:
            return list(self.client.assignment())
        except KafkaException as exc:
            logger.warning("assignment unknown error=%s", exc)
            return []

    def _pause_assigned(self) -> None:
        assignment = self._assignment()
        if assignment:
            self.client.pause(assignment)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Assign, then set the pause state explicitly: librdkafka remembers a partition's pause
        across a revoke, so a partition paused during an outage and assigned again after it
        ended would otherwise never be fetched."""
        consumer.assign(partitions)
        if self._paused:
            consumer.pause(partitions)
        else:
            consumer.resume(partitions)
        logger.info("partitions assigned count=%d paused=%s partitions=%s", len(partitions), self._paused,
                    [f"{p.topic}[{p.partition}]" for p in partitions])
        if self.on_assign is not None:
            self.on_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logger.info("partitions revoked count=%d", len(partitions))
        if self.on_revoke is not None:
            self.on_revoke(partitions)

    def _on_error(self, err: KafkaError) -> None:
        kafka_client_logger().warning("kafka consumer error code=%s detail=%s", err.name(), err.str())
