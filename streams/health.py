"""Liveness and readiness of one worker: the loop updates a ``Health``, the HTTP endpoints read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Health", "RedisProbe"]

#: Pings Redis once: returns None when it answered, else the error's text.
RedisProbe = Callable[[], str | None]


class Health:
    """What ``/healthz`` and ``/readyz`` answer; every method is thread-safe and cheap.

    Alive: the loop ticked within ``liveness_window_s`` (counted from construction until the
    first tick, so start-up has one window). Ready: alive, the model is loaded, the group
    assignment callback has run since the last revoke, and Redis answered: the last Redis
    outcome is a success. When that outcome is older than ``redis_ping_interval_s`` (an idle
    worker touches no Redis), a reader runs ``redis_probe`` (one at a time) to refresh it.
    """

    def __init__(
        self,
        liveness_window_s: float = 60.0,
        redis_ping_interval_s: float = 5.0,
        redis_probe: RedisProbe | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.liveness_window_s = liveness_window_s
        self.redis_ping_interval_s = redis_ping_interval_s
        self._probe = redis_probe
        self._clock = clock
        self._lock = threading.Lock()
        self._probe_lock = threading.Lock()
        self._last_tick = clock()
        self._assigned = False
        self._model_loaded = False
        self._redis_ok_at: float | None = None
        self._redis_failed_at: float | None = None
        self._redis_error = "no Redis operation yet"
        self._paused: str | None = None
        self._brokers_up = True  # until statistics say otherwise

    def tick(self) -> None:
        """The loop is alive (called once per iteration; a float store, atomic under the GIL)."""
        self._last_tick = self._clock()

    def set_assigned(self, assigned: bool) -> None:
        """The group assigned partitions (True, even none) or revoked them (False)."""
        with self._lock:
            self._assigned = assigned

    def set_model_loaded(self, loaded: bool) -> None:
        """The model is loaded and fits the worker."""
        with self._lock:
            self._model_loaded = loaded

    def set_paused(self, reason: str | None) -> None:
        """Consumption is paused because a dependency is away (``reason``), or resumed (None)."""
        with self._lock:
            self._paused = reason

    def set_brokers_up(self, up: bool) -> None:
        """The consumer's latest statistics show a connected broker (True) or none (False)."""
        with self._lock:
            self._brokers_up = up

    def redis_ok(self) -> None:
        """A Redis operation succeeded."""
        with self._lock:
            self._redis_ok_at = self._clock()

    def redis_failed(self, error: str = "operation failed") -> None:
        """A Redis operation failed (``error`` is shown by ``/readyz``)."""
        with self._lock:
            self._redis_failed_at = self._clock()
            self._redis_error = error

    def alive(self) -> bool:
        """The loop ticked within the liveness window."""
        return self._clock() - self._last_tick <= self.liveness_window_s

    def not_ready(self) -> list[str]:
        """The failing readiness checks, one short line each; empty when ready."""
        problems = []
        tick_age_s = self._clock() - self._last_tick
        if tick_age_s > self.liveness_window_s:
            problems.append(f"loop: no tick for {tick_age_s:.1f}s (window {self.liveness_window_s:g}s)")
        with self._lock:
            model_loaded, assigned, paused = self._model_loaded, self._assigned, self._paused
            brokers_up = self._brokers_up
        if paused is not None:
            problems.append(f"consumption paused: {paused}")
        if not brokers_up:
            problems.append("kafka: no broker reachable")
        if not model_loaded:
            problems.append("model: not loaded")
        if not assigned:
            problems.append("kafka: no partition assignment yet")
        redis_problem = self._redis_problem()
        if redis_problem is not None:
            problems.append(f"redis: {redis_problem}")
        return problems

    def _redis_problem(self) -> str | None:
        if self._probe is not None and self._redis_stale() and self._probe_lock.acquire(blocking=False):
            try:
                error = self._probe()
            finally:
                self._probe_lock.release()
            if error is None:
                self.redis_ok()
            else:
                self.redis_failed(error)
        with self._lock:
            ok_at, failed_at, error = self._redis_ok_at, self._redis_failed_at, self._redis_error
        if ok_at is not None and (failed_at is None or ok_at > failed_at):
            return None
        return error

    def _redis_stale(self) -> bool:
        with self._lock:
            known = [t for t in (self._redis_ok_at, self._redis_failed_at) if t is not None]
        return not known or self._clock() - max(known) >= self.redis_ping_interval_s
