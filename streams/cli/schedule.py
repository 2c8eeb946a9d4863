"""When each replayed event is sent: the pacing schedule (a pure function) and the wait for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

__all__ = ["Pacer", "send_offsets_s"]


def send_offsets_s(
    ts_ms: Sequence[int], rate_per_s: float | None = None, speedup: float | None = None
) -> list[float] | None:
    """Planned send time of each event, in seconds after the first send; ``None``: as fast as possible.

    ``rate_per_s``: event ``i`` at ``i / rate_per_s``. ``speedup``: event-time pacing, the gaps
    between consecutive ``ts_ms`` divided by ``speedup`` (events must be in time order).
    """
    if rate_per_s is not None and speedup is not None:
        raise ValueError("rate_per_s and speedup are mutually exclusive")
    if rate_per_s is not None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be positive, got {rate_per_s}")
        return [i / rate_per_s for i in range(len(ts_ms))]
    if speedup is not None:
        if speedup <= 0:
            raise ValueError(f"speedup must be positive, got {speedup}")
        if any(b < a for a, b in zip(ts_ms, ts_ms[1:], strict=False)):
            raise ValueError("event-time pacing needs events in time order")
        return [(t - ts_ms[0]) / 1000 / speedup for t in ts_ms] if ts_ms else []
    return None


class Pacer:
    """Waits until each planned offset is due (measured from the first call of ``wait``)."""

    def __init__(self, offsets_s: Sequence[float] | None) -> None:
        self._offsets_s = offsets_s
        self._started: float | None = None
        self._pause = threading.Event()

    def wait(self, index: int) -> None:
        """Block until event ``index`` is due; returns at once without a schedule or when behind."""
        if self._offsets_s is None:
            return
        now = time.perf_counter()
        if self._started is None:
            self._started = now
        ahead_s = self._started + self._offsets_s[index] - now
        if ahead_s > 0:
            self._pause.wait(ahead_s)
