"""The evaluation runner end to end on a small synthetic set: every method, every scenario, the report."""

from __future__ import annotations

from dataclasses import replace

import pytest

from encoders import presets
from encoders.config import DEFAULT_SCENARIOS
from encoders.data.synthetic import planted_items, synthetic_dataset
from encoders.evaluation.run import VIEWS_KEY, EvaluationConfig, run_evaluation
from state.mixing import MixingPolicy

pytestmark = pytest.mark.timeout(120)


def test_every_method_is_scored_on_every_scenario_with_a_personalization_report() -> None:
    histories = synthetic_dataset(80, seed=0, mean_events=20).histories
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, progress=False)
    cfg = EvaluationConfig(train=train, single_scenarios=("ads",))
    results = run_evaluation(histories, DEFAULT_SCENARIOS, cfg, MixingPolicy(), planted_items=planted_items)
    keys = {f"{s} {slice_}" for s in DEFAULT_SCENARIOS for slice_ in ("sampled", "full")}
    for method in ("popularity", "last item (co-occurrence)", "mean-pool of recent item vectors",
                   "co-occurrence kNN", "unistate"):
        assert set(results[method]) == keys, method
        assert all(0.0 <= m["NDCG@10"] <= 1.0 for m in results[method].values())
    assert set(results["single-scenario model"]) == {"ads sampled", "ads full"}
    views = results[VIEWS_KEY]  # each scenario's view, chosen on validation users
    assert set(views) == set(DEFAULT_SCENARIOS)
    for v in views.values():
        assert v["own view chosen"] == float(v["own view"] > v["all view"])
    report = results["personalization (unistate)"]
    assert set(report) == {f"{s} report" for s in DEFAULT_SCENARIOS}
    assert all(0.0 < r["planted_chance"] < r["planted_share"] <= 1.0 for r in report.values())
