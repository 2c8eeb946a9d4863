"""Ranking metrics and the sampled-negatives protocol."""

from __future__ import annotations

import numpy as np
import torch

from encoders.config import ModelConfig
from encoders.dataset import EventDataset, UserHistory
from encoders.evaluation.baselines import KnownProbabilities
from encoders.evaluation.ranking import EvalCases, ModelScorer, evaluate_scorer, metrics_from_ranks
from encoders.model import InterestModel


def test_metrics_for_known_ranks() -> None:
    m = metrics_from_ranks(np.array([0, 9, 99, 500]))
    assert m["HR@10"] == 0.5 and m["HR@100"] == 0.75
    assert np.isclose(m["NDCG@10"], (1 + 1 / np.log2(11)) / 4)
    assert np.isclose(m["MRR"], (1 + 1 / 10 + 1 / 100 + 1 / 501) / 4)


class Oracle:
    def __init__(self, target_rows: np.ndarray) -> None:
        self.target_rows = target_rows
        self.seen = 0

    def scores(self, contexts: list, columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        rows = self.target_rows[self.seen : self.seen + len(contexts)]
        self.seen += len(contexts)
        return (columns[None, :] == rows[:, None]).astype(np.float32)


def test_oracle_ranks_first_and_constant_scorer_ranks_at_random() -> None:
    hist = [UserHistory.from_events("u", [(1, "a", None, 0, 1), (2, "b", None, 0, 1)]) for _ in range(400)]
    columns = np.arange(2, 2002)
    rows = np.full(400, 7)
    cases = EvalCases(hist, np.full(400, 1), rows, 0, columns)
    ranks = evaluate_scorer(Oracle(rows), cases, batch_size=64)
    assert (ranks["full"] == 0).all() and (ranks["sampled"] == 0).all()

    class Constant:
        def scores(self, contexts: list, columns: np.ndarray, scenario: int = 0) -> np.ndarray:
            return np.zeros((len(contexts), len(columns)), np.float32)

    flat = evaluate_scorer(Constant(), cases)
    assert flat["sampled"].max() <= 999 and 400 < flat["sampled"].mean() < 600


def test_model_vectors_do_not_depend_on_how_contexts_are_chunked(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    torch.manual_seed(0)
    scorer = ModelScorer(InterestModel(tiny_config.with_(n_items=tiny_dataset.n_items)), tiny_dataset, policy)
    contexts = [h.prefix(n) for h in tiny_dataset.histories for n in (0, 1, len(h) // 2, len(h))]
    one_batch = scorer.interests(contexts, chunk=len(contexts))
    by_length = scorer.interests(contexts, chunk=3)
    assert torch.allclose(one_batch, by_length, atol=1e-5)
    assert scorer.interests([]).shape == (0, *one_batch.shape[1:])


def test_sampled_ranks_from_the_candidates_alone_equal_the_full_scoring() -> None:
    """What choosing on validation users uses: the same draws, masks and tie-breaks as
    ``evaluate_scorer``'s sampled ranks (the grid and a seen-masked model, batches of 64),
    ties included (rounded scores), and for scorers that score only whole catalogues (kNN,
    with its many zero-score ties, bare and seen-masked)."""
    from encoders.data.synthetic import synthetic_dataset
    from encoders.evaluation.baselines import CooccurrenceKnn
    from encoders.evaluation.ranking import sampled_ranks
    from encoders.evaluation.run import RecentGridScorer, SeenMasked
    from state.mixing import MixingPolicy

    data = synthetic_dataset(40, seed=2, mean_events=12)
    torch.manual_seed(0)
    model = InterestModel(ModelConfig(d_model=16, dim=16, n_layers=1, n_heads=2, n_items=data.n_items)).eval()
    dataset = EventDataset(histories=data.histories, items=data.items)
    histories = [h for h in data.histories if len(h) > 3] * 3
    cases = EvalCases(histories, np.array([len(h) - 1 for h in histories]),
                      np.array([dataset.index[h.item_ids[-1]] if h.item_ids[-1] else 2 for h in histories]),
                      0, np.arange(2, data.n_items))

    class Rounded(ModelScorer):  # coarse scores: many ties
        def scores(self, contexts, columns, scenario=0):  # noqa: ANN001, ANN201
            return np.round(super().scores(contexts, columns, scenario), 1)

        def candidate_scores(self, contexts, candidates, columns, scenario=0):  # noqa: ANN001, ANN201
            return np.round(super().candidate_scores(contexts, candidates, columns, scenario), 1)

    grid = RecentGridScorer(ModelScorer(model.with_recent_weights(((1.0, 1.0),) * 3), dataset, MixingPolicy()),
                            model.cfg.n_queries)
    grid.weights = {0: (0.8, 0.7, 0.1, 0.9)}
    for scorer in (SeenMasked(ModelScorer(model, dataset, MixingPolicy()), dataset), grid,
                   Rounded(model, dataset, MixingPolicy()), CooccurrenceKnn(histories, dataset),
                   SeenMasked(CooccurrenceKnn(histories, dataset), dataset)):
        full = evaluate_scorer(scorer, cases, n_negatives=50, seed=3, batch_size=64)["sampled"]
        np.testing.assert_array_equal(sampled_ranks(scorer, cases, n_negatives=50, seed=3, batch_size=64), full)


def test_scored_metrics_are_split_by_targets_touched_before_and_new_ones() -> None:
    """The report says where a method wins: targets the user had touched before (a re-bought
    item) and new ones, each part with its share; a scenario with one kind only gets no split."""
    from types import SimpleNamespace

    from encoders.evaluation.run import NEW, TOUCHED, EvaluationConfig, _score

    def user(name: str, items: list[str]) -> UserHistory:
        return UserHistory.from_events(name, [(i * 1000, item, None, 0, 0) for i, item in enumerate(items)])

    histories = [user("u0", ["a", "b", "a"]), user("u1", ["c", "d"]), user("u2", ["b", "e"]), user("u3", ["e", "e"])]
    dataset = EventDataset(histories=histories, items=["a", "b", "c", "d", "e"])
    cases = EvalCases(histories, np.array([len(h) - 1 for h in histories]),
                      np.array([dataset.index[h.item_ids[-1]] for h in histories]), 0, np.arange(2, dataset.n_items))
    assert cases.touched_before().tolist() == [True, False, False, True]
    results: dict = {}
    cfg, split = EvaluationConfig(train=None, n_negatives=4), SimpleNamespace(scenario_names=("feed",))
    _score("oracle", Oracle(cases.target_rows), [cases], split, cfg, results)  # type: ignore[arg-type]
    assert results["oracle"][f"feed {TOUCHED}"]["share"] == 0.5
    assert results["oracle"][f"feed {NEW}"]["NDCG@10"] == 1.0
    only_new = EvalCases(histories[1:3], cases.targets[1:3], cases.target_rows[1:3], 0, cases.columns)
    results = {}
    _score("oracle", Oracle(only_new.target_rows), [only_new], split, cfg, results)  # type: ignore[arg-type]
    assert set(results["oracle"]) == {"feed sampled", "feed full"}


def test_known_probabilities_score_each_user_at_their_contexts_last_event() -> None:
    dataset = EventDataset(histories=[], items=["a", "b", "c"])

    def probabilities(user: str, ts_ms: int, scenario: str) -> dict[str, float]:
        return {"c": 0.75, "a": 0.25, "unseen": 0.5} if (user, ts_ms, scenario) == ("u1", 5, "ads") else {"b": 1.0}

    scorer = KnownProbabilities(probabilities, dataset, ("feed", "search", "ads"))
    contexts = [UserHistory.from_events("u1", [(1, "a", None, 0, 1), (5, "b", None, 0, 1)]),
                UserHistory.from_events("u1", [(4, "a", None, 0, 1)])]
    columns = np.array([dataset.index[i] for i in ("a", "b", "c")])
    assert scorer.scores(contexts, columns, scenario=2).tolist() == [[0.25, 0.0, 0.75], [0.0, 1.0, 0.0]]
    assert scorer.scores(contexts[:1], columns, scenario=0).tolist() == [[0.0, 1.0, 0.0]]
