"""The evaluation protocol on real data: Amazon Food-Kitchen and Tianchi ecomm (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pytest

from encoders.config import DEFAULT_SCENARIOS
from encoders.errors import DataError
from encoders.evaluation.baselines import CooccurrenceKnn, Popularity
from encoders.evaluation.datasets.registry import DATASETS, SHARED_DATA, load_dataset
from encoders.evaluation.protocol import split_events, target_positions
from encoders.evaluation.ranking import evaluate_scorer, metrics_from_ranks

pytestmark = pytest.mark.data


def _load(name: str):  # noqa: ANN202
    try:
        return load_dataset(name)
    except DataError as exc:
        pytest.skip(f"{name} data not found under {SHARED_DATA / DATASETS[name][1]}: {exc}")


@pytest.fixture(scope="module")
def amazon():  # noqa: ANN201
    return split_events(_load("amazon-food-kitchen"), DEFAULT_SCENARIOS, seed=0, max_test_users=600, content_dim=16)


def test_evaluation_targets_never_reach_training(amazon) -> None:  # noqa: ANN001
    training = {h.user_id: h for h in amazon.training}
    assert [c.scenario for c in amazon.test] == [0, 1]  # Food -> feed, Kitchen -> search
    for cases in amazon.test + amazon.val:
        for h, t in zip(cases.histories[:300], cases.targets[:300], strict=True):
            held = set(target_positions(h, 3).tolist()) - {-1}
            assert int(t) in held
            seen = training[h.user_id]
            assert list(seen.item_ids) == [h.item_ids[i] for i in range(len(h)) if i not in held]


def test_knn_beats_popularity_under_the_sampled_protocol(amazon) -> None:  # noqa: ANN001
    knn = CooccurrenceKnn(amazon.training, amazon.dataset)
    pop = Popularity(amazon.training, amazon.dataset)
    for c in amazon.test:
        k = metrics_from_ranks(evaluate_scorer(knn, c)["sampled"])
        p = metrics_from_ranks(evaluate_scorer(pop, c)["sampled"])
        assert k["NDCG@10"] > p["NDCG@10"] > 0.01
        assert np.isfinite(list(k.values())).all()


def test_tianchi_buys_are_the_rare_scenario() -> None:
    histories = _load("tianchi-ecomm")
    counts = np.bincount(np.concatenate([h.scenario_idx for h in histories]), minlength=3)
    assert counts[0] > counts[1] > counts[2] > 0  # clicks >> carts + collects > buys
    split = split_events(histories, DEFAULT_SCENARIOS, seed=0, content_dim=8)
    buys = next(c for c in split.test if c.scenario == 2)
    assert len(buys.histories) > 500
