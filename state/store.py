"""Loads persisted user sequences back from Redis so a restarted worker resumes and dedupes."""

from __future__ import annotations

import logging

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
        self, client: redis.Redis, keys: RedisKeys, config: StateConfig | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self.config = config or StateConfig()

    def load_many(self, user_ids: list[str]) -> dict[str, UserSequence]:
        """Sequences of the users that have a stored state; absent users are absent here.

        One pipelined round trip. A sequence's ``version`` is raised to the stored ``ver``
        when that is higher, so the next publish always goes past it. A key holding ``ver``
        but no ``seq`` yields an empty sequence at that version. Raises
        ``StoreUnavailableError`` (Redis down) and ``StateFormatError`` (undecodable state).
        """
        unique_ids = list(dict.fromkeys(user_ids))
        if not unique_ids:
            return {}
        with translate_redis_errors("load_many"):
            pipe = self._client.pipeline(transaction=False)
            for user_id in unique_ids:
                pipe.hmget(self._keys.user(user_id), [F_SEQ, F_VER])
            rows = pipe.execute()
        loaded: dict[str, UserSequence] = {}
        for user_id, (seq_bytes, ver_bytes) in zip(unique_ids, rows, strict=True):
            if seq_bytes is None and ver_bytes is None:
                continue
            loaded[user_id] = self._decode(user_id, seq_bytes, ver_bytes)
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
