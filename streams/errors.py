"""The streams package's exception tree; third-party errors are translated into it at the boundary.

::

    StreamsError
    ├── EmbeddedServerError         a dev server (demo, tests) could not start
    ├── ConfigurationError          fatal: settings, topics or model do not fit (exit 2)
    │   └── TopicsError             topics missing or not co-partitioned
    ├── KafkaUnavailableError       transient broker trouble past the client's retries
    │   └── DeliveryError           produced messages not acknowledged
    ├── GroupActiveError            a consumer group has members: its offsets cannot be reset
    ├── RedisUnavailableError       Redis away after bounded retries; nothing committed
    └── PoisonMessageError          a message that can never be processed: DLQ, carry on
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "DeliveryError",
    "EmbeddedServerError",
    "GroupActiveError",
    "KafkaUnavailableError",
    "PoisonMessageError",
    "RedisUnavailableError",
    "StreamsError",
    "TopicsError",
]


class StreamsError(Exception):
    """Root of every error raised by the streams package."""


class EmbeddedServerError(StreamsError):
    """A local broker or redis-server (``make demo``, tests) could not be started."""


class ConfigurationError(StreamsError):
    """Fatal: settings, topics or model do not fit together; the worker refuses to start (exit 2)."""


class TopicsError(ConfigurationError):
    """Topics are missing, or exist with a partition count other than required."""


class KafkaUnavailableError(StreamsError):
    """Transient broker trouble that outlived the client's own retries."""


class DeliveryError(KafkaUnavailableError):
    """Produced messages were not acknowledged by the broker (flush left some, or delivery failed)."""


class GroupActiveError(StreamsError):
    """A consumer group has active members, so its committed offsets cannot be reset (exit 1)."""


class RedisUnavailableError(StreamsError):
    """Redis could not be reached after bounded retries; nothing was committed."""


class PoisonMessageError(StreamsError):
    """A message that can never be processed: it goes to the dead-letter topic.

    ``reason`` is a short stable code (``decode_error``, ``validation_error``, ...) written to the
    ``unistate.error.reason`` header; the message text is the human-readable detail.
    """

    def __init__(self, reason: str, detail: str, stage: str = "decode") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.stage = stage
