"""Dead-letter headers: the original headers first, then reason, detail, stage and source."""

from __future__ import annotations

from confluent_kafka import Message

from streams.dlq import (
    HEADER_DETAIL,
    HEADER_OFFSET,
    HEADER_PARTITION,
    HEADER_REASON,
    HEADER_SOURCE_TOPIC,
    HEADER_STAGE,
    dead_letter_headers,
)
from streams.errors import PoisonMessageError


def test_headers_keep_the_original_and_say_why_and_where() -> None:
    msg = Message(topic="p.feed", partition=3, offset=41, key=b"u1", value=b"\xc1",
                  headers=[("trace", b"t1"), ("empty", None)])
    headers = dead_letter_headers(msg, PoisonMessageError("decode_error", "x" * 5000))
    assert headers[:2] == [("trace", b"t1"), ("empty", b"")]
    as_dict = dict(headers)
    assert as_dict[HEADER_REASON] == b"decode_error"
    assert as_dict[HEADER_STAGE] == b"decode"
    assert len(as_dict[HEADER_DETAIL]) == 1000
    assert (as_dict[HEADER_SOURCE_TOPIC], as_dict[HEADER_PARTITION], as_dict[HEADER_OFFSET]) == (
        b"p.feed", b"3", b"41")


def test_message_without_headers() -> None:
    msg = Message(topic="p.ads", partition=0, offset=0, key=None, value=b"")
    headers = dead_letter_headers(msg, PoisonMessageError("too_late", "old", stage="apply"))
    assert dict(headers)[HEADER_STAGE] == b"apply"
    assert len(headers) == 6
