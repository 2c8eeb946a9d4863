"""Loads persisted user sequences back from Redis so a restarted worker resumes and dedupes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from state.config import StateConfig
from state.errors import StateFormatError, translate_redis_errors
from state.keys import RedisKeys
from state.layout import F_AT, F_MV, F_NV, F_SEQ, F_VER, F_WM, decode_int
from state.sequence import UserSequence

__all__ = ["NOTIFY_FIELDS", "SequenceStore", "StoredVersion", "unnotified_version"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredVersion:
    """A published version whose update notification was never acknowledged (``nv`` < ``ver``)."""

    user_id: str
    version: int
    watermark_ms: int
    computed_at_ms: int
    model_version: str


#: The metadata fields ``unnotified_version`` reads after ``ver``, in its argument order.
NOTIFY_FIELDS = (F_NV, F_WM, F_AT, F_MV)


def unnotified_version(user_id: str, ver: bytes | None, nv: bytes | None, wm: bytes | None, at: bytes | None,
                       mv: bytes | None) -> StoredVersion | None:
    """The stored version when its notification was never acknowledged (``nv`` absent or < ``ver``);
    ``None`` when it was, or when no vectors were published (a bare version, e.g. after a
    quarantine). Raises ``StateFormatError`` for an unreadable field."""
    if ver is None or mv is None:
        return None
    version = decode_int(ver, F_VER)
    if decode_int(nv, F_NV, default=-1) >= version:
        return None
    return StoredVersion(user_id, version, decode_int(wm, F_WM), decode_int(at, F_AT), mv.decode("utf-8", "replace"))


class SequenceStore:
    """Reads the ``seq`` field that ``RedisPublisher`` writes beside each user's vectors."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, config: StateConfig | None = None,
        on_quarantine: Callable[[str], None] | None = None,
        on_unnotified: Callable[[StoredVersion], None] | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.config = config or StateConfig()
        #: Called with the user id of each stored state that could not be decoded.
        self.on_quarantine = on_quarantine
        #: Called for each loaded user whose stored version was never notified (see
        #: ``RedisPublisher.mark_notified``), so the caller can notify it again.
        self.on_unnotified = on_unnotified

    def load_many(self, user_ids: list[str]) -> dict[str, UserSequence]:
        """Sequences of the users that have a stored state; absent users are absent here.

        One pipelined round trip. A sequence's ``version`` is raised to the stored ``ver``
        when that is higher, so the next publish always goes past it. A key holding ``ver``
        but no ``seq`` yields an empty sequence at that version. An undecodable state (garbage
        bytes, a key of the wrong type) is **quarantined**: copied under ``keys.quarantine``,
        removed from the user's key, and the user restarts from an empty sequence (at the stored
        version when that is readable, so versions stay monotonic). Raises
        ``StoreUnavailableError`` when Redis is down.
        """
        unique_ids = list(dict.fromkeys(user_ids))
        if not unique_ids:
            return {}
        with translate_redis_errors("load_many"):
            pipe = self._client.pipeline(transaction=False)
            for user_id in unique_ids:
                pipe.hmget(self._keys.user(user_id), [F_SEQ, F_VER, *NOTIFY_FIELDS])
            rows = pipe.execute(raise_on_error=False)
        loaded: dict[str, UserSequence] = {}
        for user_id, row in zip(unique_ids, rows, strict=True):
            if isinstance(row, redis.exceptions.ResponseError):  # e.g. WRONGTYPE: not a hash
                loaded[user_id] = self._quarantine(user_id, None, None, row)
                continue
            if isinstance(row, Exception):
                with translate_redis_errors("load_many"):
                    raise row
            seq_bytes, ver_bytes, *meta = row
            if seq_bytes is None and ver_bytes is None:
                continue
            try:
                loaded[user_id] = self._decode(user_id, seq_bytes, ver_bytes)
            except StateFormatError as exc:
                loaded[user_id] = self._quarantine(user_id, seq_bytes, ver_bytes, exc)
                continue
            self._check_notified(user_id, ver_bytes, meta)
        logger.debug("loaded sequences requested=%d found=%d", len(unique_ids), len(loaded))
        return loaded

    def _check_notified(self, user_id: str, ver_bytes: bytes | None, meta: list[bytes | None]) -> None:
        if self.on_unnotified is None:
            return
        try:
            stored = unnotified_version(user_id, ver_bytes, *meta)
        except StateFormatError as exc:
            logger.warning("cannot re-notify user_id=%s: %s", user_id, exc)
            return
        if stored is not None:
            self.on_unnotified(stored)

    def _decode(
        self, user_id: str, seq_bytes: bytes | None, ver_bytes: bytes | None
    ) -> UserSequence:
        stored_version = decode_int(ver_bytes, F_VER)
        if seq_bytes is None:
            seq = UserSequence(user_id, self.config)
        else:
            try:
                seq = UserSequence.from_bytes(seq_bytes, self.config)
            except StateFormatError as exc:
                raise StateFormatError(f"user_id={user_id}: {exc}") from exc
            if seq.user_id != user_id:
                raise StateFormatError(
                    f"user_id={user_id}: stored state belongs to {seq.user_id!r}"
                )
        seq.version = max(seq.version, stored_version)
        return seq

    def _quarantine(self, user_id: str, seq_bytes: bytes | None, ver_bytes: bytes | None,
                    error: Exception) -> UserSequence:
        """Keep the bad state aside, clear it from the user's key, and start the user afresh."""
        key = self._keys.user(user_id)
        try:
            version = decode_int(ver_bytes, F_VER)
        except StateFormatError:
            version = None
        with translate_redis_errors("quarantine"):
            dump = self._client.dump(key) if seq_bytes is None and ver_bytes is None else None
            pipe = self._client.pipeline(transaction=False)
            pipe.hset(self._keys.quarantine(user_id), mapping={
                "reason": str(error), "at_ms": int(time.time() * 1000), "seq": seq_bytes or b"",
                "ver": ver_bytes or b"", "dump": dump or b""})
            if dump is not None or version is None:
                pipe.delete(key)  # not a hash, or an unreadable version: nothing of it can be kept
            else:
                pipe.hdel(key, F_SEQ)
            pipe.execute()
        logger.error("stored state quarantined user_id=%s key=%s reason=%s", user_id,
                     self._keys.quarantine(user_id), error)
        if self.on_quarantine is not None:
            self.on_quarantine(user_id)
        seq = UserSequence(user_id, self.config)
        seq.version = version or 0
        return seq
