"""Coalesced recompute: when waiting users are due, and commits held below unpublished events."""

from __future__ import annotations

from confluent_kafka import Message

from state.records import Behavior
from state.sequence import UserSequence
from streams.dirty import CommitTracker, DirtyUsers


def msg(offset: int, partition: int = 0, topic: str = "feed") -> Message:
    return Message(topic=topic, partition=partition, offset=offset)


def event(user: str, n: int) -> Behavior:
    return Behavior(f"{user}-{n}", user, "feed", 1_000 + n, "click", item_id="i")


def test_users_are_due_after_the_window_or_enough_events() -> None:
    dirty = DirtyUsers(interval_s=0.5, max_events=3, max_users=10)
    a, b = UserSequence("a"), UserSequence("b")
    dirty.add(a, msg(0), event("a", 0), now_s=10.0)
    dirty.add(b, msg(1), event("b", 0), now_s=10.2)
    assert dirty.due(10.4) == {}
    assert list(dirty.due(10.5)) == ["a"]  # a's first event waited the window
    dirty.add(b, msg(2), event("b", 1), now_s=10.5)
    dirty.add(b, msg(3), event("b", 2), now_s=10.5)
    assert set(dirty.due(10.5)) == {"a", "b"}  # b gathered max_events
    assert set(dirty.due(0.0, everything=True)) == {"a", "b"}
    dirty.done(["a"])
    assert len(dirty) == 1 and dirty.get("a") is None and dirty.get("b") is b


def test_no_window_means_every_user_is_due_and_too_many_users_flush_all() -> None:
    immediate = DirtyUsers(interval_s=0)
    immediate.add(UserSequence("a"), msg(0), event("a", 0), now_s=0.0)
    assert list(immediate.due(0.0)) == ["a"]
    crowded = DirtyUsers(interval_s=60, max_users=2)
    for i, user in enumerate("abc"):
        crowded.add(UserSequence(user), msg(i), event(user, 0), now_s=0.0)
    assert set(crowded.due(0.0)) == {"a", "b", "c"}


def test_commits_stay_below_the_first_unpublished_event_and_only_move_forward() -> None:
    dirty, commits = DirtyUsers(interval_s=60), CommitTracker()
    batch = [msg(o) for o in range(10)] + [msg(o, partition=1) for o in range(5)]
    commits.processed(batch)
    dirty.add(UserSequence("a"), batch[3], event("a", 3), now_s=0.0)
    dirty.add(UserSequence("a"), batch[7], event("a", 7), now_s=0.0)
    offsets = commits.to_commit(dirty.first_offsets())
    assert [(t.topic, t.partition, t.offset) for t in offsets] == [("feed", 0, 3), ("feed", 1, 5)]
    commits.committed(offsets)
    assert commits.to_commit(dirty.first_offsets()) == []  # nothing moved
    dirty.done(["a"])
    assert [(t.partition, t.offset) for t in commits.to_commit(dirty.first_offsets())] == [(0, 10)]
    commits.clear()
    assert commits.to_commit({}) == []


def test_nothing_is_committed_while_the_first_event_read_still_waits() -> None:
    """Committing the offset consumption started from would be a no-op (and a wasted round trip)."""
    dirty, commits = DirtyUsers(interval_s=60), CommitTracker()
    first = [msg(40), msg(41)]
    commits.processed(first)
    dirty.add(UserSequence("a"), first[0], event("a", 40), now_s=0.0)
    assert commits.to_commit(dirty.first_offsets()) == []


def test_the_reloaded_sequence_replaces_the_stale_one_and_keeps_the_events() -> None:
    dirty = DirtyUsers(interval_s=60)
    stale, fresh = UserSequence("a"), UserSequence("a")
    dirty.add(stale, msg(4), event("a", 4), now_s=0.0)
    dirty.replace(fresh)
    assert dirty.get("a") is fresh and [m.offset() for m in dirty.messages()] == [4]
    assert [b.event_id for _, b in dirty.contributors(["a"])["a"]] == ["a-4"]


def test_the_commit_bound_is_the_lowest_pending_offset_of_each_topic_partition_over_all_users() -> None:
    dirty = DirtyUsers(interval_s=60)
    a, b = UserSequence("a"), UserSequence("b")
    dirty.add(a, msg(9), event("a", 0), now_s=0.0)
    dirty.add(a, msg(4), event("a", 1), now_s=0.0)  # lower than the first one added
    dirty.add(b, msg(6), event("b", 0), now_s=0.0)
    dirty.add(b, msg(2, topic="ads"), event("b", 1), now_s=0.0)
    dirty.add(b, msg(8, partition=1), event("b", 2), now_s=0.0)
    assert dirty.first_offsets() == {("feed", 0): 4, ("ads", 0): 2, ("feed", 1): 8}
    dirty.done(["a"])
    assert dirty.first_offsets() == {("feed", 0): 6, ("ads", 0): 2, ("feed", 1): 8}
    dirty.clear()
    assert dirty.first_offsets() == {}
