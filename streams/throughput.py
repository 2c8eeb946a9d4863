"""A periodic one-line throughput log of the worker, written from a background thread."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from streams.lag import ConsumerLag
from streams.metrics import MetricsSnapshot, WorkerMetrics

__all__ = ["ThroughputLog"]

logger = logging.getLogger(__name__)


class ThroughputLog:
    """Every ``interval_s`` logs events/s, users updated/s, dead letters, refused publishes and lag.

    It runs on its own thread (a context manager), so a stuck loop still logs ``events_per_s=0``.
    ``interval_s`` 0 turns it off.
    """

    def __init__(self, metrics: WorkerMetrics, lag: ConsumerLag | None, interval_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._metrics = metrics
        self._lag = lag
        self.interval_s = interval_s
        self._clock = clock
        self._since = clock()
        self._last: MetricsSnapshot = metrics.snapshot()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def line(self) -> str:
        """The counters' change since the previous line, as ``key=value`` pairs."""
        now, snap = self._clock(), self._metrics.snapshot()
        elapsed_s = max(now - self._since, 1e-9)
        events = snap.consumed_total - self._last.consumed_total
        users = snap.users_updated - self._last.users_updated
        lag = self._lag.total() if self._lag is not None else None
        text = (f"interval_s={elapsed_s:.1f} events={events} events_per_s={events / elapsed_s:.1f} "
                f"users_updated={users} users_updated_per_s={users / elapsed_s:.1f} "
                f"dead_letters={snap.dead_letters_total - self._last.dead_letters_total} "
                f"publish_refused={snap.publish_refused - self._last.publish_refused} "
                f"lag={'unknown' if lag is None else lag}")
        self._since, self._last = now, snap
        return text

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            logger.info("throughput %s", self.line())

    def __enter__(self) -> ThroughputLog:
        if self.interval_s > 0:
            self._stop.clear()
            self._since, self._last = self._clock(), self._metrics.snapshot()
            self._thread = threading.Thread(target=self._run, name="unistate-throughput", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
