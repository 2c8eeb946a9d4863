"""The msgspec decoder against the pydantic reference: the same messages accepted, with identical
``Behavior``s, and the same messages rejected, with the same reason codes."""

from __future__ import annotations

import time
from typing import Any

import msgpack
import pytest
from fixtures.hostile import SCENARIO_NAMES, hostile_message, valid_payload
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.errors import PoisonMessageError
from streams.events import (
    MAX_DWELL_MS,
    MAX_ID_CHARS,
    MAX_POSITION,
    MAX_QUERY_CHARS,
    MIN_TS_MS,
    EventLimits,
    decode_event,
)
from streams.fast_decode import decode_event_fast, decode_events

NOW_MS = int(time.time() * 1000)
LIMITS = EventLimits()
SKEW_MS = LIMITS.max_future_skew_ms
Message = tuple[bytes | None, bytes | None]
ABSENT = object()  # a field left out of the map

_ID_EDGES: list[Any] = [
    "a", "x" * MAX_ID_CHARS, "x" * (MAX_ID_CHARS + 1), "", "é☕ 42", "a\x80b", "a\x7f", "\x1f", "\x00x", "x\x00",
    "id\n", "\nid", "a b", " ", "\udcff", b"bytes", None, 1, True, 1.5, ["a"], {"a": 1}, ABSENT,
]
_INT_EDGES: list[Any] = [0, -1, 1, True, False, 1.0, None, "1", b"1", 2**63 - 1, -(2**63), 2**64 - 1, ABSENT]
EDGES: dict[str, list[Any]] = {
    "event_id": _ID_EDGES,
    "user_id": ["u", "u" * MAX_ID_CHARS, "u" * (MAX_ID_CHARS + 1), "u\n", "", b"u", None, ABSENT],
    "ts_ms": [MIN_TS_MS - 1, MIN_TS_MS, MIN_TS_MS + 1, NOW_MS + SKEW_MS, NOW_MS + SKEW_MS + 1, *_INT_EDGES],
    "item_id": _ID_EDGES,
    "ad_id": _ID_EDGES,
    "clicked_item_id": _ID_EDGES,
    "creative_id": _ID_EDGES,
    "dwell_ms": [MAX_DWELL_MS, MAX_DWELL_MS + 1, *_INT_EDGES],
    "position": [MAX_POSITION, MAX_POSITION + 1, *_INT_EDGES],
    "query": ["q", "q" * MAX_QUERY_CHARS, "q" * (MAX_QUERY_CHARS + 1), "", "line\nbreak", "\x00", "\udcff", b"q",
              None, 7, ABSENT],
    "action": ["impression", "click", "like", "collect", "comment", "share", "follow", "hide", "conversion",
               "query", "", "Click", "click ", b"click", None, 1, ABSENT],
}
FIELDS = {
    "feed": ["event_id", "user_id", "ts_ms", "action", "item_id", "dwell_ms"],
    "search": ["event_id", "user_id", "ts_ms", "query", "clicked_item_id", "position"],
    "ads": ["event_id", "user_id", "ts_ms", "action", "ad_id", "creative_id"],
}
#: Unknown fields: harmless ones, and ones whose bytes the reference's full unpack rejects.
EXTRA_VALUES: list[Any] = [1, "text", None, [1, 2], {"k": "v"}, {1: 2}, {"k": {2: 3}}, "\udcff", b"\xff",
                           msgpack.ExtType(5, b"x"), 1.5]


def pack_pairs(pairs: list[tuple[Any, Any]], wide_header: bool = False) -> bytes:
    """A msgpack map from ``pairs`` in order (repeated keys allowed), optionally with a map16 header."""
    n = len(pairs)
    head = b"\xde" + n.to_bytes(2, "big") if wide_header or n > 15 else bytes([0x80 + n])
    pack = msgpack.Packer(use_bin_type=True, unicode_errors="surrogatepass").pack
    return head + b"".join(pack(k) + pack(v) for k, v in pairs)


def verdict(decoder: Any, scenario: str, message: Message, limits: EventLimits = LIMITS) -> tuple[str, object]:
    """``("ok", behavior)`` or ``("poison", reason)``; anything else raised fails the test."""
    key, value = message
    try:
        return "ok", decoder(scenario, key, value, NOW_MS, limits)
    except PoisonMessageError as exc:
        assert str(exc)
        return "poison", exc.reason


def assert_same(scenario: str, message: Message, limits: EventLimits = LIMITS) -> str:
    reference = verdict(decode_event, scenario, message, limits)
    fast = verdict(decode_event_fast, scenario, message, limits)
    assert fast == reference, f"{scenario} {message!r}"
    return str(reference[1]) if reference[0] == "poison" else "ok"


def base_payload(scenario: str, n: int = 1) -> dict[str, Any]:
    payload = valid_payload(scenario, "user-1", NOW_MS - 1_000, n)
    if scenario == "ads":
        payload["creative_id"] = "cr_1"
    return payload


@st.composite
def boundary_message(draw: st.DrawFn, scenario: str) -> Message:
    """A valid event with some fields set to edge values, left out, repeated or reordered,
    unknown fields added, the key changed, or the framing broken."""
    payload = base_payload(scenario, draw(st.integers(0, 99)))
    n_edges = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 3]))
    for name in draw(st.lists(st.sampled_from(FIELDS[scenario]), min_size=n_edges, max_size=n_edges, unique=True)):
        payload[name] = draw(st.sampled_from(EDGES[name]))
    pairs = [(k, v) for k, v in payload.items() if v is not ABSENT]
    pairs += [(draw(st.sampled_from(["x", "extra", b"bin_key", "scenario"])), draw(st.sampled_from(EXTRA_VALUES)))
              for _ in range(draw(st.sampled_from([0, 0, 1, 2])))]
    if pairs and draw(st.sampled_from([False, False, False, True])):  # a repeated key: the last one wins
        name = draw(st.sampled_from([k for k, _ in pairs]))
        pairs.append((name, draw(st.sampled_from(EDGES.get(name, EXTRA_VALUES)))))
        pairs = [(k, v) for k, v in pairs if v is not ABSENT]
    pairs = draw(st.permutations(pairs))
    value = pack_pairs(pairs, wide_header=draw(st.booleans()))
    framing = draw(st.sampled_from(["ok"] * 15 + ["trailing", "truncated", "array"]))
    if framing == "trailing":
        value += b"\xc0"
    elif framing == "truncated":
        value = value[:-1]
    elif framing == "array":
        value = msgpack.packb([dict(pairs)], use_bin_type=True, unicode_errors="surrogatepass")
    user = payload.get("user_id")
    key = user.encode("utf-8", "surrogatepass") if isinstance(user, str) else b"user-1"
    key = draw(st.sampled_from([key] * 4 + [None, b"", b"user-2", key + b" "]))
    return key, value


@settings(max_examples=2500, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fast_and_reference_decoders_agree_on_hostile_and_edge_messages(data: st.DataObject) -> None:
    scenario = data.draw(st.sampled_from(SCENARIO_NAMES))
    message = data.draw(st.one_of(hostile_message(scenario, NOW_MS), boundary_message(scenario),
                                          boundary_message(scenario)))
    event(assert_same(scenario, message))  # the mix of verdicts: --hypothesis-show-statistics


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_every_edge_value_of_every_field_gets_the_same_verdict(scenario: str) -> None:
    outcomes = set()
    for name in FIELDS[scenario]:
        for edge in EDGES[name]:
            payload = {k: v for k, v in {**base_payload(scenario), name: edge}.items() if v is not ABSENT}
            user = payload.get("user_id")
            key = user.encode("utf-8", "surrogatepass") if isinstance(user, str) else None
            outcomes.add(assert_same(scenario, (key, pack_pairs(list(payload.items())))))
    assert {"ok", "validation_error", "decode_error"} <= outcomes  # surrogates: not valid UTF-8


def test_search_cross_field_rules_agree() -> None:
    base = {k: v for k, v in base_payload("search").items() if k not in ("clicked_item_id", "position")}
    cases = {"clicked": "it_1", "none": None, "absent": ABSENT}
    for clicked in cases.values():
        for position in (0, None, ABSENT):
            payload = {**base, "clicked_item_id": clicked, "position": position}
            pairs = [(k, v) for k, v in payload.items() if v is not ABSENT]
            assert_same("search", (b"user-1", pack_pairs(pairs)))


def test_size_limit_is_exact() -> None:
    value = msgpack.packb({**base_payload("feed"), "pad": ""})
    limits = EventLimits(max_message_bytes=len(value))
    assert assert_same("feed", (b"user-1", value), limits) == "ok"
    bigger = msgpack.packb({**base_payload("feed"), "pad": "p"})
    assert assert_same("feed", (b"user-1", bigger), limits) == "message_too_large"
    assert assert_same("feed", (b"user-1", None)) == "decode_error"


def test_batch_decode_keeps_order_and_returns_errors_in_place() -> None:
    good = msgpack.packb(base_payload("ads"))
    out = decode_events("ads", [(b"user-1", good), (b"user-1", b"\xc1"), (b"other", good)], NOW_MS, LIMITS)
    assert out[0] == decode_event("ads", b"user-1", good, NOW_MS, LIMITS)
    assert [e.reason for e in out[1:] if isinstance(e, PoisonMessageError)] == ["decode_error", "key_mismatch"]


def test_fast_validation_detail_names_the_field() -> None:
    value = msgpack.packb({**base_payload("feed"), "action": "dance"})
    with pytest.raises(PoisonMessageError, match="action"):
        decode_event_fast("feed", b"user-1", value, NOW_MS, LIMITS)
