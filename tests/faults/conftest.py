"""Fault-suite fixtures: its own broker and a persistent redis-server, the stream, the reference
run, and the report written to ``.artifacts/faults/report.json`` and printed at the end."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from harness import REPO, Outcome, Run, UserState, kill_leftovers, stream_events

from streams.devservers.servers import Server, start_broker, start_redis

REPORT = REPO / ".artifacts" / "faults" / "report.json"
_outcomes: list[Outcome] = []


class RedisProcess:
    """A redis-server with an fsync-always AOF on a fixed port: it can be paused, killed and
    restarted with its data."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.server: Server = start_redis(persist_dir=data_dir)
        self.port = self.server.port
        self.url = self.server.url

    def restart(self) -> None:
        self.server = start_redis(self.port, persist_dir=self.data_dir)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=False)


@pytest.fixture(scope="session")
def broker() -> Iterator[Server]:
    with start_broker() as server:
        yield server


@pytest.fixture(scope="session")
def redis_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    process = RedisProcess(tmp_path_factory.mktemp("redis-data"))
    try:
        yield process
    finally:
        process.server.stop()


@pytest.fixture(scope="session")
def stream() -> tuple[list, int]:
    return stream_events()


@pytest.fixture(scope="session")
def users(stream: tuple[list, int]) -> list[str]:
    return sorted({key.decode() for _, key, _ in stream[0] if key})


@pytest.fixture(scope="session")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-runs")


@pytest.fixture(scope="session")
def reference(broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
              users: list[str], workdir: Path) -> dict[str, UserState]:
    """The uninterrupted run: one worker, the whole stream, no faults."""
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, "reference")
    run.produce(stream[0])
    run.start_worker()
    run.wait_caught_up()
    assert run.stop_all() == 0
    with redis_process.client() as client:
        snapshot = run.snapshot(client, users)
    assert len(snapshot) == len(users)
    return snapshot


@pytest.fixture(autouse=True)
def no_leftover_workers() -> Iterator[None]:
    """Whatever a case did, no worker process outlives it."""
    yield
    kill_leftovers()


@pytest.fixture()
def record() -> Iterator[list[Outcome]]:
    """Cases append their ``Outcome`` here; it goes into the report."""
    recorded: list[Outcome] = []
    yield recorded
    _outcomes.extend(recorded)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _outcomes:
        return
    totals = {k: sum(getattr(o, k) for o in _outcomes) for k in (
        "events_injected", "faults_injected", "events_lost", "events_applied_twice", "events_unexpected",
        "vectors_differing", "notifications_missing", "worker_exits_unexpected")}
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "totals": totals, "cases": [o.__dict__ for o in _outcomes]}, indent=2))
    write = terminalreporter.write_line
    write("")
    write("fault suite report (" + str(REPORT.relative_to(REPO)) + ")")
    write(f"{'case':<28}{'events':>8}{'faults':>8}{'lost':>6}{'twice':>7}{'extra':>7}{'vec≠':>6}"
          f"{'notif-':>8}{'exits':>7}")
    for o in _outcomes:
        write(f"{o.case:<28}{o.events_injected:>8}{o.faults_injected:>8}{o.events_lost:>6}"
              f"{o.events_applied_twice:>7}{o.events_unexpected:>7}{o.vectors_differing:>6}"
              f"{o.notifications_missing:>8}{o.worker_exits_unexpected:>7}")
    write("totals: " + ", ".join(f"{k}={v}" for k, v in totals.items()))
