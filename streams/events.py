"""The wire schema of input events (pydantic models, msgpack maps) and their decoding to ``Behavior``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from state.records import Behavior
from streams.errors import PoisonMessageError

__all__ = [
    "EVENT_MODELS",
    "MIN_TS_MS",
    "AdsEvent",
    "AdsAction",
    "EventLimits",
    "FeedAction",
    "FeedEvent",
    "SearchEvent",
    "decode_event",
    "encode_event",
    "unpack_payload",
]

#: 2000-01-01T00:00:00Z: no event time may be earlier.
MIN_TS_MS = 946_684_800_000
MAX_ID_CHARS = 128
MAX_QUERY_CHARS = 512
MAX_DWELL_MS = 86_400_000
MAX_POSITION = 10_000

FeedAction = Literal["impression", "click", "like", "collect", "comment", "share", "follow", "hide"]
AdsAction = Literal["impression", "click", "conversion"]

#: Ids are printable: control characters (NUL, newline, escape, ...) break keys, logs and headers.
Id = Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[^\x00-\x1f\x7f]+$")]


@dataclass(frozen=True)
class EventLimits:
    """Limits checked at decode time: message size and how far into the future ``ts_ms`` may be."""

    max_message_bytes: int = 64 * 1024
    max_future_skew_ms: int = 5 * 60_000


class _Event(BaseModel):
    """Fields every event carries; unknown fields are ignored so producers can add fields first."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")
    scenario: ClassVar[str]

    event_id: Id
    user_id: Id
    ts_ms: int = Field(ge=MIN_TS_MS)

    @field_validator("ts_ms")
    @classmethod
    def _not_too_far_in_future(cls, value: int, info: ValidationInfo) -> int:
        context = info.context or {}
        now_ms, skew_ms = context.get("now_ms"), context.get("max_future_skew_ms")
        if now_ms is not None and skew_ms is not None and value > now_ms + skew_ms:
            raise ValueError(
                f"ts_ms={value} is more than {skew_ms} ms ahead of now_ms={now_ms}"
            )
        return value

    def to_behavior(self) -> Behavior:
        """The domain record this event becomes."""
        raise NotImplementedError


class FeedEvent(_Event):
    """An interaction with a feed item; ``dwell_ms`` is the time spent on it (0 when unknown)."""

    scenario: ClassVar[str] = "feed"

    action: FeedAction
    item_id: Id
    dwell_ms: int = Field(default=0, ge=0, le=MAX_DWELL_MS)

    def to_behavior(self) -> Behavior:
        return Behavior(
            event_id=self.event_id, user_id=self.user_id, scenario=self.scenario,
            ts_ms=self.ts_ms, action=self.action, item_id=self.item_id, dwell_ms=self.dwell_ms,
        )


class SearchEvent(_Event):
    """A search query; ``clicked_item_id`` / ``position`` are set when a result was clicked."""

    scenario: ClassVar[str] = "search"

    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    clicked_item_id: Id | None = None
    position: int | None = Field(default=None, ge=0, le=MAX_POSITION)

    @model_validator(mode="after")
    def _position_needs_click(self) -> SearchEvent:
        if self.position is not None and self.clicked_item_id is None:
            raise ValueError("position is set but clicked_item_id is not")
        return self

    def to_behavior(self) -> Behavior:
        return Behavior(
            event_id=self.event_id, user_id=self.user_id, scenario=self.scenario,
            ts_ms=self.ts_ms, action="click" if self.clicked_item_id else "query",
            item_id=self.clicked_item_id, text=self.query,
        )


class AdsEvent(_Event):
    """An ad impression, click or conversion on ``ad_id`` (optionally one ``creative_id``)."""

    scenario: ClassVar[str] = "ads"

    action: AdsAction
    ad_id: Id
    creative_id: Id | None = None

    def to_behavior(self) -> Behavior:
        return Behavior(
            event_id=self.event_id, user_id=self.user_id, scenario=self.scenario,
            ts_ms=self.ts_ms, action=self.action, item_id=self.ad_id,
        )


#: Scenario → the model of its topic's messages.
EVENT_MODELS: dict[str, type[_Event]] = {m.scenario: m for m in (FeedEvent, SearchEvent, AdsEvent)}


def encode_event(payload: dict[str, Any]) -> bytes:
    """The wire bytes of one event: a msgpack map (producers' side)."""
    return msgpack.packb(payload, use_bin_type=True)


def unpack_payload(value: bytes, limits: EventLimits) -> dict[str, Any]:
    """The message's msgpack map; ``PoisonMessageError`` when too large, not msgpack or not a map."""
    if len(value) > limits.max_message_bytes:
        raise PoisonMessageError(
            "message_too_large", f"{len(value)} bytes > limit {limits.max_message_bytes}"
        )
    try:
        payload = msgpack.unpackb(value, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise PoisonMessageError("decode_error", f"not msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(payload, dict):
        raise PoisonMessageError("decode_error", f"expected a msgpack map, got {type(payload).__name__}")
    return payload


def _short(exc: ValidationError) -> str:
    parts = [f"{'.'.join(map(str, e['loc'])) or '<event>'}: {e['msg']}" for e in exc.errors()[:5]]
    return "; ".join(parts)


def decode_event(
    scenario: str, key: bytes | None, value: bytes | None, now_ms: int, limits: EventLimits
) -> Behavior:
    """Decode and validate one message of ``scenario``'s topic into a ``Behavior``.

    Raises ``PoisonMessageError`` (reason ``message_too_large``, ``decode_error``,
    ``validation_error`` or ``key_mismatch``) for anything that can never be processed.
    """
    if value is None:
        raise PoisonMessageError("decode_error", "message has no value (tombstone)")
    payload = unpack_payload(value, limits)
    model = EVENT_MODELS[scenario]
    context = {"now_ms": now_ms, "max_future_skew_ms": limits.max_future_skew_ms}
    try:
        event = model.model_validate(payload, context=context)
    except ValidationError as exc:
        raise PoisonMessageError("validation_error", f"{scenario} event: {_short(exc)}") from exc
    if key != event.user_id.encode():
        raise PoisonMessageError(
            "key_mismatch", f"message key {key!r} differs from user_id {event.user_id!r}"
        )
    return event.to_behavior()
