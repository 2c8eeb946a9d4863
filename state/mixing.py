"""The 2-D dense mixing policy: which buffered events fill the model's input slots."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from state.config import MixingConfig
from state.records import SCENARIOS, Behavior
from state.sequence import UserSequence

__all__ = ["MixedSlot", "MixingPolicy", "RecentWindowPolicy", "MixingPolicyProtocol"]


class MixingPolicyProtocol(Protocol):
    """Anything that picks model-input events from plain arrays (``encoders.train`` takes one)."""

    def select(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """Indices into the inputs, in chronological order."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able settings: travels with a trained model so serving can refuse another policy."""
        ...


@dataclass(frozen=True, slots=True)
class MixedSlot:
    """One chosen event with the scenario and time bucket it was chosen through."""

    behavior: Behavior
    scenario: str
    bucket: int


def _recency_order(ts_ms: np.ndarray) -> np.ndarray:
    """Indices most recent first; equal times: the later input position counts as more recent."""
    positions = np.arange(len(ts_ms), dtype=np.int64)
    return np.lexsort((-positions, -ts_ms))


def _chronological(indices: np.ndarray, ts_ms: np.ndarray) -> np.ndarray:
    """``indices`` sorted by (ts_ms, input position)."""
    return indices[np.lexsort((indices, ts_ms[indices]))].astype(np.int64, copy=False)


def _as_int64(name: str, values: np.ndarray) -> np.ndarray:
    array = np.asarray(values, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    return array


class MixingPolicy:
    """Scenario budgets × time-bucket quotas, unused slots rolling to older buckets.

    For each scenario ``s`` with budget ``B_s``: bucket quotas split ``B_s`` by the configured
    shares; each bucket takes its most recent events up to its quota; a bucket's unused quota
    rolls into the next older bucket; capacity still left after the oldest bucket goes to the
    scenario's most recent unchosen events. With ``redistribute_unused``, slots a scenario could
    not fill at all go to the most recent unchosen events of any scenario. The result never
    exceeds the total budget and is deterministic. See docs/mixing.md.
    """

    def __init__(self, config: MixingConfig | None = None) -> None:
        self.config = config or MixingConfig()
        self._bounds_ms = np.asarray(self.config.bucket_bounds_ms, dtype=np.int64)
        self._quotas = {s: self.config.bucket_quotas(self.config.slots(s)) for s in SCENARIOS}
        self._slots = np.array([self.config.slots(s) for s in SCENARIOS], dtype=np.int64)

    def describe(self) -> dict[str, Any]:
        """A JSON-able description; a model records the policy it was trained with."""
        return {"policy": "mixing", **self.config.model_dump(mode="json")}

    @property
    def max_len(self) -> int:
        """The most events ``select`` ever returns (the total slot budget)."""
        return self.config.total_slots

    def buckets(self, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """Time bucket of each event: 0 for age ≤ bounds[0] (future events included), and so on."""
        age_ms = np.int64(now_ms) - _as_int64("ts_ms", ts_ms)
        return np.searchsorted(self._bounds_ms, age_ms, side="left").astype(np.int64)

    def select(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """Indices of the chosen events into the inputs, chronological (stable on equal times)."""
        scenario_idx = _as_int64("scenario_idx", scenario_idx)
        ts_ms = _as_int64("ts_ms", ts_ms)
        if scenario_idx.shape != ts_ms.shape:
            raise ValueError(f"shape mismatch: {scenario_idx.shape} vs {ts_ms.shape}")
        if len(ts_ms) == 0:
            return np.empty(0, dtype=np.int64)
        if scenario_idx.min() >= 0 and np.all(np.bincount(scenario_idx, minlength=len(SCENARIOS)) <= self._slots):
            # Every scenario fits its budget, so the quotas choose every event (the usual case for
            # a user with few events): the same result without the per-bucket passes.
            return _chronological(np.arange(len(ts_ms), dtype=np.int64), ts_ms)
        return self._select_by_quotas(scenario_idx, ts_ms, now_ms)

    def _select_by_quotas(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        order = _recency_order(ts_ms)
        bucket = self.buckets(ts_ms, now_ms)
        chosen = np.zeros(len(ts_ms), dtype=bool)
        unused = 0
        for s, name in enumerate(SCENARIOS):
            ranked = order[scenario_idx[order] == s]
            unused += self._fill_scenario(ranked, bucket, self._quotas[name], chosen)
        if self.config.redistribute_unused and unused > 0:
            chosen[order[~chosen[order]][:unused]] = True
        return _chronological(np.flatnonzero(chosen), ts_ms)

    @staticmethod
    def _fill_scenario(
        ranked: np.ndarray, bucket: np.ndarray, quotas: list[int], chosen: np.ndarray
    ) -> int:
        """Choose one scenario's events (``ranked`` most recent first); return unused slots."""
        carry = 0
        for b, quota in enumerate(quotas):
            take = quota + carry
            picked = ranked[bucket[ranked] == b][:take]
            chosen[picked] = True
            carry = take - len(picked)
        if carry > 0:
            rest = ranked[~chosen[ranked]][:carry]
            chosen[rest] = True
            carry -= len(rest)
        return carry

    def mix(self, seq: UserSequence, now_ms: int | None = None) -> list[MixedSlot]:
        """The chosen behaviours of ``seq`` with scenario and bucket, chronological.

        ``now_ms`` defaults to ``seq.watermark_ms``, as the worker uses it (replay-deterministic).
        """
        now_ms = seq.watermark_ms if now_ms is None else now_ms
        behaviors, scenario_idx, ts_ms = seq.arrays()
        picked = self.select(scenario_idx, ts_ms, now_ms)
        bucket = self.buckets(ts_ms[picked], now_ms)
        return [
            MixedSlot(behavior=behaviors[i], scenario=behaviors[i].scenario, bucket=int(b))
            for i, b in zip(picked.tolist(), bucket.tolist(), strict=True)
        ]


class RecentWindowPolicy:
    """The no-quota ablation: the ``n`` most recent events of any scenario, chronological."""

    def __init__(self, n: int) -> None:
        if n <= 0:
            raise ValueError(f"n must be > 0, got {n}")
        self.n = n

    @property
    def max_len(self) -> int:
        """The most events ``select`` ever returns."""
        return self.n

    def describe(self) -> dict[str, Any]:
        """A JSON-able description; a model records the policy it was trained with."""
        return {"policy": "recent_window", "n": self.n}

    def select(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """Indices of the ``n`` most recent events, chronological; ``now_ms`` is unused."""
        del now_ms
        scenario_idx = _as_int64("scenario_idx", scenario_idx)
        ts_ms = _as_int64("ts_ms", ts_ms)
        if scenario_idx.shape != ts_ms.shape:
            raise ValueError(f"shape mismatch: {scenario_idx.shape} vs {ts_ms.shape}")
        return _chronological(_recency_order(ts_ms)[: self.n], ts_ms)
