"""Coalesced recompute: users with applied but unpublished events, when they are due, and how
far the offsets may be committed while they wait."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from confluent_kafka import Message, TopicPartition

from state.records import Behavior
from state.sequence import UserSequence

__all__ = ["CommitTracker", "DirtyUsers"]

Contributors = dict[str, list[tuple[Message, Behavior]]]
Partition = tuple[str, int]


@dataclass
class _Dirty:
    seq: UserSequence
    since_s: float
    events: list[tuple[Message, Behavior]] = field(default_factory=list)
    #: per partition, the lowest offset among ``events`` (kept as they are added, so the commit
    #: bound costs one look per dirty user and partition instead of one per pending event)
    first: dict[Partition, int] = field(default_factory=dict)


class DirtyUsers:
    """Users whose sequence gained events that Redis does not have yet.

    A user is *due* once its first unpublished event waited ``interval_s`` (the freshness
    window) or it gathered ``max_events`` unpublished events; when more than ``max_users`` are
    dirty, all are due. With ``interval_s == 0`` every user is due at once (one recompute per
    batch). The sequences are held here, not only in the cache, so an eviction cannot drop an
    unpublished state.
    """

    def __init__(self, interval_s: float = 0.0, max_events: int = 64, max_users: int = 20_000) -> None:
        self.interval_s = interval_s
        self.max_events = max_events
        self.max_users = max_users
        self._users: dict[str, _Dirty] = {}

    def __len__(self) -> int:
        return len(self._users)

    def get(self, user_id: str) -> UserSequence | None:
        """The sequence of a dirty user (the one to apply further events to), or ``None``."""
        entry = self._users.get(user_id)
        return entry.seq if entry is not None else None

    def add(self, seq: UserSequence, msg: Message, behavior: Behavior, now_s: float) -> None:
        """``behavior`` (read from ``msg``) was added to ``seq``."""
        entry = self._users.get(seq.user_id)
        if entry is None:
            entry = self._users[seq.user_id] = _Dirty(seq, now_s)
        entry.events.append((msg, behavior))
        tp, offset = (msg.topic(), msg.partition()), msg.offset()
        if offset < entry.first.get(tp, offset + 1):
            entry.first[tp] = offset

    def due(self, now_s: float, everything: bool = False) -> dict[str, UserSequence]:
        """The users to recompute and publish now."""
        if everything or self.interval_s <= 0 or len(self._users) > self.max_users:
            return {u: e.seq for u, e in self._users.items()}
        return {u: e.seq for u, e in self._users.items()
                if now_s - e.since_s >= self.interval_s or len(e.events) >= self.max_events}

    def replace(self, seq: UserSequence) -> None:
        """Hold ``seq`` (reloaded after a refused publish) instead of the user's stale sequence."""
        entry = self._users.get(seq.user_id)
        if entry is not None:
            entry.seq = seq

    def contributors(self, user_ids: Iterable[str]) -> Contributors:
        """The unpublished events of ``user_ids`` with the messages they came from."""
        return {u: self._users[u].events for u in user_ids if u in self._users}

    def done(self, user_ids: Iterable[str]) -> None:
        """These users' events are in Redis (published, or written by another worker)."""
        for user_id in user_ids:
            self._users.pop(user_id, None)

    def messages(self) -> list[Message]:
        """Every message whose event is not in Redis yet."""
        return [msg for entry in self._users.values() for msg, _ in entry.events]

    def clear(self) -> None:
        """Forget every dirty user (their events are uncommitted, so they come again)."""
        self._users.clear()

    def first_offsets(self) -> dict[Partition, int]:
        """Per partition, the lowest offset of an unpublished event: commits must stay at or below it."""
        lowest: dict[Partition, int] = {}
        for entry in self._users.values():
            for tp, offset in entry.first.items():
                if offset < lowest.get(tp, offset + 1):
                    lowest[tp] = offset
        return lowest


class CommitTracker:
    """The offsets that may be committed: per partition one past the highest processed message,
    held back to the lowest unpublished one, and only when that moves forward."""

    def __init__(self) -> None:
        self._highest: dict[Partition, int] = {}
        #: Lowest offset processed since the assignment: where the group's commit stood, so
        #: committing it again is a no-op.
        self._committed: dict[Partition, int] = {}

    def processed(self, messages: Iterable[Message]) -> None:
        """These messages were decoded and applied (dead letters are flushed before any commit)."""
        highest, committed = self._highest, self._committed
        for msg in messages:
            tp = (msg.topic(), msg.partition())
            offset = msg.offset()
            if offset > highest.get(tp, -1):
                highest[tp] = offset
            committed.setdefault(tp, offset)  # the first one read since the assignment

    def to_commit(self, unpublished: dict[Partition, int]) -> list[TopicPartition]:
        """Offsets to commit now (empty when nothing moved)."""
        out = []
        for tp, highest in self._highest.items():
            offset = min(highest + 1, unpublished.get(tp, highest + 1))
            if offset > self._committed.get(tp, -1):
                out.append(TopicPartition(tp[0], tp[1], offset))
        return sorted(out, key=lambda t: (t.topic, t.partition))

    def committed(self, offsets: Iterable[TopicPartition]) -> None:
        """The broker acknowledged ``offsets``."""
        for tp in offsets:
            self._committed[(tp.topic, tp.partition)] = tp.offset

    def clear(self) -> None:
        """Partitions were revoked: start over from what the next assignment brings."""
        self._highest.clear()
        self._committed.clear()
