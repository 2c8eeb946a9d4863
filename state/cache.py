"""An in-process cache of user sequences, bounded by bytes (LRU) and idle time (Redis holds the
durable copy)."""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from state.config import DEFAULT_CACHE_MAX_BYTES
from state.sequence import UserSequence

__all__ = ["SequenceCache"]

logger = logging.getLogger(__name__)


class SequenceCache:
    """``user_id → UserSequence`` with a last-touched monotonic time per user.

    ``get`` and ``put`` touch a user (and re-measure its size); ``evict`` drops users untouched
    for more than ``idle_evict_s``, then least recently used users while the estimated total is
    over ``max_bytes``. Every state the worker changes is also written to Redis (``seq`` field),
    so eviction loses nothing: the next event for that user reloads it via ``SequenceStore``.
    Times are ``time.monotonic()`` seconds unless the caller passes ``now_s`` (non-decreasing).
    """

    def __init__(self, idle_evict_s: float = 600.0, max_bytes: int = DEFAULT_CACHE_MAX_BYTES) -> None:
        if idle_evict_s <= 0 or max_bytes <= 0:
            raise ValueError(f"idle_evict_s and max_bytes must be > 0, got {idle_evict_s}, {max_bytes}")
        self.idle_evict_s = idle_evict_s
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[UserSequence, float]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self.total_bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._entries

    def get(self, user_id: str, now_s: float | None = None) -> UserSequence | None:
        """The cached sequence of ``user_id`` (touching it), or ``None``."""
        entry = self._entries.get(user_id)
        if entry is None:
            return None
        self._touch(user_id, entry[0], now_s)
        return entry[0]

    def put(self, seq: UserSequence, now_s: float | None = None) -> None:
        """Cache ``seq`` under its ``user_id`` (replacing any previous one) and touch it."""
        self._touch(seq.user_id, seq, now_s)

    def pop(self, user_id: str) -> UserSequence | None:
        """Remove and return one user's sequence (``None`` when not cached)."""
        entry = self._entries.pop(user_id, None)
        self.total_bytes -= self._sizes.pop(user_id, 0)
        return entry[0] if entry else None

    def evict(self, now_s: float | None = None) -> int:
        """Drop idle users, then least recently used ones while over ``max_bytes``; returns how
        many were dropped."""
        now_s = time.monotonic() if now_s is None else now_s
        evicted = 0
        while self._entries:
            user_id, (_, touched_s) = next(iter(self._entries.items()))
            if now_s - touched_s <= self.idle_evict_s and self.total_bytes <= self.max_bytes:
                break
            self.pop(user_id)
            evicted += 1
        if evicted:
            logger.debug("evicted users count=%d cached=%d bytes=%d", evicted, len(self._entries),
                         self.total_bytes)
        return evicted

    def _touch(self, user_id: str, seq: UserSequence, now_s: float | None) -> None:
        now_s = time.monotonic() if now_s is None else now_s
        self._entries[user_id] = (seq, now_s)
        self._entries.move_to_end(user_id)
        size = seq.approx_bytes()
        self.total_bytes += size - self._sizes.get(user_id, 0)
        self._sizes[user_id] = size
