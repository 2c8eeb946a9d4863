"""Tests for encoders.features: token arrays built from plain per-user arrays."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.config import ModelConfig
from encoders.errors import DataError
from encoders.features import (
    PAD_ITEM,
    UNKNOWN_ITEM,
    SequenceInput,
    build_inputs,
    gap_bucket,
    hour_of_day,
)

CFG = ModelConfig(max_len=4)


def seq(n: int, now_ms: int = 10_000_000) -> SequenceInput:
    return SequenceInput(
        item_ids=[f"i{k}" if k % 2 == 0 else None for k in range(n)],
        texts=[None if k % 2 == 0 else f"query {k}" for k in range(n)],
        scenario_idx=np.array([k % 2 for k in range(n)], np.int64),
        action_idx=np.array([1] * n, np.int64),
        ts_ms=np.arange(n, dtype=np.int64) * 60_000,
        now_ms=now_ms,
    )


def test_gap_bucket_is_log2_of_age_in_minutes_and_clipped() -> None:
    now = 1_000 * 60_000
    ts = np.array([now, now - 60_000, now - 3 * 60_000, now + 5, 0])
    assert gap_bucket(ts, now, 24).tolist() == [0, 1, 2, 0, 9]
    assert gap_bucket(np.array([0]), 10**15, 5).tolist() == [4]


def test_hour_of_day_is_utc_hour() -> None:
    assert hour_of_day(np.array([0, 3_600_000 * 25 + 5])).tolist() == [0, 1]


def test_build_inputs_pads_to_longest_and_maps_unknown_items() -> None:
    out = build_inputs([seq(3), seq(1)], {"i0": 5}, CFG)
    assert out["item_idx"].shape == (2, 3)
    assert out["item_idx"][0].tolist() == [5, PAD_ITEM, UNKNOWN_ITEM]
    assert out["mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert out["item_idx"].dtype == np.int64 and out["mask"].dtype == np.float32


def test_build_inputs_keeps_the_newest_max_len_events() -> None:
    out = build_inputs([seq(6)], {f"i{k}": 10 + k for k in range(6)}, CFG)
    assert out["item_idx"].shape == (1, 4)
    assert out["item_idx"][0].tolist() == [12, PAD_ITEM, 14, PAD_ITEM]


def test_empty_sequence_gets_one_masked_slot() -> None:
    out = build_inputs([seq(0)], {}, CFG)
    assert out["mask"].shape == (1, 1) and out["mask"].sum() == 0


def test_text_vectors_fill_only_events_with_text() -> None:
    cfg = CFG.with_(use_text=True, text_dim=3)
    out = build_inputs([seq(3)], {}, cfg, lambda texts: np.ones((len(texts), 3), np.float32))
    assert out["has_text"][0].tolist() == [0, 1, 0]
    assert out["text_vec"][0, 1].tolist() == [1, 1, 1]


def test_mismatched_lengths_and_bad_indices_fail() -> None:
    with pytest.raises(DataError):
        SequenceInput(["a"], [], np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(1, np.int64), 0)
    bad = SequenceInput(["a"], [None], np.array([7]), np.array([0]), np.array([0]), 0)
    with pytest.raises(DataError):
        build_inputs([bad], {}, CFG)
