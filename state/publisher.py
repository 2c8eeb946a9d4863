"""Writes users' vectors, metadata and sequence state to Redis, never replacing a newer version."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field

import numpy as np
import redis
import redis.exceptions
from redis.commands.core import Script

from state.errors import InvalidInputError, StateError, translate_redis_errors
from state.keys import RedisKeys
from state.layout import (
    F_AT,
    F_D,
    F_FMT,
    F_MV,
    F_Q,
    F_SEQ,
    F_VER,
    F_WID,
    F_WM,
    LAYOUT_VERSION,
    encode_vectors,
    vector_field,
)
from state.records import SCENARIOS

Call = tuple[str, list[bytes | str | int]]

__all__ = ["MARK_NOTIFIED_LUA", "PUBLISH_LUA", "RedisPublisher", "UserUpdate"]

logger = logging.getLogger(__name__)

#: KEYS[1] = user hash; ARGV[1] = new version; ARGV[2] = ttl_s; ARGV[3] = write id;
#: ARGV[4..] = field, value pairs (``wid`` among them). Refuses (returns 0) when the stored
#: ``ver`` is >= the new one, unless the stored write is this very write (a retry after a lost
#: reply: returns 2); otherwise replaces the whole hash (no stale scenario fields survive, and
#: ``nv`` goes: the new version is not notified yet), refreshes the TTL and returns 1.
PUBLISH_LUA = """
local cur = redis.call('HGET', KEYS[1], 'ver')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then
  if redis.call('HGET', KEYS[1], 'wid') == ARGV[3] then
    return 2
  end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

#: KEYS[1] = user hash; ARGV[1] = version. Records that the update notification of ``version``
#: was acknowledged, if that version is still the stored one (a newer writer notifies its own).
MARK_NOTIFIED_LUA = """
if redis.call('HGET', KEYS[1], 'ver') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'nv', ARGV[1])
  return 1
end
return 0
"""


@dataclass(frozen=True, eq=False)
class UserUpdate:
    """Everything written for one user; ``vectors`` is ``[S, Q, D]`` in ``scenarios`` order."""

    user_id: str
    version: int
    watermark_ms: int
    computed_at_ms: int
    model_version: str
    scenarios: tuple[str, ...]
    vectors: np.ndarray
    sequence_state: bytes
    #: Identifies this write, so a retry of it is recognised rather than refused.
    write_id: str = field(default_factory=lambda: secrets.token_hex(8))

    def __post_init__(self) -> None:
        if self.version < 0:
            raise InvalidInputError(f"version must be >= 0, got {self.version}")
        unknown = [s for s in self.scenarios if s not in SCENARIOS]
        if unknown or len(set(self.scenarios)) != len(self.scenarios):
            raise InvalidInputError(f"scenarios must be distinct known names: {self.scenarios}")
        shape = np.shape(self.vectors)
        if len(shape) != 3 or shape[0] != len(self.scenarios):
            raise InvalidInputError(
                f"vectors must be [S={len(self.scenarios)}, Q, D], got shape {shape}"
            )


class RedisPublisher:
    """Publishes batches of ``UserUpdate`` in one pipelined round trip of one Lua script."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, ttl_s: int = 30 * 24 * 3600) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be > 0, got {ttl_s}")
        self._client = client
        self._keys = keys
        self.ttl_s = ttl_s
        self._script = client.register_script(PUBLISH_LUA)  # computes the sha; no I/O
        self._mark_script = client.register_script(MARK_NOTIFIED_LUA)

    def publish(self, updates: list[UserUpdate]) -> list[bool]:
        """Write each update unless Redis holds a version ≥ it; ``True`` per update written
        (by this call, or by an earlier try of the same update whose reply was lost).

        Raises ``StoreUnavailableError`` when Redis cannot be reached (nothing is known to be
        written then: retry the whole batch, which the version check makes idempotent).
        """
        if not updates:
            return []
        calls = [self._call_args(u) for u in updates]
        results = self._run(self._script, PUBLISH_LUA, calls, "publish")
        written: list[bool] = []
        for update, result in zip(updates, results, strict=True):
            if isinstance(result, Exception):
                raise StateError(f"publish failed user_id={update.user_id}: {result}") from result
            written.append(int(result) in (1, 2))
        refused = len(written) - sum(written)
        logger.debug(
            "published users=%d written=%d refused=%d", len(updates), sum(written), refused
        )
        return written

    def mark_notified(self, versions: list[tuple[str, int]]) -> int:
        """Record ``(user_id, version)`` pairs whose notifications the broker acknowledged;
        returns how many are still the stored version. A version written but never marked is
        notified again when its user is next loaded (``SequenceStore``)."""
        if not versions:
            return 0
        calls = [(self._keys.user(user_id), [int(version)]) for user_id, version in versions]
        results = self._run(self._mark_script, MARK_NOTIFIED_LUA, calls, "mark_notified")
        for (user_id, _), result in zip(versions, results, strict=True):
            if isinstance(result, Exception):
                raise StateError(f"mark_notified failed user_id={user_id}: {result}") from result
        return sum(int(r) for r in results)

    def _run(self, script: Script, source: str, calls: list[Call], operation: str) -> list[object]:
        """One pipelined EVALSHA per call, loading the script once if Redis lost it."""
        with translate_redis_errors(operation):
            results = self._execute(script, calls)
            missing = [
                i for i, r in enumerate(results) if isinstance(r, redis.exceptions.NoScriptError)
            ]
            if missing:
                logger.info("loading script operation=%s sha=%s", operation, script.sha)
                self._client.script_load(source)
                for i, r in zip(missing, self._execute(script, [calls[i] for i in missing]), strict=True):
                    results[i] = r
        return results

    def _execute(self, script: Script, calls: list[Call]) -> list[object]:
        pipe = self._client.pipeline(transaction=False)
        for key, args in calls:
            pipe.execute_command("EVALSHA", script.sha, 1, key, *args)  # cluster-routable
        return pipe.execute(raise_on_error=False)

    def _call_args(self, update: UserUpdate) -> Call:
        _, q, d = np.shape(update.vectors)
        fields: list[bytes | str | int] = [
            F_FMT, LAYOUT_VERSION,
            F_VER, int(update.version),
            F_WM, int(update.watermark_ms),
            F_AT, int(update.computed_at_ms),
            F_MV, update.model_version,
            F_Q, q,
            F_D, d,
            F_SEQ, update.sequence_state,
            F_WID, update.write_id,
        ]  # fmt: skip
        for scenario, vectors in zip(update.scenarios, update.vectors, strict=True):
            fields += [vector_field(scenario), encode_vectors(vectors)]
        return self._keys.user(update.user_id), [int(update.version), self.ttl_s, update.write_id, *fields]
