"""The streams package's exception tree; third-party errors are translated into it at the boundary."""

from __future__ import annotations

__all__ = ["EmbeddedServerError", "StreamsError"]


class StreamsError(Exception):
    """Root of every error raised by the streams package."""


class EmbeddedServerError(StreamsError):
    """A local broker or redis-server (``make demo``, tests) could not be started."""
