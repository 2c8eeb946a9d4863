"""A thin producer wrapper: deliveries are checked, and flush raises when the broker did not ack."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streams.errors import DeliveryError, KafkaUnavailableError
from streams.logs import kafka_client_logger

__all__ = ["Headers", "KafkaProducer"]

logger = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class KafkaProducer:
    """Produces to Kafka; ``flush`` raises ``DeliveryError`` for anything not acknowledged.

    The constructor only keeps the configuration: the client is built on ``__enter__``.
    """

    def __init__(self, config: dict[str, Any], flush_timeout_s: float = 30.0) -> None:
        self._config = dict(config)
        self._flush_timeout_s = flush_timeout_s
        self._producer: Producer | None = None
        self._failures: list[str] = []
        self.delivered = 0

    def __enter__(self) -> KafkaProducer:
        self._config.setdefault("error_cb", self._on_error)
        self._config.setdefault("logger", kafka_client_logger())
        try:
            self._producer = Producer(self._config)
        except KafkaException as exc:
            raise KafkaUnavailableError(f"cannot build producer: {exc}") from exc
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._producer is not None:
            left = self._producer.flush(self._flush_timeout_s)
            if left:
                logger.warning("producer closed with undelivered messages count=%d", left)
            self._producer = None

    @property
    def client(self) -> Producer:
        """The underlying confluent-kafka producer (built on ``__enter__``)."""
        if self._producer is None:
            raise KafkaUnavailableError("producer used outside its `with` block")
        return self._producer

    def produce(
        self, topic: str, value: bytes | None, key: bytes | None = None,
        headers: Headers | None = None, timestamp_ms: int | None = None,
    ) -> None:
        """Queue one message; a full local queue is drained by polling, then retried once.

        ``timestamp_ms`` sets the message's CreateTime (default: now).
        """
        kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": self._on_delivery}
        if headers:
            kwargs["headers"] = headers
        if timestamp_ms is not None:
            kwargs["timestamp"] = timestamp_ms
        try:
            self.client.produce(topic, **kwargs)
        except BufferError:
            self.client.poll(1.0)
            self.client.produce(topic, **kwargs)
        except KafkaException as exc:
            raise DeliveryError(f"cannot produce to {topic}: {exc}") from exc
        self.client.poll(0)

    def flush(self) -> int:
        """Wait until every queued message is acknowledged; return how many were delivered since
        the last flush. Raises ``DeliveryError`` when some were not."""
        left = self.client.flush(self._flush_timeout_s)
        failures, self._failures = self._failures, []
        if left:
            raise DeliveryError(f"{left} messages not delivered within {self._flush_timeout_s}s")
        if failures:
            raise DeliveryError(f"{len(failures)} deliveries failed, first: {failures[0]}")
        delivered, self.delivered = self.delivered, 0
        return delivered

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failures.append(f"topic={msg.topic()} error={err}")
        else:
            self.delivered += 1

    def _on_error(self, err: KafkaError) -> None:
        kafka_client_logger().warning("kafka producer error code=%s detail=%s", err.name(), err.str())
