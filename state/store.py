"""Loads persisted user sequences back from Redis so a restarted worker resumes and dedupes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from state.config import StateConfig
from state.errors import StateFormatError, translate_redis_errors
from state.keys import RedisKeys
from state.layout import F_SEQ, F_VER, decode_int
from state.sequence import UserSequence

__all__ = ["SequenceStore"]

logger = logging.getLogger(__name__)


class SequenceStore:
    """Reads the ``seq`` field that ``RedisPublisher`` writes beside each user's vectors."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, config: StateConfig | None = None,
        on_quarantine: Callable[[str], None] | None = None,
    ) -> None:
        self._client = client
        self._keys = keys
        self.config = config or StateConfig()
        #: Called with the user id of each stored state that could not be decoded.
        self.on_quarantine = on_quarantine

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
                pipe.hmget(self._keys.user(user_id), [F_SEQ, F_VER])
            rows = pipe.execute(raise_on_error=False)
        loaded: dict[str, UserSequence] = {}
        for user_id, row in zip(unique_ids, rows, strict=True):
            if isinstance(row, redis.exceptions.ResponseError):  # e.g. WRONGTYPE: not a hash
                loaded[user_id] = self._quarantine(user_id, None, None, row)
                continue
            if isinstance(row, Exception):
                with translate_redis_errors("load_many"):
                    raise row
            seq_bytes, ver_bytes = row
            if seq_bytes is None and ver_bytes is None:
                continue
            try:
                loaded[user_id] = self._decode(user_id, seq_bytes, ver_bytes)
            except StateFormatError as exc:
                loaded[user_id] = self._quarantine(user_id, seq_bytes, ver_bytes, exc)
        logger.debug("loaded sequences requested=%d found=%d", len(unique_ids), len(loaded))
        return loaded

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
