"""The update-notification message: what the worker produces once Redis has a user's vectors."""

from __future__ import annotations

from dataclasses import dataclass

import msgpack

from streams.errors import PoisonMessageError

__all__ = ["Notification", "decode_notification", "encode_notification"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One message of ``<prefix>updates``: Redis holds ``user_id`` at ``version`` or newer."""

    user_id: str
    version: int
    watermark_ms: int
    computed_at_ms: int
    model_version: str | None
    #: Scenarios whose events this version added; empty when not known (a re-sent notification).
    scenarios: tuple[str, ...] = ()


def decode_notification(value: bytes | None) -> Notification:
    """Decode the worker's msgpack map; ``PoisonMessageError`` when it is not one."""
    try:
        data = msgpack.unpackb(value, raw=False)  # None or not bytes: TypeError
        return Notification(str(data["user_id"]), int(data["version"]), int(data["watermark_ms"]),
                            int(data["computed_at_ms"]), data.get("model_version"),
                            tuple(str(s) for s in data.get("scenarios") or ()))
    except (ValueError, TypeError, KeyError, msgpack.UnpackException) as exc:
        raise PoisonMessageError("decode_error", f"not a notification: {exc!r}") from exc


def encode_notification(note: Notification) -> bytes:
    """The msgpack map ``{user_id, version, watermark_ms, computed_at_ms, model_version, scenarios}``."""
    return msgpack.packb({
        "user_id": note.user_id, "version": note.version, "watermark_ms": note.watermark_ms,
        "computed_at_ms": note.computed_at_ms, "model_version": note.model_version,
        "scenarios": list(note.scenarios),
    }, use_bin_type=True)
