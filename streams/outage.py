"""Backoff for outages: how long the worker waits, paused, before trying a failed batch again."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["OutageBackoff"]


@dataclass
class OutageBackoff:
    """Waits of ``first_s`` doubling up to ``max_s`` while an outage lasts; ``reset`` when it ends.

    The worker never exits on an unavailable Redis or broker: it pauses, waits, and tries again,
    so an outage of any length costs only latency.
    """

    first_s: float = 0.5
    max_s: float = 30.0
    _failures: int = field(default=0, init=False)

    def next_wait_s(self) -> float:
        """The wait before the next try; each call doubles the following one."""
        wait_s = min(self.first_s * 2 ** self._failures, self.max_s)
        self._failures += 1
        return wait_s

    def reset(self) -> None:
        """The dependency is back: the next outage starts from ``first_s`` again."""
        self._failures = 0
