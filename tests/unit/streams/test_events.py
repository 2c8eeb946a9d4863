"""Decoding and validation of wire events, and the docs matching the models."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest

from state.records import ACTIONS, Behavior
from streams.dlq import REASONS
from streams.errors import PoisonMessageError
from streams.events import EVENT_MODELS, MIN_TS_MS, EventLimits, decode_event, encode_event

NOW_MS = 1_750_000_000_000
LIMITS = EventLimits(max_message_bytes=4096, max_future_skew_ms=60_000)
DOCS = Path(__file__).resolve().parents[3] / "docs" / "events.md"

FEED = {"event_id": "e1", "user_id": "u1", "ts_ms": NOW_MS, "action": "like", "item_id": "i1",
        "dwell_ms": 700}
SEARCH = {"event_id": "e2", "user_id": "u1", "ts_ms": NOW_MS, "query": "tent",
          "clicked_item_id": "i2", "position": 3}
ADS = {"event_id": "e3", "user_id": "u1", "ts_ms": NOW_MS, "action": "conversion", "ad_id": "a1",
       "creative_id": "c1"}


def decode(scenario: str, payload: object, key: bytes | None = b"u1") -> Behavior:
    value = payload if isinstance(payload, bytes) else msgpack.packb(payload, use_bin_type=True)
    return decode_event(scenario, key, value, NOW_MS, LIMITS)


def reason_of(scenario: str, payload: object, key: bytes | None = b"u1") -> str:
    with pytest.raises(PoisonMessageError) as info:
        decode(scenario, payload, key)
    return info.value.reason


def test_each_scenario_maps_to_the_documented_behavior() -> None:
    assert decode("feed", FEED) == Behavior("e1", "u1", "feed", NOW_MS, "like", "i1", None, 700)
    assert decode("search", SEARCH) == Behavior("e2", "u1", "search", NOW_MS, "click", "i2", "tent")
    no_click = {k: v for k, v in SEARCH.items() if k not in ("clicked_item_id", "position")}
    assert decode("search", no_click) == Behavior("e2", "u1", "search", NOW_MS, "query", None, "tent")
    assert decode("ads", ADS) == Behavior("e3", "u1", "ads", NOW_MS, "conversion", "a1")


def test_every_action_the_models_allow_is_in_the_shared_vocabulary() -> None:
    for model in EVENT_MODELS.values():
        field = model.model_fields.get("action")
        if field is not None:
            assert set(field.annotation.__args__) <= set(ACTIONS)


def test_unknown_fields_are_ignored() -> None:
    assert decode("feed", {**FEED, "new_field": 1}).item_id == "i1"


@pytest.mark.parametrize(
    ("scenario", "payload", "reason"),
    [
        ("feed", b"\xc1", "decode_error"),
        ("feed", [1, 2], "decode_error"),
        ("feed", {1: 2}, "decode_error"),
        ("feed", {**FEED, "action": "query"}, "validation_error"),
        ("feed", {**FEED, "ts_ms": str(NOW_MS)}, "validation_error"),
        ("feed", {**FEED, "ts_ms": True}, "validation_error"),
        ("feed", {**FEED, "ts_ms": MIN_TS_MS - 1}, "validation_error"),
        ("feed", {**FEED, "ts_ms": NOW_MS + 60_001}, "validation_error"),
        ("feed", {**FEED, "item_id": ""}, "validation_error"),
        ("feed", {**FEED, "item_id": "x" * 129}, "validation_error"),
        ("feed", {**FEED, "dwell_ms": -1}, "validation_error"),
        ("feed", {k: v for k, v in FEED.items() if k != "event_id"}, "validation_error"),
        ("search", {**SEARCH, "clicked_item_id": None}, "validation_error"),
        ("search", {**SEARCH, "query": "q" * 513}, "validation_error"),
        ("ads", {**ADS, "action": "like"}, "validation_error"),
        ("ads", {**ADS, "ad_id": b"bytes"}, "validation_error"),
        ("feed", {**FEED, "item_id": "x" * 5000}, "message_too_large"),
        ("feed", {**FEED, "item_id": "i1\n"}, "validation_error"),
        ("feed", {**FEED, "event_id": "e\x00"}, "validation_error"),
        ("ads", {**ADS, "ad_id": "a\x1b[31m"}, "validation_error"),
    ],
)
def test_poison_messages_get_a_reason(scenario: str, payload: object, reason: str) -> None:
    assert reason_of(scenario, payload) == reason


def test_key_must_equal_user_id() -> None:
    assert reason_of("feed", FEED, key=b"u2") == "key_mismatch"
    assert reason_of("feed", FEED, key=None) == "key_mismatch"


def test_tombstone_is_a_decode_error() -> None:
    with pytest.raises(PoisonMessageError) as info:
        decode_event("feed", b"u1", None, NOW_MS, LIMITS)
    assert info.value.reason == "decode_error"


def test_skew_limit_allows_exactly_the_configured_future() -> None:
    assert decode("feed", {**FEED, "ts_ms": NOW_MS + 60_000}).ts_ms == NOW_MS + 60_000


def test_validation_detail_names_the_field() -> None:
    with pytest.raises(PoisonMessageError, match="action"):
        decode("feed", {**FEED, "action": "dance"})


def test_encode_event_round_trips() -> None:
    assert msgpack.unpackb(encode_event(FEED)) == FEED


def test_docs_mention_every_model_field_and_reason_code() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for scenario, model in EVENT_MODELS.items():
        assert f"`{scenario}` — `{model.__name__}`" in text
        for name in model.model_fields:
            assert f"`{name}`" in text, f"docs/events.md misses field {model.__name__}.{name}"
        action = model.model_fields.get("action")
        for value in action.annotation.__args__ if action else ():
            assert re.search(rf"`{value}`", text), f"docs/events.md misses action {value}"
    for reason in REASONS:
        assert f"`{reason}`" in text, f"docs/events.md misses reason {reason}"
    assert str(MIN_TS_MS) in text


def test_printable_unicode_ids_are_accepted() -> None:
    assert decode("feed", {**FEED, "item_id": "café-☕ 42"}).item_id == "café-☕ 42"
