"""Logging setup for the CLI: one line per record, ``key=value`` text or JSON."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Callable

__all__ = ["JsonFormatter", "RepeatFilter", "configure_logging", "kafka_client_logger"]

#: The logger librdkafka's own lines go to (instead of raw stderr), rate-limited.
KAFKA_CLIENT_LOGGER = "streams.kafka"
_NUMBERS = re.compile(r"\d+")

_HANDLER_NAME = "unistate"
_TEXT_FORMAT = "ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=\"%(message)s\""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg (and exc when there is one)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


def configure_logging(level: str = "INFO", fmt: str = "kv") -> None:
    """Log to stderr at ``level`` in ``kv`` (key=value) or ``json`` format; idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter(_TEXT_FORMAT)
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)


class RepeatFilter(logging.Filter):
    """Lets a message through at most once per ``interval_s``; numbers are ignored when telling
    messages apart (``Connect to ...:9092 failed (after 3ms)`` is one message). The next line let
    through says how many similar ones were suppressed."""

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # key -> (last emitted at, suppressed since)
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.levelno}:{_NUMBERS.sub('#', record.getMessage())}"
        now = self._clock()
        with self._lock:
            emitted_at, suppressed = self._last.get(key, (None, 0))
            if emitted_at is not None and now - emitted_at < self.interval_s:
                self._last[key] = (emitted_at, suppressed + 1)
                return False
            if len(self._last) > 10_000:  # bounded: forget everything rather than grow
                self._last.clear()
            self._last[key] = (now, 0)
        if suppressed:
            record.msg = f"{record.getMessage()} ({suppressed} similar suppressed)"
            record.args = None
        return True


def kafka_client_logger(interval_s: float = 60.0) -> logging.Logger:
    """The logger handed to librdkafka (its ``logger`` setting) and used for client errors: one
    format with every other line, repeats rate-limited."""
    logger = logging.getLogger(KAFKA_CLIENT_LOGGER)
    if not any(isinstance(f, RepeatFilter) for f in logger.filters):
        logger.addFilter(RepeatFilter(interval_s))
    return logger
