"""Batch reads of users' embeddings from Redis into numpy, with freshness, for consumers."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import redis

from state.errors import InvalidInputError, StateFormatError, translate_redis_errors
from state.keys import RedisKeys
from state.layout import (
    F_AT,
    F_D,
    F_FMT,
    F_MV,
    F_Q,
    F_SEQ,
    F_VER,
    F_WM,
    decode_int,
    decode_vectors,
    vector_field,
)
from state.records import SCENARIOS

__all__ = ["MISSING_AGE_MS", "EmbeddingReader", "ReadResult", "UserEmbedding"]

logger = logging.getLogger(__name__)

#: ``age_ms`` of a user without a vector: larger than any real age, so ``age <= limit`` drops it.
MISSING_AGE_MS = int(np.iinfo(np.int64).max)


@dataclass(frozen=True, eq=False)
class ReadResult:
    """One scenario's vectors for a batch of users, aligned with ``user_ids``.

    ``vectors`` is ``[N, Q, D]`` float32, zeros where ``found`` is false. Metadata is filled
    whenever the user's key exists (0 / ``None`` otherwise); ``found`` additionally requires the
    scenario's vectors with the batch's ``Q × D``.
    """

    user_ids: list[str]
    scenario: str
    vectors: np.ndarray
    found: np.ndarray
    version: np.ndarray
    watermark_ms: np.ndarray
    computed_at_ms: np.ndarray
    model_version: list[str | None]

    def age_ms(self, now_ms: int) -> np.ndarray:
        """``now_ms - computed_at_ms`` per user (int64); ``MISSING_AGE_MS`` where not found."""
        age = np.int64(now_ms) - self.computed_at_ms
        return np.where(self.found, age, np.int64(MISSING_AGE_MS))


@dataclass(frozen=True, eq=False)
class UserEmbedding:
    """Everything stored for one user (for ``inspect``): vectors of every scenario and metadata."""

    user_id: str
    version: int
    watermark_ms: int
    computed_at_ms: int
    model_version: str | None
    vectors: dict[str, np.ndarray]
    ttl_s: int | None
    layout_version: int
    sequence_state: bytes | None


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


class EmbeddingReader:
    """Reads what ``RedisPublisher`` wrote; pass ``q``/``d`` to pin the expected shape."""

    def __init__(
        self, client: redis.Redis, keys: RedisKeys, q: int | None = None, d: int | None = None
    ) -> None:
        self._client = client
        self._keys = keys
        self.q = q
        self.d = d

    def get(self, user_ids: list[str], scenario: str) -> ReadResult:
        """One scenario's vectors for ``user_ids`` in one pipelined round trip.

        Without pinned ``q``/``d`` the shape comes from the first user found; a user whose
        vectors have another shape (a model rollout in progress) is reported not found.
        """
        if scenario not in SCENARIOS:
            raise InvalidInputError(f"unknown scenario {scenario!r}; known: {list(SCENARIOS)}")
        fields = [F_VER, F_WM, F_AT, F_MV, F_Q, F_D, vector_field(scenario)]
        with translate_redis_errors("get"):
            pipe = self._client.pipeline(transaction=False)
            for user_id in user_ids:
                pipe.hmget(self._keys.user(user_id), fields)
            rows = pipe.execute() if user_ids else []
        n = len(user_ids)
        shapes = [self._shape(row) for row in rows]
        q, d = self._batch_shape(shapes)
        vectors = np.zeros((n, q, d), dtype=np.float32)
        found = np.zeros(n, dtype=bool)
        meta = np.zeros((3, n), dtype=np.int64)
        model_version: list[str | None] = [None] * n
        for i, (row, shape) in enumerate(zip(rows, shapes, strict=True)):
            ver, wm, at, mv, _, _, blob = row
            if ver is None:
                continue
            try:
                meta[:, i] = (decode_int(ver, F_VER), decode_int(wm, F_WM), decode_int(at, F_AT))
                model_version[i] = _text(mv)
                if blob is not None and shape == (q, d):
                    vectors[i] = decode_vectors(blob, q, d)
                    found[i] = True
                elif blob is not None:
                    logger.warning(
                        "vector shape mismatch user_id=%s shape=%s batch=%s",
                        user_ids[i], shape, (q, d),
                    )
            except StateFormatError as exc:
                meta[:, i] = 0
                model_version[i] = None
                logger.warning("undecodable user hash user_id=%s error=%s", user_ids[i], exc)
        return ReadResult(
            user_ids=list(user_ids),
            scenario=scenario,
            vectors=vectors,
            found=found,
            version=meta[0],
            watermark_ms=meta[1],
            computed_at_ms=meta[2],
            model_version=model_version,
        )

    @staticmethod
    def _shape(row: list[bytes | None]) -> tuple[int, int] | None:
        if row[0] is None or row[-1] is None:
            return None
        try:
            return decode_int(row[4], F_Q), decode_int(row[5], F_D)
        except StateFormatError:
            return None

    def _batch_shape(self, shapes: list[tuple[int, int] | None]) -> tuple[int, int]:
        if self.q is not None and self.d is not None:
            return self.q, self.d
        first = next((s for s in shapes if s is not None), (self.q or 0, self.d or 0))
        q = self.q if self.q is not None else first[0]
        d = self.d if self.d is not None else first[1]
        return q, d

    def get_user(self, user_id: str) -> UserEmbedding | None:
        """Every scenario's vectors and the metadata of one user, or ``None`` when absent."""
        with translate_redis_errors("get_user"):
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(self._keys.user(user_id))
            pipe.ttl(self._keys.user(user_id))
            raw, ttl_s = pipe.execute()
        if not raw:
            return None
        fields = {k.decode("utf-8", errors="replace"): v for k, v in raw.items()}
        if F_VER not in fields:
            raise StateFormatError(f"user_id={user_id}: key has no {F_VER!r} field")
        q, d = decode_int(fields.get(F_Q), F_Q), decode_int(fields.get(F_D), F_D)
        prefix = vector_field("")
        vectors = {
            name[len(prefix) :]: decode_vectors(blob, q, d)
            for name, blob in sorted(fields.items())
            if name.startswith(prefix)
        }
        return UserEmbedding(
            user_id=user_id,
            version=decode_int(fields.get(F_VER), F_VER),
            watermark_ms=decode_int(fields.get(F_WM), F_WM),
            computed_at_ms=decode_int(fields.get(F_AT), F_AT),
            model_version=_text(fields.get(F_MV)),
            vectors=vectors,
            ttl_s=int(ttl_s) if ttl_s is not None and int(ttl_s) >= 0 else None,
            layout_version=decode_int(fields.get(F_FMT), F_FMT),
            sequence_state=fields.get(F_SEQ),
        )
