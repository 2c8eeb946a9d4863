"""The 2-D dense mixing policy against its contract, and against the recent-window ablation."""

from __future__ import annotations

import numpy as np
import pytest

from state.config import MixingConfig
from state.mixing import MixedSlot, MixingPolicy, MixingPolicyProtocol, RecentWindowPolicy
from state.records import Behavior
from state.sequence import UserSequence

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
NOW_MS = 1_000 * DAY_MS
FEED, SEARCH, ADS = 0, 1, 2


def events(*groups: tuple[int, list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """(scenario, [ages in ms]) groups → (scenario_idx, ts_ms) arrays."""
    scenario_idx = np.array([s for s, ages in groups for _ in ages], dtype=np.int64)
    ts_ms = np.array([NOW_MS - a for _, ages in groups for a in ages], dtype=np.int64)
    return scenario_idx, ts_ms


def one_scenario_policy(slots: int, redistribute_unused: bool = True) -> MixingPolicy:
    """Only feed has a budget; default shares 0.5 / 0.3 / 0.2."""
    config = MixingConfig(scenario_slots={"feed": slots}, redistribute_unused=redistribute_unused)
    return MixingPolicy(config)


def test_both_policies_satisfy_the_selector_protocol() -> None:
    policies: list[MixingPolicyProtocol] = [MixingPolicy(), RecentWindowPolicy(8)]
    for policy in policies:
        assert policy.select(np.array([0]), np.array([NOW_MS]), NOW_MS).tolist() == [0]


def test_bucket_quotas_are_honoured_when_every_bucket_is_full() -> None:
    policy = one_scenario_policy(10)  # quotas 5 / 3 / 2
    ages = [HOUR_MS * h for h in range(1, 21)] + [2 * DAY_MS + HOUR_MS * h for h in range(20)]
    ages += [30 * DAY_MS + HOUR_MS * h for h in range(20)]
    scenario_idx, ts_ms = events((FEED, ages))
    picked = policy.select(scenario_idx, ts_ms, NOW_MS)
    buckets = policy.buckets(ts_ms[picked], NOW_MS)
    assert np.bincount(buckets, minlength=3).tolist() == [5, 3, 2]
    # Within each bucket the most recent events are taken.
    assert sorted((NOW_MS - ts_ms[picked]).tolist()) == sorted(
        ages[:5] + ages[20:23] + ages[40:42]
    )


def test_unused_quota_rolls_to_the_older_bucket_not_the_newer() -> None:
    policy = one_scenario_policy(10, redistribute_unused=False)  # quotas 5 / 3 / 2
    recent = [HOUR_MS * h for h in range(1, 3)]  # only 2 in bucket 0
    week = [2 * DAY_MS + HOUR_MS * h for h in range(20)]
    old = [30 * DAY_MS + HOUR_MS * h for h in range(20)]
    scenario_idx, ts_ms = events((FEED, recent + week + old))
    buckets = policy.buckets(ts_ms[policy.select(scenario_idx, ts_ms, NOW_MS)], NOW_MS)
    assert np.bincount(buckets, minlength=3).tolist() == [2, 6, 2]


def test_capacity_left_after_the_oldest_bucket_goes_to_the_most_recent_unchosen() -> None:
    policy = one_scenario_policy(10, redistribute_unused=False)  # quotas 5 / 3 / 2
    recent = [HOUR_MS * h for h in range(1, 21)]  # 20 recent, nothing older
    scenario_idx, ts_ms = events((FEED, recent))
    picked = policy.select(scenario_idx, ts_ms, NOW_MS)
    assert sorted((NOW_MS - ts_ms[picked]).tolist()) == recent[:10]


def test_future_events_count_as_the_newest_bucket() -> None:
    policy = MixingPolicy()
    ages_ms = np.array([-5, 0, DAY_MS, DAY_MS + 1, 8 * DAY_MS])
    ts_ms = NOW_MS - ages_ms
    assert policy.buckets(ts_ms, NOW_MS).tolist() == [0, 0, 0, 1, 2]


def test_rare_scenario_keeps_its_share_against_a_feed_flood() -> None:
    flood = [1_000 * i for i in range(2_000)]  # 2000 feed events in the last hour
    ads = [3 * DAY_MS + i for i in range(10)]  # 10 ad events days ago
    searches = [40 * DAY_MS + i for i in range(40)]  # 40 searches more than a month ago
    scenario_idx, ts_ms = events((FEED, flood), (ADS, ads), (SEARCH, searches))
    mixed = MixingPolicy().select(scenario_idx, ts_ms, NOW_MS)
    window = RecentWindowPolicy(128).select(scenario_idx, ts_ms, NOW_MS)
    assert np.bincount(scenario_idx[mixed], minlength=3).tolist() == [86, 32, 10]
    assert np.bincount(scenario_idx[window], minlength=3).tolist() == [128, 0, 0]


def test_unused_scenario_slots_are_redistributed_only_when_enabled() -> None:
    scenario_idx, ts_ms = events((FEED, [HOUR_MS * h for h in range(200)]), (ADS, [1, 2]))
    on = MixingPolicy(MixingConfig(redistribute_unused=True)).select(scenario_idx, ts_ms, NOW_MS)
    off = MixingPolicy(MixingConfig(redistribute_unused=False)).select(scenario_idx, ts_ms, NOW_MS)
    assert np.bincount(scenario_idx[on], minlength=3).tolist() == [126, 0, 2]
    assert np.bincount(scenario_idx[off], minlength=3).tolist() == [64, 0, 2]


def test_total_never_exceeds_budget_and_output_is_chronological_and_unique() -> None:
    rng = np.random.default_rng(7)
    policy = MixingPolicy()
    for n in [0, 1, 5, 127, 128, 129, 600]:
        scenario_idx = rng.integers(0, 3, size=n)
        ts_ms = NOW_MS - rng.integers(-HOUR_MS, 60 * DAY_MS, size=n)
        picked = policy.select(scenario_idx, ts_ms, NOW_MS)
        assert picked.dtype == np.int64
        assert len(picked) == min(n, 128)
        assert len(set(picked.tolist())) == len(picked)
        chosen_ts = ts_ms[picked]
        assert np.all(np.diff(chosen_ts) >= 0)


def test_selection_is_deterministic_and_stable_on_equal_times() -> None:
    scenario_idx = np.zeros(10, dtype=np.int64)
    ts_ms = np.full(10, NOW_MS)
    policy = one_scenario_policy(4)
    first = policy.select(scenario_idx, ts_ms, NOW_MS)
    assert first.tolist() == [6, 7, 8, 9]  # later input position counts as more recent
    again = [policy.select(scenario_idx, ts_ms, NOW_MS).tolist() for _ in range(3)]
    assert again == [first.tolist()] * 3
    window = RecentWindowPolicy(3).select(scenario_idx, ts_ms, NOW_MS)
    assert window.tolist() == [7, 8, 9]


def test_recent_window_returns_the_n_most_recent_chronologically() -> None:
    ts_ms = np.array([50, 10, 40, 30, 20])
    picked = RecentWindowPolicy(3).select(np.zeros(5, dtype=np.int64), ts_ms, 0)
    assert picked.tolist() == [3, 2, 0]


def test_mismatched_inputs_are_rejected() -> None:
    with pytest.raises(ValueError):
        MixingPolicy().select(np.zeros(3), np.zeros(2), 0)
    with pytest.raises(ValueError):
        RecentWindowPolicy(0)


def test_mix_reports_scenario_and_bucket_using_the_watermark_as_now() -> None:
    seq = UserSequence("u1")
    seq.apply(Behavior("old", "u1", "search", NOW_MS - 10 * DAY_MS, "query", text="kettle"))
    seq.apply(Behavior("mid", "u1", "ads", NOW_MS - 2 * DAY_MS, "click", item_id="ad1"))
    seq.apply(Behavior("new", "u1", "feed", NOW_MS, "like", item_id="i1"))
    slots = MixingPolicy().mix(seq)
    assert slots == [
        MixedSlot(seq.behaviors()[0], "search", 2),
        MixedSlot(seq.behaviors()[1], "ads", 1),
        MixedSlot(seq.behaviors()[2], "feed", 0),
    ]
    assert [s.bucket for s in MixingPolicy().mix(seq, now_ms=NOW_MS + 30 * DAY_MS)] == [2, 2, 2]


def test_worked_example_from_docs() -> None:
    minute_ms = 60_000
    scenario_idx, ts_ms = events(
        (FEED, [i * 9 * minute_ms for i in range(150)]),
        (FEED, [2 * DAY_MS + i * 12 * HOUR_MS for i in range(10)]),
        (FEED, [8 * DAY_MS + i * DAY_MS for i in range(100)]),
        (SEARCH, [20 * HOUR_MS + i * HOUR_MS for i in range(3)]),
        (SEARCH, [3 * DAY_MS + i * DAY_MS for i in range(4)]),
        (ADS, [i * 30 * minute_ms for i in range(40)]),
    )

    def table(policy: MixingPolicy | RecentWindowPolicy) -> list[list[int]]:
        picked = policy.select(scenario_idx, ts_ms, NOW_MS)
        buckets = MixingPolicy().buckets(ts_ms[picked], NOW_MS)
        per_scenario = [buckets[scenario_idx[picked] == s] for s in range(3)]
        return [np.bincount(b, minlength=3).tolist() for b in per_scenario]

    assert table(MixingPolicy()) == [[57, 10, 22], [3, 4, 0], [32, 0, 0]]
    no_redistribution = MixingPolicy(MixingConfig(redistribute_unused=False))
    assert table(no_redistribution) == [[32, 10, 22], [3, 4, 0], [32, 0, 0]]
    assert table(RecentWindowPolicy(128)) == [[98, 0, 0], [0, 0, 0], [30, 0, 0]]


@pytest.mark.parametrize("redistribute_unused", [True, False])
def test_the_every_event_fits_shortcut_chooses_what_the_quotas_choose(redistribute_unused: bool) -> None:
    rng = np.random.default_rng(11)
    policy = MixingPolicy(MixingConfig(scenario_slots={"feed": 8, "search": 4, "ads": 2},
                                       redistribute_unused=redistribute_unused))
    shortcuts = 0
    for _ in range(300):
        n = int(rng.integers(1, 20))
        scenario_idx = rng.integers(0, 3, size=n)
        ts_ms = NOW_MS - rng.integers(-HOUR_MS, 30 * DAY_MS, size=n) // rng.integers(1, 4)
        fits = bool(np.all(np.bincount(scenario_idx, minlength=3) <= [8, 4, 2]))
        shortcuts += fits
        expected = policy._select_by_quotas(scenario_idx, ts_ms, NOW_MS)
        assert policy.select(scenario_idx, ts_ms, NOW_MS).tolist() == expected.tolist()
    assert 50 < shortcuts < 250  # both paths were exercised
