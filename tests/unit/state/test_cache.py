"""SequenceCache: touching users, evicting the idle ones and staying under its byte bound."""

from __future__ import annotations

import pytest

from state.cache import SequenceCache
from state.sequence import UserSequence


def test_get_returns_what_was_put_and_none_for_unknown_users() -> None:
    cache = SequenceCache(idle_evict_s=10)
    seq = UserSequence("u1")
    cache.put(seq, now_s=0)
    assert cache.get("u1", now_s=1) is seq
    assert cache.get("u2", now_s=1) is None
    assert "u1" in cache and len(cache) == 1


def test_evict_drops_only_users_idle_longer_than_the_limit() -> None:
    cache = SequenceCache(idle_evict_s=10)
    for i, user_id in enumerate(["a", "b", "c"]):
        cache.put(UserSequence(user_id), now_s=float(i))
    cache.get("a", now_s=5)  # touching a keeps it
    assert cache.evict(now_s=11.5) == 1  # b idle 10.5; c idle 9.5; a idle 6.5
    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.evict(now_s=100) == 2
    assert len(cache) == 0


def test_evict_keeps_users_exactly_at_the_limit() -> None:
    cache = SequenceCache(idle_evict_s=10)
    cache.put(UserSequence("a"), now_s=0)
    assert cache.evict(now_s=10) == 0
    assert cache.evict(now_s=10.5) == 1


def test_pop_and_default_monotonic_clock() -> None:
    cache = SequenceCache()
    cache.put(UserSequence("a"))
    assert cache.evict() == 0
    assert cache.pop("a") is not None and cache.pop("a") is None
    with pytest.raises(ValueError):
        SequenceCache(idle_evict_s=0)


def test_the_cache_is_bounded_by_bytes_and_evicts_the_least_recently_used() -> None:
    from state.records import Behavior

    def user(name: str, events: int) -> UserSequence:
        seq = UserSequence(name)
        for k in range(events):
            seq.apply(Behavior(f"{name}-{k}", name, "feed", 1_000 + k, "click", item_id=f"i{k}"))
        return seq

    full = user("x", 200).approx_bytes()
    cache = SequenceCache(idle_evict_s=1_000, max_bytes=3 * full)
    for i, name in enumerate("abcde"):
        cache.put(user(name, 200), now_s=i)
    cache.get("a", now_s=10)  # a is used again: b is now the least recently used
    assert cache.evict(now_s=11) == 2
    assert [u for u in "abcde" if u in cache] == ["a", "d", "e"]
    assert cache.total_bytes == 3 * full
    cache.pop("a")
    assert cache.total_bytes == 2 * full
