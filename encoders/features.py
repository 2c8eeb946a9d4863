"""Model inputs (padded token arrays) built from plain per-user event arrays, numpy only."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from encoders.config import ModelConfig
from encoders.errors import DataError

__all__ = [
    "PAD_ITEM",
    "UNKNOWN_ITEM",
    "FIRST_ITEM_ROW",
    "vocabulary_index",
    "MixingPolicyProtocol",
    "SequenceInput",
    "build_inputs",
    "gap_bucket",
    "hour_of_day",
    "input_names",
]

PAD_ITEM = 0  # item row for "no item" (padding, or a search without a click)
UNKNOWN_ITEM = 1  # item row for ids outside the vocabulary (learned fallback)
FIRST_ITEM_ROW = 2  # vocabulary item k has row FIRST_ITEM_ROW + k


def vocabulary_index(items: Sequence[str]) -> dict[str, int]:
    """Item id -> model row: the vocabulary's items follow the padding and unknown rows."""
    return {item: row + FIRST_ITEM_ROW for row, item in enumerate(items)}
_MS_PER_MIN = 60_000
_MS_PER_HOUR = 3_600_000
_MS_PER_DAY = 86_400_000

TextFn = Callable[[list[str]], np.ndarray]


class MixingPolicyProtocol(Protocol):
    """Chooses which events of a user's unified sequence enter the model (chronological)."""

    def select(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """Indices into the given arrays, in chronological order."""
        ...


@dataclass(frozen=True)
class SequenceInput:
    """One user's already-mixed sequence, oldest first; ``now_ms`` is the event-time watermark."""

    item_ids: list[str | None]
    texts: list[str | None]
    scenario_idx: np.ndarray
    action_idx: np.ndarray
    ts_ms: np.ndarray
    now_ms: int

    def __post_init__(self) -> None:
        n = len(self.item_ids)
        lengths = {len(self.texts), len(self.scenario_idx), len(self.action_idx), len(self.ts_ms)}
        if lengths != {n}:
            raise DataError(f"SequenceInput arrays differ in length: {sorted(lengths | {n})}")

    def __len__(self) -> int:
        return len(self.item_ids)


def gap_bucket(ts_ms: np.ndarray, now_ms: int, n_buckets: int) -> np.ndarray:
    """Log2 bucket of each event's age in minutes relative to ``now_ms`` (future counts as 0)."""
    age_min = np.maximum(now_ms - np.asarray(ts_ms, dtype=np.int64), 0) / _MS_PER_MIN
    return np.minimum(np.floor(np.log2(1.0 + age_min)), n_buckets - 1).astype(np.int64)


def hour_of_day(ts_ms: np.ndarray) -> np.ndarray:
    """UTC hour (0-23) of each timestamp."""
    return ((np.asarray(ts_ms, dtype=np.int64) % _MS_PER_DAY) // _MS_PER_HOUR).astype(np.int64)


def input_names(config: ModelConfig) -> list[str]:
    """Names of the model inputs, in the order the ONNX graph takes them."""
    names = ["item_idx", "scenario_idx", "action_idx", "gap_bucket", "hour", "mask"]
    return names + (["text_vec", "has_text"] if config.use_text else [])


def build_inputs(
    batch: Sequence[SequenceInput],
    item_index: Mapping[str, int],
    config: ModelConfig,
    text_fn: TextFn | None = None,
) -> dict[str, np.ndarray]:
    """Pad a batch to its longest sequence (at least 1, at most ``max_len``, newest kept)."""
    length = max(1, min(config.max_len, max((len(s) for s in batch), default=0)))
    b = len(batch)
    out = {
        "item_idx": np.zeros((b, length), np.int64),
        "scenario_idx": np.zeros((b, length), np.int64),
        "action_idx": np.zeros((b, length), np.int64),
        "gap_bucket": np.zeros((b, length), np.int64),
        "hour": np.zeros((b, length), np.int64),
        "mask": np.zeros((b, length), np.float32),
    }
    pending: list[tuple[int, int, str]] = []
    for row, seq in enumerate(batch):
        n = min(len(seq), length)
        if n == 0:
            continue
        lo = len(seq) - n
        sl = slice(0, n)
        out["item_idx"][row, sl] = [
            PAD_ITEM if i is None else item_index.get(i, UNKNOWN_ITEM) for i in seq.item_ids[lo:]
        ]
        out["scenario_idx"][row, sl] = _checked(seq.scenario_idx[lo:], len(config.scenarios), "scenario")
        out["action_idx"][row, sl] = _checked(seq.action_idx[lo:], len(config.actions), "action")
        ts = np.asarray(seq.ts_ms[lo:], dtype=np.int64)
        out["gap_bucket"][row, sl] = gap_bucket(ts, seq.now_ms, config.n_gap_buckets)
        out["hour"][row, sl] = hour_of_day(ts)
        out["mask"][row, sl] = 1.0
        pending.extend((row, j, t) for j, t in enumerate(seq.texts[lo:]) if t)
    if config.use_text:
        out["text_vec"] = np.zeros((b, length, config.text_dim), np.float32)
        out["has_text"] = np.zeros((b, length), np.float32)
        if pending:
            if text_fn is None:
                raise DataError("the model uses text but no text encoder was given")
            vecs = text_fn([t for _, _, t in pending])
            rows = np.array([r for r, _, _ in pending])
            cols = np.array([c for _, c, _ in pending])
            out["text_vec"][rows, cols] = vecs
            out["has_text"][rows, cols] = 1.0
    return out


def _checked(values: np.ndarray, size: int, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.int64)
    if arr.size and (arr.min() < 0 or arr.max() >= size):
        raise DataError(f"{what} index out of range [0, {size}): {arr.min()}..{arr.max()}")
    return arr
