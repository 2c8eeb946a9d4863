"""One user's unified sequence: bounded per-scenario buffers ordered by event time, with dedupe."""

from __future__ import annotations

import enum
import zlib
from array import array
from dataclasses import dataclass
from typing import Any, Literal

import msgpack
import msgspec
import numpy as np
import xxhash

from state.columns import (
    ANY_SCENARIO,
    EventColumns,
    IdMemory,
    column_bytes,
    column_from_bytes,
    pack_dwell,
    pack_times,
    unpack_dwell,
    unpack_times,
)
from state.config import StateConfig
from state.errors import InvalidInputError, StateFormatError
from state.records import ACTIONS, SCENARIOS, Behavior

__all__ = [
    "FORMAT_VERSION",
    "ApplyResult",
    "SequenceColumns",
    "UserSequence",
    "digest_key",
    "event_digest",
    "event_key",
    "fingerprint",
]

#: Version of the layout written by ``UserSequence.to_bytes`` (docs/redis-format.md). Versions 1
#: and 2 (one msgpack row per event, ids as strings) are still read.
FORMAT_VERSION = 3
_READABLE_FORMATS = (1, 2, 3)

_DWELL_LIMIT = 2**32  # dwell_ms is stored as uint32 (the wire allows at most a day)

_SCENARIO_INDEX = {name: i for i, name in enumerate(SCENARIOS)}
_ACTION_INDEX = {name: i for i, name in enumerate(ACTIONS)}
_ACTION_BYTES = bytes(range(len(ACTIONS)))  # the valid stored action indices


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


def fingerprint(b: Behavior) -> int:
    """A stable 32-bit checksum of everything but the ids: tells a redelivery from an id reused
    for another event."""
    content = f"{b.scenario}\x1f{b.ts_ms}\x1f{b.action}\x1f{b.item_id}\x1f{b.text}\x1f{b.dwell_ms}"
    return zlib.crc32(content.encode("utf-8", "surrogatepass"))


def event_digest(event_id: str) -> int:
    """The stable 64-bit digest (XXH3) that the state keeps instead of an event id."""
    return xxhash.xxh3_64_intdigest(event_id.encode("utf-8", "surrogatepass"))


def digest_key(digest: int) -> str:
    """How a behaviour read back from the state names its event: ``#`` + 16 hex digits."""
    return f"#{digest:016x}"


def event_key(event_id: str) -> str:
    """``digest_key`` of ``event_id``'s digest: what ``behaviors()`` returns for that event."""
    return digest_key(event_digest(event_id))


class _StoredState(msgspec.Struct):
    """A format-3 state as ``to_bytes`` writes it (docs/redis-format.md); the decoder checks every
    type in C."""

    f: Literal[3]
    u: str
    v: int
    w: int
    sw: dict[str, int]
    n: list[int]  # events per scenario buffer (SCENARIOS order), then remembered ids
    t: tuple[list[int], str, bytes]  # their times: columns.pack_times
    d: bytes  # their event-id digests, uint64 LE
    a: bytes  # actions of the buffered events, uint8 index into ACTIONS
    dw: tuple[str, bytes]  # dwell_ms of the buffered events: columns.pack_dwell
    i: list[str | None]  # item ids of the buffered events
    x: list[str | None]  # texts of the buffered events
    c: bytes  # scenario index of each remembered id, uint8 (255: unknown, read from format 1 or 2)
    p: bytes  # content fingerprints of the remembered ids, uint32 LE
    k: list[int]  # remembered digests whose content is unknown (read from format 1)
    fm: list[int]  # per scenario: the newest time the id memory forgot
    o: dict[str, int]


_STATE_DECODER = msgspec.msgpack.Decoder(_StoredState)


@dataclass(frozen=True, eq=False)
class SequenceColumns:
    """Every buffered event as columns, chronological (equal times: scenario order, then arrival)."""

    scenario_idx: np.ndarray  # int64[N], index into SCENARIOS
    ts_ms: np.ndarray  # int64[N]
    action_idx: np.ndarray  # int64[N], index into ACTIONS
    item_ids: list[str | None]
    texts: list[str | None]


class UserSequence:
    """Per-scenario buffers sorted by ``ts_ms`` (equal times keep arrival order).

    A full buffer drops its oldest event. Dedupe has two layers:

    - **Redelivery is exact.** Callers pass where an event came from (``source``, e.g. topic and
      partition) and its ``offset``; the highest applied offset per source is kept, and an event
      at or below it (and not newer than its scenario's watermark) is a duplicate without
      touching the id memory, so a replay of a whole partition cannot cascade.
    - **Producer duplicates** (same ``event_id`` sent twice) are caught by a memory of the
      ``recent_ids_capacity`` newest applied ids, with a fingerprint of each event's content: the
      same id with other content is a ``CONFLICT``. The memory forgets the oldest event *times*
      first; an unbuffered event not newer than the newest forgotten time *of its scenario* is
      ``STALE`` (it may be a forgotten duplicate), so re-sent old ids never push real ids out.
      Per scenario, because a lagging scenario topic (a catch-up) must not find its new events
      older than ids another scenario pushed out of the memory.

    Ids are kept as 64-bit digests (``event_digest``), events as flat columns (``EventColumns``):
    ``behaviors()`` rebuilds ``Behavior`` objects whose ``event_id`` is ``event_key(event_id)``.

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
        self.version = 0
        self.watermark_ms = 0
        self._scenario_watermark_ms: dict[str, int] = {}
        self._buffers: dict[str, EventColumns] = {s: EventColumns() for s in SCENARIOS}
        self._memory = IdMemory(self.config.recent_ids_capacity, len(SCENARIOS))
        self._applied_offsets: dict[str, int] = {}  # source -> highest applied offset

    def approx_bytes(self) -> int:
        """Estimated memory of this sequence in a worker, for the cache's byte bound (measured by
        ``benchmarks/bench_state.py``: ~21 B of columns and ~90 B of strings an event, 28 B a
        remembered id, ~1.5 KB fixed). Constant time: the cache calls it on every touch."""
        return 1536 + 110 * len(self) + 28 * len(self._memory)

    def __len__(self) -> int:
        return sum(len(b) for b in self._buffers.values())

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
        action = _ACTION_INDEX.get(behavior.action)
        if action is None:
            raise InvalidInputError(f"unknown action {behavior.action!r}")
        if not 0 <= behavior.dwell_ms < _DWELL_LIMIT:
            raise InvalidInputError(f"dwell_ms={behavior.dwell_ms} is outside [0, 2**32)")
        scenario_watermark_ms = self._scenario_watermark_ms.get(scenario, 0)
        if source is not None:
            applied = self._applied_offsets.get(source, -1)
            if offset > applied:
                self._applied_offsets[source] = offset
            elif ts_ms <= scenario_watermark_ms:
                return _DUPLICATE  # redelivered: this source's offset was applied
        digest = event_digest(behavior.event_id)
        memory = self._memory
        at = memory.find(digest)
        scenario_index = _SCENARIO_INDEX[scenario]
        if at >= 0 or ts_ms <= memory.forgotten_ms[scenario_index] or (
            not memory.limit and self._buffered(digest)
        ):
            return self._seen_verdict(behavior, digest)
        if ts_ms < scenario_watermark_ms - self._lateness_ms:
            return _TOO_LATE
        if memory.limit:
            memory.add(digest, ts_ms, scenario_index, fingerprint(behavior), -1 - at)
        if ts_ms > self.watermark_ms:
            self.watermark_ms = ts_ms
        if ts_ms > scenario_watermark_ms:
            self._scenario_watermark_ms[scenario] = ts_ms
        else:
            self._scenario_watermark_ms[scenario] = scenario_watermark_ms
        capacity = self._capacity[scenario]
        if capacity == 0:
            return _ADDED
        buffer.insert(ts_ms, digest, action, behavior.dwell_ms, behavior.item_id, behavior.text)
        if len(buffer) > capacity:
            buffer.keep_newest(capacity)
        return _ADDED

    def _buffered(self, digest: int) -> bool:
        return any(digest in b.digest for b in self._buffers.values())

    def _seen_verdict(self, behavior: Behavior, digest: int) -> ApplyResult:
        """The verdict on an event whose id is remembered or buffered, or whose time the id memory
        has forgotten."""
        memory = self._memory
        if memory.find(digest) >= 0:
            ts_ms, fp = memory.entry(digest)
            same = fp is None or (ts_ms, fp) == (behavior.ts_ms, fingerprint(behavior))
            return _DUPLICATE if same else _CONFLICT
        if self._buffered(digest):
            return _DUPLICATE
        return _STALE  # older than its scenario's newest forgotten time: maybe a forgotten duplicate

    def bump_version(self) -> int:
        """Raise the version by one (the publisher path does this) and return the new value."""
        self.version += 1
        return self.version

    def counts(self) -> dict[str, int]:
        """Number of buffered events per scenario, every scenario present."""
        return {s: len(buf) for s, buf in self._buffers.items()}

    def scenario_behaviors(self, scenario: str) -> list[Behavior]:
        """One scenario's buffer as ``Behavior`` objects, chronological (``event_id`` =
        ``event_key`` of the original id)."""
        buffer = self._buffers.get(scenario)
        if buffer is None:
            raise InvalidInputError(f"unknown scenario {scenario!r}")
        user_id = self.user_id
        return [
            Behavior(digest_key(d), user_id, scenario, ts, ACTIONS[a], item, text, dwell)
            for ts, d, a, dwell, item, text in zip(
                buffer.ts, buffer.digest, buffer.action, buffer.dwell, buffer.item, buffer.text, strict=True
            )
        ]

    def behaviors(self) -> list[Behavior]:
        """All buffered behaviours, chronological (equal times: scenario order, then arrival)."""
        rows = [b for s in SCENARIOS for b in self.scenario_behaviors(s)]
        rows.sort(key=_ts_key)  # stable: scenario order, then arrival, within equal times
        return rows

    def columns(self) -> SequenceColumns:
        """Every buffered event as columns, in ``behaviors()`` order (what the mixing policy and
        the encoder read; no ``Behavior`` objects are built)."""
        buffers = [self._buffers[s] for s in SCENARIOS]
        ts_ms = np.concatenate([np.frombuffer(b.ts, dtype=np.int64) for b in buffers])
        order = np.argsort(ts_ms, kind="stable")
        scenario_idx = np.repeat(np.arange(len(SCENARIOS), dtype=np.int64), [len(b) for b in buffers])
        actions = np.frombuffer(b"".join(bytes(b.action) for b in buffers), dtype=np.uint8)
        positions = order.tolist()
        items = [i for b in buffers for i in b.item]
        texts = [t for b in buffers for t in b.text]
        return SequenceColumns(
            scenario_idx=scenario_idx[order], ts_ms=ts_ms[order], action_idx=actions[order].astype(np.int64),
            item_ids=[items[i] for i in positions], texts=[texts[i] for i in positions],
        )

    def arrays(self) -> tuple[list[Behavior], np.ndarray, np.ndarray]:
        """``(behaviors, scenario_idx int64[N], ts_ms int64[N])``, all chronological."""
        items = self.behaviors()
        scenario_idx = np.fromiter(
            (_SCENARIO_INDEX[b.scenario] for b in items), dtype=np.int64, count=len(items)
        )
        ts_ms = np.fromiter((b.ts_ms for b in items), dtype=np.int64, count=len(items))
        return items, scenario_idx, ts_ms

    def to_bytes(self) -> bytes:
        """Serialise the whole state (buffers, recent ids, version, watermark): msgpack of columns."""
        buffers = [self._buffers[s] for s in SCENARIOS]
        memory = self._memory
        doc: dict[str, Any] = {
            "f": FORMAT_VERSION,
            "u": self.user_id,
            "v": self.version,
            "w": self.watermark_ms,
            "sw": self._scenario_watermark_ms,
            "n": [*(len(b) for b in buffers), len(memory)],
            "t": pack_times([*(b.ts for b in buffers), memory.ts]),
            "d": b"".join([*(column_bytes(b.digest) for b in buffers), column_bytes(memory.digest)]),
            "a": b"".join(b.action for b in buffers),
            "dw": pack_dwell([b.dwell for b in buffers]),
            "i": [*buffers[0].item, *buffers[1].item, *buffers[2].item],
            "x": [*buffers[0].text, *buffers[1].text, *buffers[2].text],
            "c": bytes(memory.scenario),
            "p": column_bytes(memory.fp),
            "k": sorted(memory.unknown),
            "fm": memory.forgotten_ms,  # per scenario
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
            return cls._from_stored(_STATE_DECODER.decode(data), config)
        except msgspec.ValidationError as exc:
            invalid = exc  # not format 3 (an older one is read below), or a malformed one
        except msgspec.DecodeError as exc:
            raise StateFormatError(f"sequence state is not valid msgpack: {exc}") from exc
        except (KeyError, ValueError, IndexError, OverflowError) as exc:
            raise StateFormatError(f"malformed sequence state: {exc!r}") from exc
        try:
            doc = msgpack.unpackb(data, raw=False, strict_map_key=True)
        except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
            raise StateFormatError(f"sequence state is not valid msgpack: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("f") not in _READABLE_FORMATS:
            fmt = doc.get("f") if isinstance(doc, dict) else type(doc).__name__
            raise StateFormatError(f"unsupported sequence state format {fmt!r}")
        if doc["f"] == FORMAT_VERSION:
            raise StateFormatError(f"malformed sequence state: {invalid}")
        try:
            return cls._from_doc(doc, config)
        except (AttributeError, KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
            raise StateFormatError(f"malformed sequence state: {exc!r}") from exc

    @classmethod
    def _from_stored(cls, state: _StoredState, config: StateConfig | None) -> UserSequence:
        seq = cls(state.u, config)
        seq.version, seq.watermark_ms, seq._scenario_watermark_ms = state.v, state.w, state.sw
        counts = state.n
        if len(counts) != len(SCENARIOS) + 1:
            raise ValueError(f"{len(counts)} counts for {len(SCENARIOS)} buffers and the id memory")
        times = unpack_times(state.t, counts)
        digests = column_from_bytes("Q", state.d)
        dwells = unpack_dwell(state.dw)
        n = sum(counts[:-1])
        if len(digests) != n + counts[-1] or not len(state.a) == len(dwells) == len(state.i) == len(state.x) == n:
            raise ValueError("event columns of unequal length")
        if state.a.translate(None, _ACTION_BYTES):
            raise ValueError("action index out of range")
        start = 0
        for k, scenario in enumerate(SCENARIOS):
            end = start + counts[k]
            buffer = seq._buffers[scenario]
            buffer.ts, buffer.digest, buffer.dwell = times[k], digests[start:end], dwells[start:end]
            buffer.action = bytearray(state.a[start:end])
            buffer.item, buffer.text = state.i[start:end], state.x[start:end]
            buffer.keep_newest(seq.config.capacity(scenario))
            start = end
        seq._applied_offsets = state.o
        if len(state.fm) != len(SCENARIOS):
            raise ValueError(f"{len(state.fm)} forgotten times for {len(SCENARIOS)} scenarios")
        seq._memory.forgotten_ms = list(state.fm)
        seq._memory.restore(digests[n:], times[-1], bytearray(state.c), column_from_bytes("I", state.p), set(state.k))
        return seq

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], config: StateConfig | None) -> UserSequence:
        seq = cls(str(doc["u"]), config)
        seq.version = int(doc["v"])
        seq.watermark_ms = int(doc["w"])
        seq._scenario_watermark_ms = {str(k): int(v) for k, v in doc.get("sw", {}).items()}
        for scenario, rows in doc["s"].items():
            if scenario not in seq._buffers:
                raise ValueError(f"unknown scenario {scenario!r}")
            _read_rows(seq._buffers[scenario], rows, scenario, seq.user_id)
        for scenario, buffer in seq._buffers.items():
            buffer.keep_newest(seq.config.capacity(scenario))
        seq._applied_offsets = {str(k): int(v) for k, v in doc.get("o", {}).items()}
        seq._memory.forgotten_ms = [int(doc.get("fm", -1))] * len(SCENARIOS)  # kept for all scenarios
        seq._memory.restore(*_read_ids(doc))
        return seq


def _ts_key(b: Behavior) -> int:
    return b.ts_ms


def _read_rows(buffer: EventColumns, rows: list[Any], scenario: str, user_id: str) -> None:
    """Fill ``buffer`` from format 1/2 rows ``[event_id, ts_ms, action, item_id, text, dwell_ms]``."""
    events = sorted(
        (Behavior(event_id, user_id, scenario, int(ts_ms), action, item_id, text, dwell_ms)
         for event_id, ts_ms, action, item_id, text, dwell_ms in rows),
        key=_ts_key,
    )  # stable: a well-formed state is already sorted
    for b in events:
        if not (isinstance(b.event_id, str) and isinstance(b.dwell_ms, int)):
            raise ValueError(f"bad row types in scenario {scenario!r}")
        buffer.insert(b.ts_ms, event_digest(b.event_id), _ACTION_INDEX[b.action], b.dwell_ms, b.item_id, b.text)


def _read_ids(doc: dict[str, Any]) -> tuple[array, array, bytearray, array, set[int]]:
    """The id memory of a format 1 or 2 state: digest, time, scenario (unknown) and fingerprint
    columns in time order, and the digests whose content is unknown (all of format 1's)."""
    if doc["f"] == 1:
        rows = [(event_digest(str(event_id)), -1, 0) for event_id in doc["r"]]
    else:
        rows = [(event_digest(str(event_id)), int(ts), int(fp)) for event_id, ts, fp in doc["r"]]
    rows.sort(key=lambda row: row[1])
    unknown = {r[0] for r in rows} if doc["f"] == 1 else set()
    return (array("Q", [r[0] for r in rows]), array("q", [r[1] for r in rows]),
            bytearray([ANY_SCENARIO]) * len(rows), array("I", [r[2] for r in rows]), unknown)
