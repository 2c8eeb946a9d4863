"""Liveness follows the loop's ticks; readiness names every failing check and probes an idle Redis."""

from __future__ import annotations

from streams.health import Health


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ready_health(clock: FakeClock, probe=None, ping_s: float = 5.0) -> Health:  # noqa: ANN001
    health = Health(liveness_window_s=10, redis_ping_interval_s=ping_s, redis_probe=probe, clock=clock)
    health.set_model_loaded(True)
    health.set_assigned(True)
    health.redis_ok()
    health.tick()
    return health


def test_alive_within_the_window_after_start_and_dead_when_the_loop_stops_ticking() -> None:
    clock = FakeClock()
    health = Health(liveness_window_s=10, clock=clock)
    clock.now += 9
    assert health.alive()  # start-up gets one window before the first tick
    clock.now += 2
    assert not health.alive()
    health.tick()
    assert health.alive()
    clock.now += 10.5
    assert not health.alive()
    assert any(p.startswith("loop: no tick for 10.5s") for p in health.not_ready())


def test_a_fresh_health_names_every_failing_check() -> None:
    problems = Health(clock=FakeClock()).not_ready()
    assert problems == ["model: not loaded", "kafka: no partition assignment yet",
                        "redis: no Redis operation yet"]


def test_ready_only_when_model_assignment_and_redis_are_all_good() -> None:
    clock = FakeClock()
    health = ready_health(clock)
    assert health.not_ready() == []
    health.set_assigned(False)  # a revoke
    assert health.not_ready() == ["kafka: no partition assignment yet"]
    health.set_assigned(True)
    clock.now += 1
    health.redis_failed("operation failed, retrying")
    assert health.not_ready() == ["redis: operation failed, retrying"]
    clock.now += 1
    health.redis_ok()
    assert health.not_ready() == []


def test_a_stale_redis_status_is_refreshed_by_the_probe_at_most_once_per_interval() -> None:
    clock = FakeClock()
    answers: list[str | None] = []
    calls: list[float] = []

    def probe() -> str | None:
        calls.append(clock.now)
        return answers.pop(0)

    health = ready_health(clock, probe, ping_s=5)
    assert health.not_ready() == [] and calls == []  # the worker's own success is fresh
    clock.now += 5
    answers.append("ping failed: ConnectionError: refused")
    assert health.not_ready() == ["redis: ping failed: ConnectionError: refused"]
    clock.now += 1
    assert health.not_ready() == ["redis: ping failed: ConnectionError: refused"]
    assert len(calls) == 1  # the failure is 1 s old: not probed again
    clock.now += 4
    answers.append(None)  # Redis is back
    assert health.not_ready() == []
    assert len(calls) == 2


def test_without_a_probe_the_last_redis_outcome_stands() -> None:
    clock = FakeClock()
    health = ready_health(clock)
    clock.now += 3600
    health.tick()
    assert health.not_ready() == []


def test_a_paused_worker_is_alive_but_not_ready_until_it_resumes() -> None:
    clock = FakeClock()
    health = ready_health(clock)
    health.set_paused("kafka unavailable")
    assert health.alive() and health.not_ready() == ["consumption paused: kafka unavailable"]
    health.set_paused(None)
    assert health.not_ready() == []


def test_no_reachable_broker_makes_an_idle_worker_not_ready() -> None:
    health = ready_health(FakeClock())
    health.set_brokers_up(False)
    assert health.alive() and health.not_ready() == ["kafka: no broker reachable"]
    health.set_brokers_up(True)
    assert health.not_ready() == []
