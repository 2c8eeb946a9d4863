"""Collapse cannot return unnoticed: a briefly trained model on small synthetic data is personalized."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders import presets
from encoders.data.synthetic import planted_items, synthetic_dataset
from encoders.evaluation.personalization import personalization_report
from encoders.evaluation.ranking import ModelScorer
from encoders.train import load_checkpoint, train
from state.mixing import MixingPolicy

pytestmark = pytest.mark.timeout(120)


def test_the_demo_recipe_gives_users_their_own_vectors_and_interests(tmp_path: Path) -> None:
    dataset = synthetic_dataset(120, seed=7, mean_events=40)
    config = replace(presets.demo(), progress=False)
    model, _, _ = load_checkpoint(train(config, dataset, MixingPolicy(), tmp_path))
    users = ModelScorer(model, dataset, MixingPolicy()).interests(dataset.histories).numpy()
    with torch.no_grad():
        items = model.item_vectors(torch.arange(dataset.n_items)).numpy()
    planted = [{dataset.index[i] for i in planted_items(h.user_id, seed=7) if i in dataset.index}
               for h in dataset.histories]
    report = personalization_report(users, items, np.arange(2, dataset.n_items), planted=planted)
    for scenario, row in report.items():
        # a collapsed model: cosine ~0.998, one #1 item for everyone, planted share = chance (0.25)
        assert row["cross_user_cos"] < 0.75, (scenario, row)
        assert row["top1_share"] < 0.5, (scenario, row)
        assert row["planted_share"] > 2.5 * row["planted_chance"], (scenario, row)
