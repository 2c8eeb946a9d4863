"""One user's unified sequence: bounded per-scenario buffers ordered by event time, with dedupe."""

from __future__ import annotations

import bisect
import enum
import heapq
import zlib
from typing import Any

import msgpack
import numpy as np

from state.config import StateConfig
from state.errors import InvalidInputError, StateFormatError
from state.records import SCENARIOS, Behavior

__all__ = ["FORMAT_VERSION", "ApplyResult", "UserSequence", "fingerprint"]

#: Version of the msgpack layout written by ``UserSequence.to_bytes`` (docs/redis-format.md).
#: Version 1 (ids only in the id memory, no applied offsets) is still read.
FORMAT_VERSION = 2
_READABLE_FORMATS = (1, 2)

_UNKNOWN_CONTENT = -1  # fingerprint of ids read from format 1, which kept no content

_SCENARIO_INDEX = {name: i for i, name in enumerate(SCENARIOS)}


class ApplyResult(enum.Enum):
    """What ``UserSequence.apply`` did with one behaviour."""

    ADDED = "added"
    DUPLICATE = "duplicate"
    TOO_LATE = "too_late"
    #: The ``event_id`` was applied before with other content: a producer bug, dead-lettered.
    CONFLICT = "conflict"
    #: Older than every id the memory still holds and not buffered: it cannot be told from a
    #: duplicate, so it is not applied (replays of long histories must not re-add old events).
    STALE = "stale"


# Enum members as module constants: ``ApplyResult.ADDED`` is a class attribute lookup through the
# enum machinery (~70 ns), paid several times per applied event.
_ADDED, _DUPLICATE, _TOO_LATE = ApplyResult.ADDED, ApplyResult.DUPLICATE, ApplyResult.TOO_LATE
_CONFLICT, _STALE = ApplyResult.CONFLICT, ApplyResult.STALE


def _ts_key(b: Behavior) -> int:
    return b.ts_ms


def fingerprint(b: Behavior) -> int:
    """A stable 32-bit checksum of everything but the ids: tells a redelivery from an id reused
    for another event."""
    content = f"{b.scenario}\x1f{b.ts_ms}\x1f{b.action}\x1f{b.item_id}\x1f{b.text}\x1f{b.dwell_ms}"
    return zlib.crc32(content.encode("utf-8", "surrogatepass"))


class UserSequence:
    """Per-scenario buffers of ``Behavior`` sorted by ``ts_ms`` (equal times keep arrival order).

    A full buffer drops its oldest event. Dedupe has two layers:

    - **Redelivery is exact.** Callers pass where an event came from (``source``, e.g. topic and
      partition) and its ``offset``; the highest applied offset per source is kept, and an event
      at or below it (and not newer than its scenario's watermark) is a duplicate without
      touching the id memory, so a replay of a whole partition cannot cascade.
    - **Producer duplicates** (same ``event_id`` sent twice) are caught by a memory of the
      ``recent_ids_capacity`` newest applied ids, with a fingerprint of each event's content: the
      same id with other content is a ``CONFLICT``. The memory forgets the oldest event *times*
      first; an unbuffered event not newer than the newest forgotten time is ``STALE`` (it may be
      a forgotten duplicate), so re-sent old ids never push real ids out.

    ``watermark_ms`` is the largest event
    time accepted. Lateness is judged per scenario, because each scenario arrives on its own
    topic: an event older than its scenario's largest accepted time minus
    ``allowed_lateness_ms`` is too late. (Judged against the user's overall watermark, the skew
    between consuming different topics, large in a replay, would reject in-order events.)
    ``version`` is the published version; the publisher path raises it with ``bump_version``.
    """

    def __init__(self, user_id: str, config: StateConfig | None = None) -> None:
        self.user_id = user_id
        self.config = config or StateConfig()
        # The frozen config's bounds, read once (apply is the hot path).
        self._capacity = {s: self.config.capacity(s) for s in SCENARIOS}
        self._lateness_ms = self.config.allowed_lateness_ms
        self._ids_limit = self.config.recent_ids_capacity
        self.version = 0
        self.watermark_ms = 0
        self._scenario_watermark_ms: dict[str, int] = {}
        self._buffers: dict[str, list[Behavior]] = {s: [] for s in SCENARIOS}
        self._buffer_ids: set[str] = set()
        self._id_memory: dict[str, tuple[int, int]] = {}  # event_id -> (ts_ms, fingerprint)
        self._id_heap: list[tuple[int, str]] = []  # (ts_ms, event_id), oldest time on top
        self._forgotten_ms = -1  # newest event time the id memory has forgotten
        self._applied_offsets: dict[str, int] = {}  # source -> highest applied offset

    def approx_bytes(self) -> int:
        """Estimated memory of this sequence in a worker (measured: ~350 B an event, ~80 B a
        remembered id, ~2 KB fixed), for the cache's byte bound."""
        return 2048 + 350 * len(self) + 120 * len(self._id_memory)

    def __len__(self) -> int:
        return len(self._buffer_ids)

    def __repr__(self) -> str:
        return (
            f"UserSequence(user_id={self.user_id!r}, version={self.version}, "
            f"watermark_ms={self.watermark_ms}, counts={self.counts()})"
        )

    def apply(self, behavior: Behavior, source: str | None = None, offset: int = -1) -> ApplyResult:
        """Insert ``behavior`` by event time unless it is a duplicate, a conflict, stale or too late.

        ``source``/``offset`` (optional) say where the event was read (e.g. ``"feed/3"`` and its
        Kafka offset) for exact redelivery dedupe. Lateness is judged against the event-time
        watermark, never the wall clock, so a replay decides the same way. An event older than
        everything in a full buffer is still ``ADDED`` (its id is remembered for dedupe)
        although it is dropped at once by the capacity bound.
        """
        if behavior.user_id != self.user_id:
            raise InvalidInputError(
                f"behavior of user {behavior.user_id!r} applied to sequence of {self.user_id!r}"
            )
        scenario, ts_ms = behavior.scenario, behavior.ts_ms
        buffer = self._buffers.get(scenario)
        if buffer is None:
            raise InvalidInputError(f"unknown scenario {scenario!r}")
        scenario_watermark_ms = self._scenario_watermark_ms.get(scenario, 0)
        if source is not None:
            applied = self._applied_offsets.get(source, -1)
            if offset > applied:
                self._applied_offsets[source] = offset
            elif ts_ms <= scenario_watermark_ms:
                return _DUPLICATE  # redelivered: this source's offset was applied
        event_id = behavior.event_id
        id_memory = self._id_memory
        if event_id in id_memory or event_id in self._buffer_ids or ts_ms <= self._forgotten_ms:
            return self._seen_verdict(behavior)
        if ts_ms < scenario_watermark_ms - self._lateness_ms:
            return _TOO_LATE
        if self._ids_limit:
            id_memory[event_id] = (ts_ms, fingerprint(behavior))
            heapq.heappush(self._id_heap, (ts_ms, event_id))
            if len(id_memory) > self._ids_limit:
                self._forget()
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms
        self._scenario_watermark_ms[scenario] = ts_ms if ts_ms > scenario_watermark_ms else scenario_watermark_ms
        capacity = self._capacity[scenario]
        if capacity == 0:
            return _ADDED
        if not buffer or buffer[-1].ts_ms <= ts_ms:  # the common case: newest of its buffer
            buffer.append(behavior)
        else:  # after any equal times: arrival order
            bisect.insort_right(buffer, behavior, key=_ts_key)
        self._buffer_ids.add(event_id)
        while len(buffer) > capacity:
            self._buffer_ids.discard(buffer.pop(0).event_id)
        return _ADDED

    def _seen_verdict(self, behavior: Behavior) -> ApplyResult:
        """The verdict on an event whose id is remembered or buffered, or whose time the id memory
        has forgotten."""
        remembered = self._id_memory.get(behavior.event_id)
        if remembered is not None:
            ts_ms, fp = remembered
            same = fp == _UNKNOWN_CONTENT or (ts_ms, fp) == (behavior.ts_ms, fingerprint(behavior))
            return _DUPLICATE if same else _CONFLICT
        if behavior.event_id in self._buffer_ids:
            return _DUPLICATE
        return _STALE  # older than the newest forgotten time: maybe a forgotten duplicate

    def _forget(self) -> None:
        """Forget the ids of the oldest event times while the memory is over its limit."""
        while len(self._id_memory) > self._ids_limit:
            ts_ms, event_id = heapq.heappop(self._id_heap)
            del self._id_memory[event_id]
            self._forgotten_ms = max(self._forgotten_ms, ts_ms)

    def bump_version(self) -> int:
        """Raise the version by one (the publisher path does this) and return the new value."""
        self.version += 1
        return self.version

    def counts(self) -> dict[str, int]:
        """Number of buffered events per scenario, every scenario present."""
        return {s: len(buf) for s, buf in self._buffers.items()}

    def scenario_behaviors(self, scenario: str) -> list[Behavior]:
        """A copy of one scenario's buffer, chronological."""
        if scenario not in self._buffers:
            raise InvalidInputError(f"unknown scenario {scenario!r}")
        return list(self._buffers[scenario])

    def behaviors(self) -> list[Behavior]:
        """All buffered behaviours, chronological (equal times: scenario order, then arrival)."""
        return list(heapq.merge(*self._buffers.values(), key=_ts_key))

    def arrays(self) -> tuple[list[Behavior], np.ndarray, np.ndarray]:
        """``(behaviors, scenario_idx int64[N], ts_ms int64[N])`` for the mixing policy."""
        items = self.behaviors()
        scenario_idx = np.fromiter(
            (_SCENARIO_INDEX[b.scenario] for b in items), dtype=np.int64, count=len(items)
        )
        ts_ms = np.fromiter((b.ts_ms for b in items), dtype=np.int64, count=len(items))
        return items, scenario_idx, ts_ms

    def to_bytes(self) -> bytes:
        """Serialise the whole state (buffers, recent ids, version, watermark) with msgpack."""
        doc: dict[str, Any] = {
            "f": FORMAT_VERSION,
            "u": self.user_id,
            "v": self.version,
            "w": self.watermark_ms,
            "sw": self._scenario_watermark_ms,
            "s": {
                s: [[b.event_id, b.ts_ms, b.action, b.item_id, b.text, b.dwell_ms] for b in buf]
                for s, buf in self._buffers.items()
                if buf
            },
            "r": [[event_id, ts_ms, fp] for event_id, (ts_ms, fp) in self._id_memory.items()],
            "fm": self._forgotten_ms,
            "o": self._applied_offsets,
        }
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes, config: StateConfig | None = None) -> UserSequence:
        """Rebuild a sequence from ``to_bytes`` output; raises ``StateFormatError`` on bad bytes.

        When ``config`` holds smaller bounds than the state was written with, the oldest
        events and ids are dropped to fit.
        """
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise StateFormatError(f"sequence state is not valid msgpack: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("f") not in _READABLE_FORMATS:
            fmt = doc.get("f") if isinstance(doc, dict) else type(doc).__name__
            raise StateFormatError(f"unsupported sequence state format {fmt!r}")
        try:
            return cls._from_doc(doc, config)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StateFormatError(f"malformed sequence state: {exc!r}") from exc

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], config: StateConfig | None) -> UserSequence:
        seq = cls(str(doc["u"]), config)
        seq.version = int(doc["v"])
        seq.watermark_ms = int(doc["w"])
        seq._scenario_watermark_ms = {str(k): int(v) for k, v in doc.get("sw", {}).items()}
        for scenario, rows in doc["s"].items():
            if scenario not in seq._buffers:
                raise ValueError(f"unknown scenario {scenario!r}")
            user_id = seq.user_id
            items = [  # positional for speed: (event_id, user_id, scenario, ts_ms, action, ...)
                Behavior(event_id, user_id, scenario, int(ts_ms), action, item_id, text, dwell_ms)
                for event_id, ts_ms, action, item_id, text, dwell_ms in rows
            ]
            if not all(isinstance(b.event_id, str) and isinstance(b.dwell_ms, int) for b in items):
                raise ValueError(f"bad row types in scenario {scenario!r}")
            items.sort(key=_ts_key)  # stable: a well-formed state is already sorted
            capacity = seq.config.capacity(scenario)
            kept = items[max(0, len(items) - capacity) :] if capacity else []
            seq._buffers[scenario] = kept
            seq._buffer_ids.update(b.event_id for b in kept)
        seq._applied_offsets = {str(k): int(v) for k, v in doc.get("o", {}).items()}
        seq._forgotten_ms = int(doc.get("fm", -1))
        if doc["f"] == 1:  # ids only: their times and content are unknown (-1), forgotten first
            rows = [(str(event_id), -1, _UNKNOWN_CONTENT) for event_id in doc["r"]]
        else:
            rows = [(str(event_id), int(ts), int(fp)) for event_id, ts, fp in doc["r"]]
        seq._restore_ids(rows)
        return seq

    def _restore_ids(self, rows: list[tuple[str, int, int]]) -> None:
        limit = self.config.recent_ids_capacity
        if len(rows) > limit:  # a smaller memory than the state was written with: forget the oldest
            by_time = sorted(rows, key=lambda row: row[1])
            cut = by_time[len(rows) - limit - 1][1]
            self._forgotten_ms = max(self._forgotten_ms, cut)
            rows = [row for row in rows if row[1] > cut]
        self._id_memory = {event_id: (ts, fp) for event_id, ts, fp in rows}
        self._id_heap = [(ts, event_id) for event_id, ts, _ in rows]
        heapq.heapify(self._id_heap)
