"""The outage backoff, the repeat filter for client logs, and the notification format."""

from __future__ import annotations

import logging

import pytest

from streams.errors import PoisonMessageError
from streams.logs import RepeatFilter
from streams.notifications import Notification, decode_notification, encode_notification
from streams.outage import OutageBackoff


def test_outage_backoff_doubles_to_its_cap_and_resets() -> None:
    backoff = OutageBackoff(first_s=0.5, max_s=3.0)
    assert [backoff.next_wait_s() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_wait_s() == 0.5


def record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("streams.kafka", logging.WARNING, __file__, 1, msg, args, None)


def test_repeat_filter_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    now = [0.0]
    repeat = RepeatFilter(interval_s=60, clock=lambda: now[0])
    lines = [record("Connect to ipv4#127.0.0.1:%d failed (after %dms)", 9092, ms) for ms in range(500)]
    assert [repeat.filter(r) for r in lines].count(True) == 1
    assert repeat.filter(record("another message")) is True
    now[0] = 61.0
    again = record("Connect to ipv4#127.0.0.1:%d failed (after %dms)", 9092, 7)
    assert repeat.filter(again) is True
    assert again.getMessage().endswith("(499 similar suppressed)")


def test_notifications_carry_the_changed_scenarios_and_old_ones_still_decode() -> None:
    note = Notification("u1", 3, 1_000, 2_000, "m1", ("feed", "ads"))
    assert decode_notification(encode_notification(note)) == note
    import msgpack

    old = msgpack.packb({"user_id": "u1", "version": 3, "watermark_ms": 1, "computed_at_ms": 2,
                         "model_version": None})
    assert decode_notification(old).scenarios == ()
    with pytest.raises(PoisonMessageError):
        decode_notification(b"\x00garbage")
