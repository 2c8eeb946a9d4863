"""The one evaluation protocol: last event per scenario is the target, targets never train."""

from __future__ import annotations

import numpy as np

from encoders.data.synthetic import synthetic_dataset
from encoders.evaluation.protocol import split_events, target_positions, validation_count

SCENARIOS = ("feed", "search", "ads")


def test_target_is_the_last_item_event_of_each_scenario() -> None:
    from encoders.dataset import UserHistory

    h = UserHistory.from_events("u", [(1, "a", None, 0, 1), (2, None, "q", 1, 8), (3, "b", None, 1, 1),
                                      (4, "c", None, 0, 1), (5, None, "q2", 1, 8)])
    assert target_positions(h, 3).tolist() == [3, 2, -1]


def test_targets_of_validation_and_test_users_never_reach_training() -> None:
    histories = synthetic_dataset(120, seed=1, mean_events=30).histories
    split = split_events(histories, SCENARIOS, seed=0, min_users=5, content_dim=8)
    by_user = {h.user_id: h for h in histories}
    training = {h.user_id: h for h in split.training}
    assert {c.scenario for c in split.test} == {0, 1, 2}
    val_users = {h.user_id for c in split.val for h in c.histories}
    test_users = {h.user_id for c in split.test for h in c.histories}
    assert val_users and test_users and not val_users & test_users
    for cases in split.test + split.val:
        for h, t in zip(cases.histories, cases.targets, strict=True):
            assert h.scenario_idx[t] == cases.scenario and h.item_ids[t] is not None
            full, seen = by_user[h.user_id], training[h.user_id]
            assert len(seen) < len(full)
            held = set(target_positions(full, 3).tolist()) - {-1}
            assert list(seen.ts_ms) == [full.ts_ms[i] for i in range(len(full)) if i not in held]
    assert np.isin([c.target_rows for c in split.test][0], split.test[0].columns).all()


def test_a_small_dataset_gets_at_least_a_floor_of_validation_users() -> None:
    """10 % of 300 users would be 30: the floor raises it to a third (100); a large dataset keeps
    its share; ``val_share`` 0 draws none."""
    histories = synthetic_dataset(300, seed=2, mean_events=10).histories
    split = split_events(histories, SCENARIOS, seed=0, min_users=5, content_dim=8)
    assert len({h.user_id for c in split.val for h in c.histories}) == 100
    assert validation_count(6000, 0.1, 2000) == 600
    assert validation_count(60000, 0.1, 2000) == 2000
    assert validation_count(300, 0.0, 2000) == 0


def test_the_split_is_seeded() -> None:
    histories = synthetic_dataset(60, seed=2, mean_events=20).histories
    a = split_events(histories, SCENARIOS, seed=5, min_users=5, content_dim=8)
    b = split_events(histories, SCENARIOS, seed=5, min_users=5, content_dim=8)
    assert [h.user_id for h in a.val[0].histories] == [h.user_id for h in b.val[0].histories]


def test_item_vectors_join_the_cooccurrence_factors_in_the_content_table() -> None:
    histories = synthetic_dataset(60, seed=3, mean_events=20).histories
    plain = split_events(histories, SCENARIOS, seed=0, min_users=5, content_dim=8)
    some_item = plain.dataset.items[0]
    wide = split_events(histories, SCENARIOS, seed=0, min_users=5, content_dim=8,
                        item_vectors={some_item: np.full(4, 0.5, np.float32)})
    assert wide.dataset.content.shape == (plain.dataset.n_items, 12)
    np.testing.assert_array_equal(wide.dataset.content[:, :8], plain.dataset.content)
    row = wide.dataset.index[some_item]
    assert wide.dataset.content[row, 8:].tolist() == [0.5] * 4
    assert not wide.dataset.content[np.arange(wide.dataset.n_items) != row, 8:].any()  # no vector: zeros


def test_development_histories_hold_no_real_target() -> None:
    from encoders.evaluation.protocol import development_histories

    histories = synthetic_dataset(80, seed=4, mean_events=20).histories
    dev = {h.user_id: h for h in development_histories(histories, SCENARIOS, seed=0)}
    for h in histories:
        held = set(target_positions(h, 3).tolist()) - {-1}
        if h.user_id in dev and held:
            assert len(dev[h.user_id]) == len(h) - len(held)
            assert list(dev[h.user_id].ts_ms) == [h.ts_ms[i] for i in range(len(h)) if i not in held]


def test_a_validation_split_holds_out_only_the_validation_users_targets() -> None:
    """``unistate train``'s split: validation users lose their targets, every other event trains,
    the vocabulary stays the dataset's, and a scenario with too few validation users is skipped."""
    from encoders.evaluation.protocol import validation_split

    data = synthetic_dataset(120, seed=1, mean_events=30)
    split = validation_split(data, SCENARIOS, seed=0, val_share=0.25, min_val_users=5)
    assert not split.test and split.dataset.items == data.items and split.dataset.content is None
    assert {c.scenario for c in split.val} == {0, 1, 2}
    val_users = {h.user_id for c in split.val for h in c.histories}
    assert 0 < len(val_users) <= 40  # a third of 120 (``VALIDATION_FLOOR``), not a quarter
    training = {h.user_id: h for h in split.training}
    for full in data.histories:
        seen = training[full.user_id]
        if full.user_id not in val_users:
            assert list(seen.ts_ms) == list(full.ts_ms)
            continue
        held = set(target_positions(full, 3).tolist()) - {-1}
        assert list(seen.ts_ms) == [full.ts_ms[i] for i in range(len(full)) if i not in held]
    for cases in split.val:
        assert np.isin(cases.target_rows, cases.columns).all()
    assert validation_split(data, SCENARIOS, seed=0, val_share=0.25, min_val_users=41).val == []
