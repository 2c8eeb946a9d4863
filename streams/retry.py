"""Bounded retry with exponential backoff for transient Redis failures (never for poison input)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from state.errors import StateError, StoreUnavailableError
from streams.errors import RedisUnavailableError, StreamsError

__all__ = ["RetryPolicy"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all, waiting ``backoff_ms`` × 2^n (capped) between them.

    """

    attempts: int = 5
    backoff_ms: int = 200
    backoff_max_ms: int = 5_000

    def call(self, operation: str, fn: Callable[[], T], on_retry: Callable[[], None] | None = None,
             stop: threading.Event | None = None) -> T:
        """Run ``fn``; retry ``StoreUnavailableError``; raise ``RedisUnavailableError`` at the end.

        Any other ``StateError`` (undecodable stored state, script error) is not transient and is
        re-raised at once as ``StreamsError``. ``stop`` (optional) cuts a wait short when the
        worker is asked to stop.
        """
        waiter = stop or threading.Event()
        for attempt in range(1, self.attempts + 1):
            try:
                return fn()
            except StoreUnavailableError as exc:
                if attempt == self.attempts:
                    raise RedisUnavailableError(
                        f"{operation}: redis unavailable after {attempt} attempts: {exc}"
                    ) from exc
                wait_ms = min(self.backoff_ms * 2 ** (attempt - 1), self.backoff_max_ms)
                logger.warning("redis retry operation=%s attempt=%d wait_ms=%d error=%s",
                               operation, attempt, wait_ms, exc)
                if on_retry is not None:
                    on_retry()
                waiter.wait(wait_ms / 1000)
            except StateError as exc:
                raise StreamsError(f"{operation}: {exc}") from exc
        raise AssertionError("unreachable")  # pragma: no cover
