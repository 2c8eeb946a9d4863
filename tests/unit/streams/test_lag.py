"""Consumer lag from librdkafka statistics: assigned partitions only, stale series removed."""

from __future__ import annotations

import json

from streams.lag import ConsumerLag, partition_lags
from streams.metrics import WorkerMetrics


def part(partition: int, lag: int, desired: bool = True) -> dict:
    return {"partition": partition, "desired": desired, "consumer_lag": lag, "fetch_state": "active"}


def stats(parts: dict[str, list[dict]]) -> dict:
    return {"name": "rdkafka#consumer-1", "topics": {
        topic: {"topic": topic, "partitions": {str(p["partition"]): p for p in ps}}
        for topic, ps in parts.items()}}


def test_lag_of_assigned_partitions_whose_lag_is_known() -> None:
    empty = {**part(2, -1), "lo_offset": 40, "ls_offset": 40}  # never committed, holds nothing
    backlog = {**part(3, -1), "lo_offset": 0, "ls_offset": 40}  # never committed: unknown
    doc = stats({"u.feed": [part(0, 7), part(1, -1), part(-1, -1, desired=False), empty, backlog],
                 "u.ads": [part(0, 0), part(1, 12, desired=False)]})
    assert partition_lags(doc) == {("u.feed", 0): 7, ("u.feed", 2): 0, ("u.ads", 0): 0}


def test_gauge_follows_the_assignment_and_total_sums_it() -> None:
    metrics = WorkerMetrics()
    lag = ConsumerLag(metrics.consumer_lag)
    value = metrics.registry.get_sample_value
    assert lag.total() is None
    lag.on_stats(json.dumps(stats({"u.feed": [part(0, 5), part(1, 3)]})))
    assert value("unistate_consumer_lag", {"topic": "u.feed", "partition": "0"}) == 5
    assert lag.total() == 8
    lag.on_stats(json.dumps(stats({"u.feed": [part(1, 2)]})))  # partition 0 moved away
    assert value("unistate_consumer_lag", {"topic": "u.feed", "partition": "0"}) is None
    assert value("unistate_consumer_lag", {"topic": "u.feed", "partition": "1"}) == 2
    assert lag.total() == 2 and lag.updates == 2


def test_unreadable_statistics_leave_the_gauge_as_it_was() -> None:
    metrics = WorkerMetrics()
    lag = ConsumerLag(metrics.consumer_lag)
    lag.on_stats(json.dumps(stats({"u.feed": [part(0, 4)]})))
    lag.on_stats("{not json")
    assert lag.total() == 4 and lag.updates == 1


def test_brokers_up_needs_a_connected_broker_not_only_bootstrap_entries() -> None:
    from streams.lag import brokers_up

    bootstrap = {"nodeid": -1, "state": "UP"}
    assert not brokers_up({"brokers": {"bootstrap": bootstrap, "b1": {"nodeid": 1, "state": "CONNECT"}}})
    assert brokers_up({"brokers": {"bootstrap": bootstrap, "b1": {"nodeid": 1, "state": "UP"}}})
    assert not brokers_up({})
