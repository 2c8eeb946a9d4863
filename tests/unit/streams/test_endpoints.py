"""The status server over real HTTP: /metrics text, /healthz and /readyz status codes, 404 elsewhere."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streams.devservers.servers import free_port
from streams.endpoints import StatusServer
from streams.health import Health
from streams.metrics import WorkerMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture()
def served() -> Iterator[tuple[int, Health, FakeClock, WorkerMetrics]]:
    clock, metrics = FakeClock(), WorkerMetrics()
    health = Health(liveness_window_s=10, clock=clock)
    with StatusServer(metrics.registry, health, free_port(), "127.0.0.1") as server:
        yield server.port, health, clock, metrics


def test_metrics_path_serves_the_prometheus_text(served) -> None:  # noqa: ANN001
    port, _, _, metrics = served
    metrics.users_updated.inc(3)
    metrics.set_model("m-2024", 32)
    status, body = get(port, "/metrics")
    assert status == 200
    assert "unistate_users_updated_total 3.0" in body
    assert 'unistate_model_info{dim="32",model_version="m-2024"} 1.0' in body
    assert "process_cpu_seconds_total" in body and "python_info" in body


def test_other_paths_are_not_found(served) -> None:  # noqa: ANN001
    port = served[0]
    for path in ("/", "/metricsx", "/healthz/extra", "/favicon.ico"):
        assert get(port, path)[0] == 404, path


def test_healthz_follows_the_loop_ticks(served) -> None:  # noqa: ANN001
    port, health, clock, _ = served
    health.tick()
    assert get(port, "/healthz") == (200, "ok\n")
    clock.now += 11
    status, body = get(port, "/healthz")
    assert status == 503 and "no tick" in body
    health.tick()
    assert get(port, "/healthz")[0] == 200


def test_readyz_lists_the_failing_checks_until_all_pass(served) -> None:  # noqa: ANN001
    port, health, _, _ = served
    status, body = get(port, "/readyz")
    assert status == 503
    assert body.splitlines() == ["model: not loaded", "kafka: no partition assignment yet",
                                 "redis: no Redis operation yet"]
    health.set_model_loaded(True)
    health.set_assigned(True)
    assert get(port, "/readyz") == (503, "redis: no Redis operation yet\n")
    health.redis_ok()
    assert get(port, "/readyz") == (200, "ready\n")


def test_port_zero_serves_nothing() -> None:
    with StatusServer(WorkerMetrics().registry, Health(), 0) as server:
        assert server.port == 0
