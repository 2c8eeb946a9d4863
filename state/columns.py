"""Flat columns behind a ``UserSequence``: one scenario's events, and the recent event-id memory.

No Python object per event: numbers live in ``array.array`` columns (8 bytes a time, 8 a digest,
1 an action), so a full user costs tens of kilobytes in a worker instead of hundreds, and a
stored state loads with a few ``memcpy``s. Strings (item ids, search texts) stay ``str``.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from itertools import accumulate
from typing import Any

import numpy as np

__all__ = [
    "ANY_SCENARIO", "EventColumns", "IdMemory", "column_bytes", "column_from_bytes", "pack_dwell", "pack_times",
    "unpack_dwell", "unpack_times",
]

_BIG_ENDIAN = sys.byteorder == "big"


def column_bytes(column: array) -> bytes:
    """A column's values as little-endian bytes (the stored layout)."""
    if _BIG_ENDIAN:
        column = array(column.typecode, column)
        column.byteswap()
    return column.tobytes()


def column_from_bytes(typecode: str, data: bytes) -> array:
    """Inverse of ``column_bytes``; raises ``ValueError`` when ``data`` is not whole values."""
    column = array(typecode)
    column.frombytes(data)
    if _BIG_ENDIAN:
        column.byteswap()
    return column


_DTYPES = {"I": np.dtype("<u4"), "q": np.dtype("<i8")}  # stored widths of time differences


def pack_times(columns: list[array]) -> list[Any]:
    """Non-decreasing int64 columns as one ``[firsts, width, deltas]``: each column's first value,
    then each value's difference to the previous one of its column (0 at a column's start), as
    uint32 (width ``"I"``) when all fit, else int64 (``"q"``). A handful of numpy calls whatever
    the number of columns: a small user's state is written on every publish."""
    firsts = [c[0] if c else 0 for c in columns]
    values = np.frombuffer(b"".join([c.tobytes() for c in columns]), dtype=np.int64)
    if not values.size:
        return [firsts, "I", b""]
    deltas = np.empty_like(values)
    deltas[0] = 0
    np.subtract(values[1:], values[:-1], out=deltas[1:])
    deltas[list(accumulate(len(c) for c in columns[:-1]))] = 0  # past the end: only trailing empty columns
    if deltas.min() < 0:
        raise ValueError("a time column is not in order")
    code = "I" if deltas.max() < 2**32 else "q"
    return [firsts, code, deltas.astype(_DTYPES[code]).tobytes()]


def unpack_times(stored: list[Any] | tuple[Any, ...], counts: list[int]) -> list[array]:
    """Inverse of ``pack_times`` for columns of ``counts`` values; raises ``ValueError`` (or
    ``KeyError``) unless the stored deltas fit ``counts`` and none is negative."""
    firsts, code, data = stored
    deltas = np.frombuffer(data, dtype=_DTYPES[code])
    if len(deltas) != sum(counts) or len(firsts) != len(counts) or min(counts, default=0) < 0:
        raise ValueError("time columns of the wrong length")
    if code == "q" and deltas.size and deltas.min() < 0:
        raise ValueError("time column out of order")
    running = np.cumsum(deltas, dtype=np.int64)
    columns, start = [], 0
    for count, first in zip(counts, firsts, strict=True):
        segment = running[start : start + count]
        columns.append(array("q", (segment + (int(first) - int(segment[0]))).tobytes() if count else b""))
        start += count
    return columns


def pack_dwell(columns: list[array]) -> list[Any]:
    """uint32 dwell columns as one ``[width, bytes]``: uint16 LE (``"H"``) when every value fits
    (most dwell times are under a minute), else uint32 LE (``"I"``)."""
    values = np.frombuffer(b"".join([c.tobytes() for c in columns]), dtype=np.uint32)
    code = "H" if not values.size or values.max() < 2**16 else "I"
    return [code, values.astype("<u2" if code == "H" else "<u4").tobytes()]


def unpack_dwell(stored: list[Any] | tuple[Any, ...]) -> array:
    """Inverse of ``pack_dwell``; raises ``ValueError`` on a bad width or a partial value."""
    code, data = stored
    if code not in ("H", "I"):
        raise ValueError(f"unknown dwell width {code!r}")
    return array("I", np.frombuffer(data, dtype="<u2" if code == "H" else "<u4").astype(np.uint32).tobytes())


class EventColumns:
    """One scenario's buffered events as parallel columns, ordered by time (ties: arrival order).

    ``digest`` is the event id's 64-bit digest, ``action`` an index into ``state.records.ACTIONS``.
    """

    __slots__ = ("action", "digest", "dwell", "item", "text", "ts")

    def __init__(self) -> None:
        self.ts = array("q")
        self.digest = array("Q")
        self.action = bytearray()
        self.dwell = array("I")  # 0 <= dwell_ms < 2**32 (the wire allows at most a day)
        self.item: list[str | None] = []
        self.text: list[str | None] = []

    def __len__(self) -> int:
        return len(self.ts)

    def insert(self, ts: int, digest: int, action: int, dwell: int, item: str | None, text: str | None) -> None:
        """Add one event after every event not newer than it."""
        times = self.ts
        if not times or times[-1] <= ts:  # the common case: the newest event of its buffer
            times.append(ts)
            self.digest.append(digest)
            self.action.append(action)
            self.dwell.append(dwell)
            self.item.append(item)
            self.text.append(text)
            return
        at = bisect.bisect_right(times, ts)
        times.insert(at, ts)
        self.digest.insert(at, digest)
        self.action.insert(at, action)
        self.dwell.insert(at, dwell)
        self.item.insert(at, item)
        self.text.insert(at, text)

    def keep_newest(self, n: int) -> None:
        """Drop the oldest events beyond ``n``."""
        drop = len(self.ts) - n
        if drop > 0:
            for column in (self.ts, self.digest, self.action, self.dwell, self.item, self.text):
                del column[:drop]


#: The scenario of a remembered id read from a format 1 or 2 state, which did not keep it: its
#: time counts as forgotten for every scenario.
ANY_SCENARIO = 255


class IdMemory:
    """At least the newest ``limit`` applied event-id digests, with each event's time, scenario
    index and content fingerprint.

    The entries are kept in time order (``digest``/``ts``/``scenario``/``fp``, ties in arrival
    order: the oldest are forgotten first) and their digests once more sorted (``sorted_digests``,
    for lookups by bisection). Forgetting runs in steps: past ``limit + slack`` entries the oldest
    times are forgotten down to ``limit`` in one pass (``slack`` = ``limit // 16``), so an apply
    does not pay for it. ``forgotten_ms[s]`` is the newest time forgotten so far among scenario
    ``s``'s events (-1: none): per scenario, because each scenario arrives on its own topic and one
    may lag another by many events (a catch-up), and a re-sent event keeps its scenario.
    ``unknown`` holds the digests whose content is unknown (ids read from format-1 states): any
    event with one is a duplicate.
    """

    __slots__ = ("digest", "forgotten_ms", "fp", "limit", "scenario", "slack", "sorted_digests", "ts", "unknown")

    def __init__(self, limit: int, n_scenarios: int) -> None:
        self.limit = limit
        self.slack = limit // 16
        self.sorted_digests = array("Q")
        self.digest = array("Q")
        self.ts = array("q")
        self.scenario = bytearray()  # index into SCENARIOS, or ANY_SCENARIO
        self.fp = array("I")  # CRC-32 of the content
        self.unknown: set[int] = set()
        self.forgotten_ms = [-1] * n_scenarios

    def __len__(self) -> int:
        return len(self.digest)

    def find(self, digest: int) -> int:
        """``>= 0`` when ``digest`` is remembered, else ``-1 - insertion point`` (for ``add``)."""
        at = bisect.bisect_left(self.sorted_digests, digest)
        return at if at < len(self.sorted_digests) and self.sorted_digests[at] == digest else -1 - at

    def entry(self, digest: int) -> tuple[int, int | None]:
        """``(ts, fp)`` of a remembered digest, ``fp`` None when its content is unknown (a scan:
        only duplicates and conflicts ask)."""
        at = int(np.flatnonzero(np.frombuffer(self.digest, dtype=np.uint64) == digest)[0])
        return self.ts[at], None if digest in self.unknown else self.fp[at]

    def add(self, digest: int, ts: int, scenario: int, fp: int, at: int) -> None:
        """Remember a new digest (``at`` = ``-1 - find(digest)``), then forget the oldest times
        when over the limit and its slack."""
        self.sorted_digests.insert(at, digest)
        times = self.ts
        if not times or times[-1] <= ts:  # the common case: the newest event
            times.append(ts)
            self.digest.append(digest)
            self.scenario.append(scenario)
            self.fp.append(fp)
        else:
            at = bisect.bisect_right(times, ts)
            times.insert(at, ts)
            self.digest.insert(at, digest)
            self.scenario.insert(at, scenario)
            self.fp.insert(at, fp)
        if len(times) > self.limit + self.slack:
            self._forget_oldest(len(times) - self.limit)

    def _forget_oldest(self, n: int) -> None:
        """Forget the ``n`` entries with the oldest times."""
        self._raise_forgotten(self.ts[:n], self.scenario[:n])
        gone = np.sort(np.frombuffer(self.digest, dtype=np.uint64)[:n])
        if self.unknown:
            self.unknown.difference_update(self.digest[:n])
        del self.ts[:n], self.digest[:n], self.scenario[:n], self.fp[:n]
        digests = np.frombuffer(self.sorted_digests, dtype=np.uint64)
        keep = np.ones(len(digests), dtype=bool)
        keep[np.searchsorted(digests, gone)] = False
        kept = digests[keep].tobytes()
        del digests
        self.sorted_digests = array("Q", kept)

    def _raise_forgotten(self, ts: array, scenario: bytes | bytearray) -> None:
        """Count the times of forgotten entries into ``forgotten_ms``, per scenario."""
        times = np.frombuffer(ts, dtype=np.int64)
        scenarios = np.frombuffer(scenario, dtype=np.uint8)
        for s in range(len(self.forgotten_ms)):
            mine = times[(scenarios == s) | (scenarios == ANY_SCENARIO)]
            if mine.size:
                self.forgotten_ms[s] = max(self.forgotten_ms[s], int(mine.max()))

    def restore(self, digest: array, ts: array, scenario: bytearray, fp: array, unknown: set[int]) -> None:
        """Replace the contents with entries in time order, forgetting the oldest as ``add`` would.
        Raises ``ValueError`` on columns of unequal length, an unknown scenario or a repeated digest."""
        if not len(digest) == len(ts) == len(scenario) == len(fp):
            raise ValueError("id memory columns of unequal length")
        if scenario.translate(None, bytes([*range(len(self.forgotten_ms)), ANY_SCENARIO])):
            raise ValueError("id memory scenario index out of range")
        extra = len(digest) - self.limit
        if extra > self.slack:  # the rule of ``add``, e.g. a smaller memory than the state's
            self._raise_forgotten(ts[:extra], scenario[:extra])
            digest, ts, scenario, fp = digest[extra:], ts[extra:], scenario[extra:], fp[extra:]
        self.digest, self.ts, self.scenario, self.fp = digest, ts, bytearray(scenario), fp
        in_order = np.sort(np.frombuffer(digest, dtype=np.uint64))
        if len(in_order) > 1 and not bool(np.all(in_order[1:] != in_order[:-1])):
            raise ValueError("repeated event-id digest in the id memory")
        self.sorted_digests = array("Q", in_order.tobytes())
        self.unknown = unknown.intersection(digest) if unknown else set()
