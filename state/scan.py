"""Walks every user key with SCAN (each primary of a Redis Cluster), resumably, and reads users' metadata."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import redis

from state.errors import StateError, StateFormatError, translate_redis_errors
from state.keys import RedisKeys
from state.layout import F_VER
from state.store import NOTIFY_FIELDS, StoredVersion, unnotified_version

__all__ = ["Cursors", "ScanPage", "UserMeta", "UserScanner"]

logger = logging.getLogger(__name__)

#: Node name → SCAN cursor of every node not yet scanned to its end (cursor 0: not started).
#: A plain Redis server is the node ``""``; a cluster's primaries are named ``host:port``.
Cursors = dict[str, int]

#: The fields ``UserScanner.metadata`` reads: ``ver``, then those ``unnotified_version`` reads (``mv`` last).
_META_FIELDS = [F_VER, *NOTIFY_FIELDS]


@dataclass(frozen=True)
class ScanPage:
    """One SCAN reply's users, and where to resume once they are handled (empty: scan complete)."""

    user_ids: list[str]
    cursors: Cursors


@dataclass(frozen=True)
class UserMeta:
    """What a walk needs to know of a user without reading its vectors or sequence."""

    user_id: str
    #: Model version of the stored vectors; ``None`` when none are stored or the key is unreadable.
    model_version: str | None
    #: The stored version when its update notification was never acknowledged, else ``None``.
    unnotified: StoredVersion | None = None


class UserScanner:
    """SCANs ``keys.user_pattern()`` page by page; the page's ``cursors`` are a resume point.

    SCAN returns every key that exists for the whole walk at least once (a key may come twice;
    keys created or deleted meanwhile may or may not come). Cursors are stateless on the server,
    so a walk resumes from saved cursors in another process, as long as the nodes are the same.
    """

    def __init__(self, client: redis.Redis | redis.RedisCluster, keys: RedisKeys, scan_count: int = 500) -> None:
        if scan_count < 1:
            raise ValueError(f"scan_count must be >= 1, got {scan_count}")
        self._client = client
        self._keys = keys
        #: The ``COUNT`` hint of each SCAN: about how many keys one page visits.
        self.scan_count = scan_count

    def start(self) -> Cursors:
        """Cursors of a walk from the beginning: every primary, none started."""
        if isinstance(self._client, redis.RedisCluster):
            with translate_redis_errors("scan"):
                return {node.name: 0 for node in sorted(self._client.get_primaries(), key=lambda n: n.name)}
        return {"": 0}

    def pages(self, cursors: Cursors) -> Iterator[ScanPage]:
        """The pages from ``cursors`` on, one node after another, each with its resume point."""
        remaining = dict(cursors)
        for node in list(remaining):
            cursor = remaining[node]
            while True:
                cursor, raw_keys = self._scan(node, cursor)
                if cursor:
                    remaining[node] = cursor
                else:
                    del remaining[node]
                user_ids = [u for u in map(self._keys.user_id, raw_keys) if u is not None]
                if len(user_ids) < len(raw_keys):
                    logger.warning("scan skipped keys that are not UTF-8 user keys count=%d",
                                   len(raw_keys) - len(user_ids))
                yield ScanPage(user_ids, dict(remaining))
                if not cursor:
                    break

    def count_users(self, scan_count: int = 1000) -> int:
        """How many user keys exist now: a whole walk of the keyspace (every key is visited, only the
        pattern's are returned), ``keys / scan_count`` round trips per node, no values read."""
        counter = UserScanner(self._client, self._keys, scan_count)
        return sum(len(page.user_ids) for page in counter.pages(counter.start()))

    def metadata(self, user_ids: list[str]) -> list[UserMeta]:
        """Each user's model version and unacknowledged notification, in one pipelined round trip.

        A key that is not a hash or holds unreadable fields yields ``model_version=None``.
        """
        if not user_ids:
            return []
        with translate_redis_errors("metadata"):
            pipe = self._client.pipeline(transaction=False)
            for user_id in user_ids:
                pipe.hmget(self._keys.user(user_id), _META_FIELDS)
            rows = pipe.execute(raise_on_error=False)
        return [self._meta(user_id, row) for user_id, row in zip(user_ids, rows, strict=True)]

    def _meta(self, user_id: str, row: object) -> UserMeta:
        if isinstance(row, redis.exceptions.ResponseError):  # e.g. WRONGTYPE: loading quarantines it
            return UserMeta(user_id, None)
        if isinstance(row, Exception):
            with translate_redis_errors("metadata"):
                raise row
        fields = list(row)  # type: ignore[call-overload]
        mv = fields[-1]
        try:
            unnotified = unnotified_version(user_id, *fields)
        except StateFormatError as exc:
            logger.warning("unreadable metadata user_id=%s: %s", user_id, exc)
            return UserMeta(user_id, None)
        return UserMeta(user_id, None if mv is None else mv.decode("utf-8", "replace"), unnotified)

    def _scan(self, node: str, cursor: int) -> tuple[int, list[bytes]]:
        pattern = self._keys.user_pattern()
        with translate_redis_errors("scan"):
            if not isinstance(self._client, redis.RedisCluster):
                next_cursor, keys = self._client.scan(cursor=cursor, match=pattern, count=self.scan_count)
                return int(next_cursor), list(keys)
            target = self._client.get_node(node_name=node)
            if target is None or target not in self._client.get_primaries():
                raise StateError(f"cluster node {node} is no longer a primary: the walk cannot resume there "
                                 "(start a new walk: users already done are skipped cheaply)")
            cursors, keys = self._client.scan(cursor=cursor, match=pattern, count=self.scan_count, target_nodes=target)
            return int(cursors[node]), list(keys)
