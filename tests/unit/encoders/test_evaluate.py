"""Ranking metrics and the sampled-negatives protocol."""

from __future__ import annotations

import numpy as np
import torch

from encoders.config import ModelConfig
from encoders.dataset import EventDataset, UserHistory
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
