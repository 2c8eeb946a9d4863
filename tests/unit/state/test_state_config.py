"""StateConfig and MixingConfig: documented defaults, validation errors and quota splitting."""

from __future__ import annotations

import pydantic
import pytest

from state.config import DAY_MS, MixingConfig, StateConfig


def test_defaults_match_the_documentation() -> None:
    state = StateConfig()
    assert state.buffer_capacity == {"feed": 256, "search": 128, "ads": 128}
    assert state.allowed_lateness_ms == DAY_MS
    assert state.idle_evict_s == 600
    assert state.recent_ids_capacity == 1024
    mixing = MixingConfig()
    assert mixing.scenario_slots == {"feed": 64, "search": 32, "ads": 32}
    assert mixing.bucket_bounds_ms == (DAY_MS, 7 * DAY_MS)
    assert mixing.bucket_shares == (0.5, 0.3, 0.2)
    assert mixing.redistribute_unused is True
    assert mixing.total_slots == 128 and mixing.n_buckets == 3


def test_configs_are_frozen() -> None:
    with pytest.raises(pydantic.ValidationError):
        MixingConfig().redistribute_unused = False  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        StateConfig().allowed_lateness_ms = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"bucket_shares": (0.5, 0.3, 0.3)},
        {"bucket_shares": (0.5, 0.6, -0.1)},
        {"bucket_shares": (0.5, 0.5)},
        {"bucket_bounds_ms": (7 * DAY_MS, DAY_MS)},
        {"bucket_bounds_ms": (DAY_MS, DAY_MS)},
        {"bucket_bounds_ms": (0, DAY_MS)},
        {"scenario_slots": {"feed": 64, "mail": 8}},
        {"scenario_slots": {"feed": -1, "ads": 8}},
        {"scenario_slots": {"feed": 0}},
        {"unknown_option": 1},
    ],
)
def test_invalid_mixing_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        MixingConfig(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"buffer_capacity": {"feed": 0}},
        {"buffer_capacity": {"mail": 8}},
        {"allowed_lateness_ms": -1},
        {"idle_evict_s": 0},
        {"recent_ids_capacity": -5},
    ],
)
def test_invalid_state_config_is_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(pydantic.ValidationError):
        StateConfig(**kwargs)  # type: ignore[arg-type]


def test_other_bucket_layouts_are_configurable() -> None:
    config = MixingConfig(bucket_bounds_ms=(3_600_000,), bucket_shares=(0.75, 0.25))
    assert config.n_buckets == 2
    assert config.bucket_quotas(10) == [8, 2]


@pytest.mark.parametrize("budget", [0, 1, 2, 3, 7, 32, 64, 100, 1001])
def test_bucket_quotas_sum_exactly_to_the_budget(budget: int) -> None:
    quotas = MixingConfig().bucket_quotas(budget)
    assert sum(quotas) == budget and all(q >= 0 for q in quotas)


def test_default_quotas() -> None:
    config = MixingConfig()
    assert config.bucket_quotas(64) == [32, 19, 13]
    assert config.bucket_quotas(32) == [16, 10, 6]
