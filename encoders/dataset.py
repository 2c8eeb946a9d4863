"""In-memory training data: per-user time-sorted event arrays plus the item vocabulary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from encoders.errors import DataError
from encoders.features import (
    FIRST_ITEM_ROW,
    PAD_ITEM,
    UNKNOWN_ITEM,
    MixingPolicyProtocol,
    SequenceInput,
    vocabulary_index,
)

__all__ = ["EventDataset", "UserHistory"]


@dataclass(frozen=True)
class UserHistory:
    """One user's events sorted by time (stable), as plain arrays."""

    user_id: str
    item_ids: list[str | None]
    texts: list[str | None]
    scenario_idx: np.ndarray
    action_idx: np.ndarray
    ts_ms: np.ndarray

    @classmethod
    def from_events(
        cls, user_id: str, events: Iterable[tuple[int, str | None, str | None, int, int]]
    ) -> UserHistory:
        """Build from ``(ts_ms, item_id, text, scenario_idx, action_idx)`` tuples, any order."""
        rows = sorted(events, key=lambda e: e[0])
        return cls(
            user_id=user_id,
            item_ids=[r[1] for r in rows],
            texts=[r[2] for r in rows],
            scenario_idx=np.array([r[3] for r in rows], np.int64),
            action_idx=np.array([r[4] for r in rows], np.int64),
            ts_ms=np.array([r[0] for r in rows], np.int64),
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def prefix(self, end: int) -> UserHistory:
        """The first ``end`` events."""
        return UserHistory(
            self.user_id, self.item_ids[:end], self.texts[:end], self.scenario_idx[:end],
            self.action_idx[:end], self.ts_ms[:end],
        )

    def without(self, positions: Iterable[int]) -> UserHistory:
        """The history minus the events at ``positions`` (e.g. held-out evaluation targets)."""
        drop = {int(p) for p in positions}
        keep = np.array([i for i in range(len(self)) if i not in drop], np.int64)
        return UserHistory(
            self.user_id, [self.item_ids[i] for i in keep], [self.texts[i] for i in keep],
            self.scenario_idx[keep], self.action_idx[keep], self.ts_ms[keep],
        )

    def context(
        self, end: int, policy: MixingPolicyProtocol | None, scenarios: Sequence[int] | None = None
    ) -> SequenceInput:
        """The model input for a cut before event ``end``: optionally filtered, then mixed.

        ``now_ms`` is the time of the last event before the cut, like the worker's watermark.
        """
        idx = np.arange(end)
        if scenarios is not None:
            idx = idx[np.isin(self.scenario_idx[:end], scenarios)]
        now_ms = int(self.ts_ms[end - 1]) if end > 0 else int(self.ts_ms[0]) if len(self) else 0
        if policy is not None and len(idx):
            idx = idx[np.asarray(policy.select(self.scenario_idx[idx], self.ts_ms[idx], now_ms))]
        return SequenceInput(
            item_ids=[self.item_ids[i] for i in idx],
            texts=[self.texts[i] for i in idx],
            scenario_idx=self.scenario_idx[idx],
            action_idx=self.action_idx[idx],
            ts_ms=self.ts_ms[idx],
            now_ms=now_ms,
        )


@dataclass
class EventDataset:
    """Users' histories plus the item vocabulary (rows 0/1 are padding/unknown).

    ``content`` optionally holds a fixed content vector per vocabulary row (a table the user
    provides, MiniLM title vectors or a co-occurrence factorisation of training events).
    """

    histories: list[UserHistory]
    items: list[str]
    content: np.ndarray | None = None
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = vocabulary_index(self.items)
        if len(self.index) != len(self.items):
            raise DataError("duplicate item ids in the vocabulary")
        if self.content is not None and self.content.shape[0] != self.n_items:
            raise DataError(f"content rows {self.content.shape[0]} != vocabulary {self.n_items}")

    @property
    def n_items(self) -> int:
        return len(self.items) + FIRST_ITEM_ROW

    @classmethod
    def build(
        cls, histories: list[UserHistory], extra_items: Iterable[str] = (), min_count: int = 1
    ) -> EventDataset:
        """Vocabulary from items seen at least ``min_count`` times (plus ``extra_items``)."""
        counts: dict[str, int] = {}
        for h in histories:
            for item in h.item_ids:
                if item is not None:
                    counts[item] = counts.get(item, 0) + 1
        items = sorted({i for i, c in counts.items() if c >= min_count} | set(extra_items))
        return cls(histories=histories, items=items)

    def item_scenario_bits(self) -> np.ndarray:
        """``[len(items)]`` int64 bitmasks in vocabulary order: bit ``s`` is set when the item occurs
        in an event of scenario index ``s`` (0: only in ``extra_items``, never seen)."""
        bits = np.zeros(len(self.items), np.int64)
        for h in self.histories:
            rows = self.item_rows(h)
            known = rows >= FIRST_ITEM_ROW
            np.bitwise_or.at(bits, rows[known] - FIRST_ITEM_ROW, np.left_shift(1, h.scenario_idx[known]))
        return bits

    def item_rows(self, history: UserHistory) -> np.ndarray:
        """Vocabulary rows of a history's items (0 for none, 1 for unknown)."""
        return np.array(
            [PAD_ITEM if i is None else self.index.get(i, UNKNOWN_ITEM) for i in history.item_ids],
            np.int64,
        )
