"""The worker's fast decoder of input events: msgspec structs that accept and reject exactly what
the pydantic schema in ``streams.events`` does, and return the same ``Behavior``.

The pydantic models stay the documented schema; ``tests/unit/streams/test_fast_decode.py`` holds
the two decoders to the same verdicts. The fast path is one typed ``msgspec`` decode. It is taken
only when every entry of the message's map is a known field: unknown fields are skipped by msgspec
without checking their bytes, so a message with unknown or repeated keys (or one msgspec rejects)
goes the exact path instead: ``msgpack.unpackb`` as the reference does (``decode_error``), then the
known fields converted by the same structs (``validation_error``). The ids' no-control-characters
rule is checked after decoding (``rule_error``): as a msgspec ``pattern`` it costs ~1 µs a message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, ClassVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from state.records import Behavior
from streams.errors import PoisonMessageError
from streams.events import (
    MAX_DWELL_MS,
    MAX_ID_CHARS,
    MAX_POSITION,
    MAX_QUERY_CHARS,
    MIN_TS_MS,
    AdsAction,
    EventLimits,
    FeedAction,
    unpack_payload,
)

__all__ = ["WIRE_TYPES", "AdsWire", "FeedWire", "SearchWire", "decode_event_fast", "decode_events"]

#: What ids must not contain: ``streams.events.Id``'s pattern, as a search.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")

Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_CHARS)]  # + no control characters: rule_error
TsMs = Annotated[int, Meta(ge=MIN_TS_MS)]
DwellMs = Annotated[int, Meta(ge=0, le=MAX_DWELL_MS)]
Query = Annotated[str, Meta(min_length=1, max_length=MAX_QUERY_CHARS)]
Position = Annotated[int, Meta(ge=0, le=MAX_POSITION)]


class _Wire(Struct, gc=False):
    """Fields every event carries. Optional fields default to ``UNSET`` so that the number of
    fields present can be compared with the map's length."""

    _ID_FIELDS: ClassVar[tuple[str, ...]]

    event_id: Id
    user_id: Id
    ts_ms: TsMs

    def present(self) -> int:
        """How many of the struct's fields the message carried."""
        raise NotImplementedError

    def rule_error(self) -> str | None:
        """A rule the event breaks that its field types do not express, or ``None``."""
        raise NotImplementedError

    def to_behavior(self) -> Behavior:
        """The domain record this event becomes (as ``streams.events`` builds it)."""
        raise NotImplementedError

    def _id_error(self) -> str | None:
        """The first id holding a control character. The quick check before it is ``isprintable()``
        on the ids joined: printable text holds no control characters (the converse does not hold:
        e.g. a no-break space is not printable, so then this full check decides)."""
        for name in self._ID_FIELDS:
            value = getattr(self, name)
            if isinstance(value, str) and CONTROL_CHARS.search(value):
                return f"{name}: control characters are not allowed"
        return None


class FeedWire(_Wire):
    """``FeedEvent`` as a msgspec struct."""

    _ID_FIELDS = ("event_id", "user_id", "item_id")

    action: FeedAction
    item_id: Id
    dwell_ms: DwellMs | UnsetType = UNSET

    def present(self) -> int:
        return 5 if self.dwell_ms is UNSET else 6

    def rule_error(self) -> str | None:
        return None if (self.event_id + self.user_id + self.item_id).isprintable() else self._id_error()

    def to_behavior(self) -> Behavior:
        dwell_ms = 0 if self.dwell_ms is UNSET else self.dwell_ms
        return Behavior(self.event_id, self.user_id, "feed", self.ts_ms, self.action, self.item_id, None, dwell_ms)


class SearchWire(_Wire):
    """``SearchEvent`` as a msgspec struct."""

    _ID_FIELDS = ("event_id", "user_id", "clicked_item_id")

    query: Query
    clicked_item_id: Id | None | UnsetType = UNSET
    position: Position | None | UnsetType = UNSET

    def present(self) -> int:
        return 4 + (self.clicked_item_id is not UNSET) + (self.position is not UNSET)

    def rule_error(self) -> str | None:
        clicked = self.clicked_item_id or ""  # UNSET and None are falsy; an id is never empty
        if not (self.event_id + self.user_id + clicked).isprintable() and (error := self._id_error()):
            return error
        if self.position is not None and self.position is not UNSET and not clicked:
            return "<event>: position is set but clicked_item_id is not"
        return None

    def to_behavior(self) -> Behavior:
        clicked = self.clicked_item_id or None
        return Behavior(self.event_id, self.user_id, "search", self.ts_ms, "click" if clicked else "query",
                        clicked, self.query)


class AdsWire(_Wire):
    """``AdsEvent`` as a msgspec struct (``creative_id`` is validated, not kept)."""

    _ID_FIELDS = ("event_id", "user_id", "ad_id", "creative_id")

    action: AdsAction
    ad_id: Id
    creative_id: Id | None | UnsetType = UNSET

    def present(self) -> int:
        return 5 if self.creative_id is UNSET else 6

    def rule_error(self) -> str | None:
        ids = self.event_id + self.user_id + self.ad_id + (self.creative_id or "")
        return None if ids.isprintable() else self._id_error()

    def to_behavior(self) -> Behavior:
        return Behavior(self.event_id, self.user_id, "ads", self.ts_ms, self.action, self.ad_id)


#: Scenario → the struct of its topic's messages.
WIRE_TYPES: dict[str, type[_Wire]] = {"feed": FeedWire, "search": SearchWire, "ads": AdsWire}
_DECODERS = {scenario: msgspec.msgpack.Decoder(wire) for scenario, wire in WIRE_TYPES.items()}


def _map_len(value: bytes) -> int:
    """Entries of the msgpack map ``value`` starts with (-1 when it does not start with one)."""
    head = value[0]
    if 0x80 <= head <= 0x8F:
        return head - 0x80
    if head == 0xDE:
        return int.from_bytes(value[1:3], "big")
    if head == 0xDF:
        return int.from_bytes(value[1:5], "big")
    return -1


def _decode_exact(scenario: str, value: bytes, limits: EventLimits) -> _Wire:
    """The slow path: unpack the whole message as the reference does, then convert its known fields."""
    payload = unpack_payload(value, limits)
    wire = WIRE_TYPES[scenario]
    known = {name: payload[name] for name in wire.__struct_fields__ if name in payload}
    try:
        return msgspec.convert(known, wire)
    except msgspec.ValidationError as exc:
        raise PoisonMessageError("validation_error", f"{scenario} event: {exc}") from exc


def decode_event_fast(
    scenario: str, key: bytes | None, value: bytes | None, now_ms: int, limits: EventLimits
) -> Behavior:
    """``streams.events.decode_event`` with msgspec: the same ``Behavior``, or a
    ``PoisonMessageError`` with the same reason (its detail text may differ)."""
    if value is None:
        raise PoisonMessageError("decode_error", "message has no value (tombstone)")
    if len(value) > limits.max_message_bytes:
        raise PoisonMessageError("message_too_large", f"{len(value)} bytes > limit {limits.max_message_bytes}")
    try:
        event = _DECODERS[scenario].decode(value)
    except msgspec.DecodeError:  # ValidationError included: the exact path tells them apart
        event = None
    if event is None or event.present() != _map_len(value):
        event = _decode_exact(scenario, value, limits)
    if event.ts_ms > now_ms + limits.max_future_skew_ms:
        raise PoisonMessageError(
            "validation_error", f"{scenario} event: ts_ms: ts_ms={event.ts_ms} is more than "
            f"{limits.max_future_skew_ms} ms ahead of now_ms={now_ms}")
    rule = event.rule_error()
    if rule is not None:
        raise PoisonMessageError("validation_error", f"{scenario} event: {rule}")
    if key != event.user_id.encode():
        raise PoisonMessageError("key_mismatch", f"message key {key!r} differs from user_id {event.user_id!r}")
    return event.to_behavior()


def decode_events(
    scenario: str, messages: Iterable[tuple[bytes | None, bytes | None]], now_ms: int, limits: EventLimits
) -> list[Behavior | PoisonMessageError]:
    """``decode_event_fast`` over ``(key, value)`` pairs of one scenario: a ``Behavior`` or the
    ``PoisonMessageError`` per message, in order."""
    out: list[Behavior | PoisonMessageError] = []
    for key, value in messages:
        try:
            out.append(decode_event_fast(scenario, key, value, now_ms, limits))
        except PoisonMessageError as exc:
            out.append(exc)
    return out
