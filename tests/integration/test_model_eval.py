"""The Amazon Food-Kitchen protocol on a small slice of the real data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.evaluation.baselines import CooccurrenceKnn, Popularity
from encoders.evaluation.bench_amazon import amazon_cases, amazon_training_dataset
from encoders.evaluation.ranking import evaluate_scorer, metrics_from_ranks

ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon-food-kitchen"
pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def amazon():
    if not (ROOT / "test_new.txt").is_file():
        pytest.skip(f"amazon-food-kitchen data not found at {ROOT}")
    return amazon_training_dataset(ROOT, content_dim=16)


def test_evaluation_targets_never_reach_training(amazon) -> None:
    dataset, split = amazon
    for h, t in zip(split.test[:500], split.test_targets[:500], strict=True):
        assert h.item_ids[int(t[0])] is not None and h.scenario_idx[int(t[0])] == 0
        assert h.scenario_idx[int(t[1])] == 1
    training = {h.user_id: h for h in dataset.histories}
    assert len(split.val) == 2000 and split.train_only
    for users, targets in ((split.test, split.test_targets), (split.val, split.val_targets)):
        for h, t in zip(users, targets, strict=True):
            seen = training.get(h.user_id)
            events = list(zip(seen.item_ids, seen.ts_ms.tolist(), strict=True)) if seen else []
            held = {int(t[0]), int(t[1])}
            assert events == [(h.item_ids[i], int(h.ts_ms[i])) for i in range(len(h)) if i not in held]
    for h in split.train_only:  # the remaining val users train on their whole history
        assert len(training[h.user_id]) == len(h)


def test_knn_beats_popularity_under_the_sampled_protocol(amazon) -> None:
    dataset, split = amazon
    cases = amazon_cases(split, dataset, "test", limit=600)
    knn, pop = CooccurrenceKnn(dataset.histories, dataset), Popularity(dataset.histories, dataset)
    for c in cases:
        k = metrics_from_ranks(evaluate_scorer(knn, c)["sampled"])
        p = metrics_from_ranks(evaluate_scorer(pop, c)["sampled"])
        assert k["NDCG@10"] > p["NDCG@10"] > 0.01
        assert np.isfinite(list(k.values())).all()


def test_a_seeded_sample_of_test_users_is_random_and_reproducible(amazon) -> None:
    dataset, split = amazon
    first = amazon_cases(split, dataset, "test", limit=300)
    sample = amazon_cases(split, dataset, "test", limit=300, sample_seed=42)
    again = amazon_cases(split, dataset, "test", limit=300, sample_seed=42)
    ids = [h.user_id for h in sample[0].histories]
    assert ids == [h.user_id for h in again[0].histories] and len(set(ids)) == 300
    assert ids != [h.user_id for h in first[0].histories]
