"""The dead-letter queue: poison messages keep their bytes and headers, plus why and where from."""

from __future__ import annotations

import logging

from confluent_kafka import Message

from streams.errors import PoisonMessageError
from streams.producer import Headers, KafkaProducer

__all__ = [
    "HEADER_DETAIL",
    "HEADER_PARTITION",
    "HEADER_REASON",
    "HEADER_SOURCE_TOPIC",
    "HEADER_OFFSET",
    "HEADER_STAGE",
    "REASONS",
    "DeadLetterQueue",
    "dead_letter_headers",
]

logger = logging.getLogger(__name__)

HEADER_REASON = "unistate.error.reason"
HEADER_DETAIL = "unistate.error.detail"
HEADER_STAGE = "unistate.error.stage"
HEADER_SOURCE_TOPIC = "unistate.source.topic"
HEADER_PARTITION = "unistate.source.partition"
HEADER_OFFSET = "unistate.source.offset"

#: Every reason code the worker writes, with its meaning (documented in docs/events.md).
REASONS: dict[str, str] = {
    "message_too_large": "the value is larger than UNISTATE_WORKER_MAX_MESSAGE_BYTES",
    "decode_error": "the value is not a msgpack map (or is missing)",
    "validation_error": "the map does not match the event schema of its topic",
    "key_mismatch": "the message key is not the UTF-8 bytes of the payload's user_id",
    "too_late": "older than the user's watermark minus the allowed lateness",
}
MAX_DETAIL_CHARS = 1000


def dead_letter_headers(msg: Message, error: PoisonMessageError) -> Headers:
    """The original headers followed by the unistate error and source headers."""
    original = list(msg.headers() or [])
    return [
        *((k, v if v is not None else b"") for k, v in original),
        (HEADER_REASON, error.reason.encode()),
        (HEADER_DETAIL, error.detail[:MAX_DETAIL_CHARS].encode()),
        (HEADER_STAGE, error.stage.encode()),
        (HEADER_SOURCE_TOPIC, str(msg.topic()).encode()),
        (HEADER_PARTITION, str(msg.partition()).encode()),
        (HEADER_OFFSET, str(msg.offset()).encode()),
    ]


class DeadLetterQueue:
    """Sends poison messages to the DLQ topic through a producer; ``flush`` before committing."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        self._producer = producer
        self.topic = topic

    def send(self, msg: Message, error: PoisonMessageError) -> None:
        """Queue ``msg`` (original key and value) to the DLQ with the reason headers."""
        logger.warning(
            "dead letter reason=%s stage=%s topic=%s partition=%s offset=%s detail=%r",
            error.reason, error.stage, msg.topic(), msg.partition(), msg.offset(), error.detail,
        )
        self._producer.produce(
            self.topic, value=msg.value(), key=msg.key(), headers=dead_letter_headers(msg, error)
        )
