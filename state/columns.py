"""Flat columns behind a ``UserSequence``: one scenario's events, and the recent event-id memory.

No Python object per event: numbers live in ``array.array`` columns (8 bytes a time, 8 a digest,
1 an action), so a full user costs tens of kilobytes in a worker instead of hundreds, and a
stored state loads with a few ``memcpy``s. Strings (item ids, search texts) stay ``str``.
"""

from __future__ import annotations

import bisect
import sys
from array import array
from typing import Any

import numpy as np

__all__ = [
    "EventColumns", "IdMemory", "column_bytes", "column_from_bytes", "pack_buffers", "pack_ints",
    "pack_times", "unpack_buffers", "unpack_ints", "unpack_times",
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


_NARROW, _WIDE = "I", "q"  # stored widths: 4-byte unsigned when every value fits, else 8-byte signed
_DTYPES = {_NARROW: np.dtype("<u4"), _WIDE: np.dtype("<i8")}


def pack_ints(column: array) -> list[Any]:
    """An int64 column as ``[width, little-endian bytes]``, 4 bytes a value when all fit."""
    values = np.frombuffer(column, dtype=np.int64)
    code = _NARROW if not values.size or (values.min() >= 0 and values.max() < 2**32) else _WIDE
    return [code, values.astype(_DTYPES[code]).tobytes()]


def unpack_ints(stored: list[Any]) -> array:
    """Inverse of ``pack_ints``; raises ``ValueError``/``KeyError`` on a bad width or size."""
    code, data = stored
    return array("q", np.frombuffer(data, dtype=_DTYPES[code]).astype(np.int64).tobytes())


def pack_times(column: array) -> list[Any]:
    """A non-decreasing int64 column as ``[first, width, deltas]`` (``pack_ints`` of the deltas)."""
    values = np.frombuffer(column, dtype=np.int64)
    first = int(values[0]) if values.size else 0
    return [first, *pack_ints(array("q", np.diff(values).tobytes()))] if values.size else [0, _NARROW, b""]


def unpack_times(stored: list[Any], n: int) -> array:
    """Inverse of ``pack_times`` for ``n`` values; raises ``ValueError`` unless the stored column
    has ``n`` non-decreasing values."""
    first, code, data = stored
    deltas = np.frombuffer(data, dtype=_DTYPES[code]).astype(np.int64)
    if len(deltas) != max(n - 1, 0) or (deltas.size and deltas.min() < 0):
        raise ValueError("time column of the wrong length or out of order")
    values = np.empty(n, dtype=np.int64)
    if n:
        values[0] = int(first)
        np.cumsum(deltas, out=values[1:])
        values[1:] += values[0]
    return array("q", values.tobytes())


class EventColumns:
    """One scenario's buffered events as parallel columns, ordered by time (ties: arrival order).

    ``digest`` is the event id's 64-bit digest, ``action`` an index into ``state.records.ACTIONS``.
    """

    __slots__ = ("action", "digest", "dwell", "item", "text", "ts")

    def __init__(self) -> None:
        self.ts = array("q")
        self.digest = array("Q")
        self.action = bytearray()
        self.dwell = array("q")
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


def pack_buffers(buffers: list[EventColumns]) -> list[Any]:
    """Several buffers as one block of columns (few numpy calls to read back):
    ``[counts, digests, firsts, time deltas, actions, dwells, items, texts]``; each buffer's times
    are its first time plus deltas (the delta at a buffer's start is 0)."""
    counts = [len(b) for b in buffers]
    deltas = array("q")
    for b in buffers:
        if len(b):
            deltas.append(0)
            deltas.frombytes(np.diff(np.frombuffer(b.ts, dtype=np.int64)).tobytes())
    return [
        counts,
        b"".join(column_bytes(b.digest) for b in buffers),
        [b.ts[0] if len(b) else 0 for b in buffers],
        pack_ints(deltas),
        b"".join(bytes(b.action) for b in buffers),
        pack_ints(array("q", b"".join(b.dwell.tobytes() for b in buffers))),
        [i for b in buffers for i in b.item],
        [t for b in buffers for t in b.text],
    ]


def unpack_buffers(stored: list[Any] | tuple[Any, ...], n_actions: int) -> list[EventColumns]:
    """Inverse of ``pack_buffers`` for columns of the right types (the caller's typed decoder
    checks them); raises ``ValueError`` (or ``KeyError``) unless every column has one value per
    event, times are in order and actions are below ``n_actions``."""
    counts, digests, firsts, deltas, actions, dwells, items, texts = stored
    n = sum(counts)
    digest = column_from_bytes("Q", digests)
    times = np.frombuffer(unpack_ints(deltas), dtype=np.int64).copy()
    dwell = unpack_ints(dwells)
    if not (len(digest) == len(times) == len(actions) == len(dwell) == len(items) == len(texts) == n):
        raise ValueError("event columns of unequal length")
    if len(counts) != len(firsts) or min(counts, default=0) < 0:
        raise ValueError("bad buffer counts")
    if actions.translate(None, bytes(range(n_actions))) or (n and times.min() < 0):
        raise ValueError("action index out of range, or events out of time order")
    np.cumsum(times, out=times)
    out, start = [], 0
    for count, first in zip(counts, firsts, strict=True):
        end = start + count
        b = EventColumns()
        if count:
            times[start:end] += int(first) - int(times[start])  # the raw sum there is the last one
            b.ts = array("q", times[start:end].tobytes())
            b.digest, b.dwell = digest[start:end], dwell[start:end]
            b.action = bytearray(actions[start:end])
            b.item, b.text = items[start:end], texts[start:end]
        out.append(b)
        start = end
    return out


class IdMemory:
    """At least the newest ``limit`` applied event-id digests, with each event's time and content
    fingerprint.

    The entries are kept in time order (``digest``/``ts``/``fp``, ties in arrival order: the oldest
    are forgotten first) and their digests once more sorted (``sorted_digests``, for lookups by
    bisection). Forgetting runs in steps: past ``limit + slack`` entries the oldest times are
    forgotten down to ``limit`` in one pass (``slack`` = ``limit // 16``), so an apply does not pay
    for it. ``forgotten_ms`` is the newest time forgotten so far (-1: none).
    """

    __slots__ = ("digest", "forgotten_ms", "fp", "limit", "slack", "sorted_digests", "ts")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.slack = limit // 16
        self.sorted_digests = array("Q")
        self.digest = array("Q")
        self.ts = array("q")
        self.fp = array("q")  # a crc32, or -1 for content unknown (states of format 1)
        self.forgotten_ms = -1

    def __len__(self) -> int:
        return len(self.digest)

    def find(self, digest: int) -> int:
        """``>= 0`` when ``digest`` is remembered, else ``-1 - insertion point`` (for ``add``)."""
        at = bisect.bisect_left(self.sorted_digests, digest)
        return at if at < len(self.sorted_digests) and self.sorted_digests[at] == digest else -1 - at

    def entry(self, digest: int) -> tuple[int, int]:
        """``(ts, fp)`` of a remembered digest (a scan: only duplicates and conflicts ask)."""
        at = int(np.flatnonzero(np.frombuffer(self.digest, dtype=np.uint64) == digest)[0])
        return self.ts[at], self.fp[at]

    def add(self, digest: int, ts: int, fp: int, at: int) -> None:
        """Remember a new digest (``at`` = ``-1 - find(digest)``), then forget the oldest times
        when over the limit and its slack."""
        self.sorted_digests.insert(at, digest)
        times = self.ts
        if not times or times[-1] <= ts:  # the common case: the newest event
            times.append(ts)
            self.digest.append(digest)
            self.fp.append(fp)
        else:
            at = bisect.bisect_right(times, ts)
            times.insert(at, ts)
            self.digest.insert(at, digest)
            self.fp.insert(at, fp)
        if len(times) > self.limit + self.slack:
            self._forget_oldest(len(times) - self.limit)

    def _forget_oldest(self, n: int) -> None:
        """Forget the ``n`` entries with the oldest times."""
        gone = np.sort(np.frombuffer(self.digest, dtype=np.uint64)[:n])
        self.forgotten_ms = max(self.forgotten_ms, self.ts[n - 1])
        del self.ts[:n], self.digest[:n], self.fp[:n]
        digests = np.frombuffer(self.sorted_digests, dtype=np.uint64)
        keep = np.ones(len(digests), dtype=bool)
        keep[np.searchsorted(digests, gone)] = False
        kept = digests[keep].tobytes()
        del digests
        self.sorted_digests = array("Q", kept)

    def restore(self, digest: array, ts: array, fp: array) -> None:
        """Replace the contents with entries given in time order (as ``time_ordered`` returns
        them), forgetting the oldest as ``add`` would. Raises ``ValueError`` on a repeated digest."""
        extra = len(digest) - self.limit
        if extra > self.slack:  # the rule of ``add``, e.g. a smaller memory than the state's
            self.forgotten_ms = max(self.forgotten_ms, ts[extra - 1])
            digest, ts, fp = digest[extra:], ts[extra:], fp[extra:]
        self.digest, self.ts, self.fp = digest, ts, fp
        in_order = np.sort(np.frombuffer(digest, dtype=np.uint64))
        if len(in_order) > 1 and not bool(np.all(in_order[1:] != in_order[:-1])):
            raise ValueError("repeated event-id digest in the id memory")
        self.sorted_digests = array("Q", in_order.tobytes())

    def time_ordered(self) -> tuple[array, array, array]:
        """``(digest, ts, fp)`` columns in time order (ties: arrival order)."""
        return self.digest, self.ts, self.fp
