"""Frozen hyperparameters of per-user state (buffers, lateness, eviction) and of mixing."""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from state.records import SCENARIOS

__all__ = ["DAY_MS", "DEFAULT_CACHE_MAX_BYTES", "HOUR_MS", "MixingConfig", "StateConfig"]

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: A worker's in-memory sequence cache bound: ~5,500 full users at ~90 KB each (`approx_bytes`).
DEFAULT_CACHE_MAX_BYTES = 512 * 1024**2


def _check_scenario_keys(value: dict[str, int], what: str) -> dict[str, int]:
    unknown = sorted(set(value) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"{what}: unknown scenarios {unknown}; known: {list(SCENARIOS)}")
    negative = {k: v for k, v in value.items() if v < 0}
    if negative:
        raise ValueError(f"{what}: must be >= 0, got {negative}")
    return value


class StateConfig(BaseModel):
    """Bounds of one user's sequence state.

    ``buffer_capacity`` is per scenario (a scenario left out keeps no events); when a buffer is
    full the oldest event (by ``ts_ms``) is dropped. An event older than
    ``watermark_ms - allowed_lateness_ms`` is rejected as too late. ``recent_ids_capacity`` bounds
    the set of recently applied event ids that dedupes beyond what the buffers still hold. A
    worker's in-memory cache of sequences holds at most ``cache_max_bytes`` (estimated; least
    recently used users leave first) and drops users idle for ``idle_evict_s``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    buffer_capacity: dict[str, int] = Field(
        default_factory=lambda: {"feed": 256, "search": 128, "ads": 128}
    )
    allowed_lateness_ms: int = Field(default=DAY_MS, ge=0)
    idle_evict_s: float = Field(default=600.0, gt=0)
    cache_max_bytes: int = Field(default=DEFAULT_CACHE_MAX_BYTES, gt=0)
    recent_ids_capacity: int = Field(default=1024, ge=0)

    @field_validator("buffer_capacity")
    @classmethod
    def _valid_capacity(cls, value: dict[str, int]) -> dict[str, int]:
        _check_scenario_keys(value, "buffer_capacity")
        if sum(value.values()) == 0:
            raise ValueError("buffer_capacity: at least one scenario needs capacity > 0")
        return value

    def capacity(self, scenario: str) -> int:
        """Buffer capacity of ``scenario`` (0 when it is not configured)."""
        return self.buffer_capacity.get(scenario, 0)


class MixingConfig(BaseModel):
    """The 2-D dense mixing policy: a slot budget per scenario × a share per time bucket.

    ``bucket_bounds_ms`` are increasing age limits; bucket ``i`` holds events with
    ``bounds[i-1] < now_ms - ts_ms <= bounds[i]`` and the last bucket everything older, so there
    are ``len(bucket_bounds_ms) + 1`` buckets and as many ``bucket_shares`` (summing to 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    scenario_slots: dict[str, int] = Field(
        default_factory=lambda: {"feed": 64, "search": 32, "ads": 32}
    )
    bucket_bounds_ms: tuple[int, ...] = (DAY_MS, 7 * DAY_MS)
    bucket_shares: tuple[float, ...] = (0.5, 0.3, 0.2)
    redistribute_unused: bool = True

    @field_validator("scenario_slots")
    @classmethod
    def _valid_slots(cls, value: dict[str, int]) -> dict[str, int]:
        _check_scenario_keys(value, "scenario_slots")
        if sum(value.values()) == 0:
            raise ValueError("scenario_slots: the total slot budget must be > 0")
        return value

    @field_validator("bucket_bounds_ms")
    @classmethod
    def _valid_bounds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(b <= 0 for b in value):
            raise ValueError(f"bucket_bounds_ms: must be > 0, got {value}")
        if any(b >= c for b, c in zip(value, value[1:], strict=False)):
            raise ValueError(f"bucket_bounds_ms: must be strictly increasing, got {value}")
        return value

    @field_validator("bucket_shares")
    @classmethod
    def _valid_shares(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(s < 0 or not math.isfinite(s) for s in value):
            raise ValueError(f"bucket_shares: must be finite and >= 0, got {value}")
        if not math.isclose(sum(value), 1.0, abs_tol=1e-6):
            raise ValueError(f"bucket_shares: must sum to 1, got {sum(value)}")
        return value

    @model_validator(mode="after")
    def _shares_match_bounds(self) -> MixingConfig:
        if len(self.bucket_shares) != len(self.bucket_bounds_ms) + 1:
            raise ValueError(
                f"bucket_shares needs len(bucket_bounds_ms) + 1 = {len(self.bucket_bounds_ms) + 1}"
                f" entries, got {len(self.bucket_shares)}"
            )
        return self

    @property
    def n_buckets(self) -> int:
        """Number of time buckets (one more than the number of bounds)."""
        return len(self.bucket_bounds_ms) + 1

    @property
    def total_slots(self) -> int:
        """The whole model-input budget: the sum of the per-scenario budgets."""
        return sum(self.scenario_slots.values())

    def slots(self, scenario: str) -> int:
        """Slot budget of ``scenario`` (0 when it is not configured)."""
        return self.scenario_slots.get(scenario, 0)

    def bucket_quotas(self, budget: int) -> list[int]:
        """Split ``budget`` over the buckets by share, summing exactly to ``budget``.

        Largest remainder: floor every ``budget × share``, then hand the leftover slots one
        each to the largest fractional parts (ties go to the more recent bucket).
        """
        total_share = sum(self.bucket_shares)
        raw = [budget * s / total_share for s in self.bucket_shares]
        quotas = [math.floor(r + 1e-9) for r in raw]
        order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - quotas[i]), i))
        for i in order[: budget - sum(quotas)]:
            quotas[i] += 1
        return quotas
