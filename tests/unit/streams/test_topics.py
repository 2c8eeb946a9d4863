"""Topic names and the co-partitioning check."""

from __future__ import annotations

import pytest

from streams.errors import TopicsError
from streams.topics import TopicNames, check_copartitioned


def test_names_derive_from_one_prefix() -> None:
    names = TopicNames.from_prefix("x.")
    assert names.inputs == ("x.feed", "x.search", "x.ads")
    assert names.all == ("x.feed", "x.search", "x.ads", "x.dlq", "x.updates")
    assert names.scenario_of() == {"x.feed": "feed", "x.search": "search", "x.ads": "ads"}


def test_unknown_scenario_is_refused() -> None:
    with pytest.raises(TopicsError):
        TopicNames.from_prefix().for_scenario("mail")


def test_copartitioned_inputs_pass() -> None:
    names = TopicNames.from_prefix("x.")
    assert check_copartitioned({"x.feed": 4, "x.search": 4, "x.ads": 4, "x.dlq": 1}, names) == 4


def test_different_partition_counts_are_refused_with_the_counts() -> None:
    names = TopicNames.from_prefix("x.")
    with pytest.raises(TopicsError, match="not co-partitioned.*x.search': 3"):
        check_copartitioned({"x.feed": 4, "x.search": 3, "x.ads": 4}, names)


def test_missing_inputs_are_refused() -> None:
    with pytest.raises(TopicsError, match="missing.*x.ads"):
        check_copartitioned({"x.feed": 4, "x.search": 4}, TopicNames.from_prefix("x."))
