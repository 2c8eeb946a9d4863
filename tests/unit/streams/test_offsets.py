"""Offset targets and the offsets table, without a broker (the commands run against Tansu in
tests/integration/test_offsets_topics.py)."""

from __future__ import annotations

import pytest

from streams.cli import main
from streams.cli.admin_commands import format_offsets
from streams.offsets import OffsetTarget, PartitionOffsets


@pytest.mark.parametrize("text, kind, ts_ms", [
    ("earliest", "earliest", None), ("latest", "latest", None), ("timestamp:1511658000000", "timestamp", 1511658000000),
])
def test_offset_targets_parse(text: str, kind: str, ts_ms: int | None) -> None:
    target = OffsetTarget.parse(text)
    assert (target.kind, target.timestamp_ms) == (kind, ts_ms)
    assert str(target) == text


@pytest.mark.parametrize("text", ["first", "timestamp:", "timestamp:-5", "timestamp:soon", "offset:3"])
def test_bad_offset_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="earliest, latest or timestamp:MS"):
        OffsetTarget.parse(text)


def test_a_bad_reset_target_exits_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["offsets", "reset", "--group", "g", "--to", "yesterday"])
    assert info.value.code == 2


def test_the_offsets_table_shows_lag_and_no_lag_without_a_commit() -> None:
    rows = [PartitionOffsets("t.feed", 0, 3, 10), PartitionOffsets("t.feed", 1, None, 4)]
    assert rows[0].lag == 7 and rows[1].lag is None
    table = format_offsets(rows, [0, 0]).splitlines()
    assert table[0].split() == ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "NEW"]
    assert table[1].split() == ["t.feed", "0", "3", "10", "7", "0"]
    assert table[2].split() == ["t.feed", "1", "-", "4", "-", "0"]
    assert table[3].startswith("total lag: 7")
