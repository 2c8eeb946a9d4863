"""The throughput log line: counts and rates since the previous line, and the lag."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest

from streams.lag import ConsumerLag
from streams.metrics import WorkerMetrics
from streams.throughput import ThroughputLog


def test_line_reports_the_change_since_the_previous_line() -> None:
    now = [100.0]
    metrics = WorkerMetrics()
    lag = ConsumerLag(metrics.consumer_lag)
    log = ThroughputLog(metrics, lag, 30, clock=lambda: now[0])
    metrics.events_consumed.labels("feed").inc(50)
    metrics.events_consumed.labels("ads").inc(10)
    metrics.users_updated.inc(20)
    metrics.dead_letters.labels("bad_json").inc(2)
    now[0] += 30
    assert log.line() == ("interval_s=30.0 events=60 events_per_s=2.0 users_updated=20 "
                          "users_updated_per_s=0.7 dead_letters=2 publish_refused=0 lag=unknown")
    metrics.events_consumed.labels("feed").inc(15)
    metrics.publish_refused.inc()
    lag.on_stats(json.dumps({"topics": {"u.feed": {"partitions": {
        "0": {"partition": 0, "desired": True, "consumer_lag": 40},
        "1": {"partition": 1, "desired": True, "consumer_lag": 2}}}}}))
    now[0] += 10
    assert log.line() == ("interval_s=10.0 events=15 events_per_s=1.5 users_updated=0 "
                          "users_updated_per_s=0.0 dead_letters=0 publish_refused=1 lag=42")


@pytest.mark.timeout(10)
def test_the_background_thread_logs_lines_until_exit(caplog: pytest.LogCaptureFixture) -> None:
    metrics = WorkerMetrics()
    caplog.set_level(logging.INFO, logger="streams.throughput")
    pause, deadline = threading.Event(), time.monotonic() + 5
    with ThroughputLog(metrics, None, 0.05):
        metrics.events_consumed.labels("feed").inc(3)
        while not any("events=3 " in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "no throughput line within 5 s"
            pause.wait(0.02)
    assert all(r.getMessage().startswith("throughput interval_s=") for r in caplog.records)


def test_interval_zero_starts_no_thread() -> None:
    before = {t.name for t in threading.enumerate()}
    with ThroughputLog(WorkerMetrics(), None, 0):
        assert "unistate-throughput" not in {t.name for t in threading.enumerate()} - before
