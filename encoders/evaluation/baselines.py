"""Non-neural rankers for the evaluation: popularity, last item, mean-pool, co-occurrence kNN, and
on generated data the generator's own probabilities (the Bayes ceiling)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import sparse

from encoders.dataset import EventDataset, UserHistory
from encoders.items import interaction_matrix

__all__ = ["CooccurrenceKnn", "KnownProbabilities", "MeanPool", "Popularity"]

#: ``(user_id, ts_ms, scenario name) -> {item id: probability}``
ItemProbabilities = Callable[[str, int, str], Mapping[str, float]]


def _context_rows(contexts: Sequence[UserHistory], dataset: EventDataset) -> list[np.ndarray]:
    return [dataset.item_rows(h) for h in contexts]


class Popularity:
    """Scores every item by its count in the training events."""

    def __init__(self, train: Sequence[UserHistory], dataset: EventDataset) -> None:
        m = interaction_matrix(train, dataset.index, dataset.n_items)
        self.counts = np.asarray(m.sum(axis=0)).ravel().astype(np.float32)

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        return np.tile(self.counts[columns], (len(contexts), 1))


class CooccurrenceKnn:
    """Item-to-item kNN: cosine over users, summed over the context with recency weights
    (``last_only`` keeps only the most recent context item: the "last item" baseline)."""

    def __init__(
        self, train: Sequence[UserHistory], dataset: EventDataset, decay: float = 0.8, last_only: bool = False
    ) -> None:
        m = interaction_matrix(train, dataset.index, dataset.n_items).tocsc()
        norms = np.sqrt(np.asarray(m.sum(axis=0)).ravel())
        self.norm = (m @ sparse.diags(1.0 / np.maximum(norms, 1e-9))).tocsr().astype(np.float32)
        self.norm_t = self.norm.T.tocsr()
        self.pop = Popularity(train, dataset).counts
        self.dataset, self.decay, self.last_only = dataset, decay, last_only

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        rows, cols, vals = [], [], []
        for r, item_rows in enumerate(_context_rows(contexts, self.dataset)):
            known = item_rows[item_rows > 1]
            if self.last_only:
                known = known[-1:]
            weights = self.decay ** np.arange(len(known))[::-1]
            rows.extend([r] * len(known))
            cols.extend(known.tolist())
            vals.extend(weights.tolist())
        w = sparse.csr_matrix((vals, (rows, cols)), shape=(len(contexts), self.dataset.n_items), dtype=np.float32)
        sim = (w @ self.norm_t) @ self.norm[:, columns]
        dense = np.asarray(sim.todense(), dtype=np.float32)
        return dense + 1e-6 * self.pop[columns] / max(self.pop.max(), 1.0)


class MeanPool:
    """Cosine between candidates and the mean of the last ``n`` context items' vectors."""

    def __init__(self, vectors: np.ndarray, dataset: EventDataset, n: int = 5) -> None:
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        self.vectors = vectors / np.maximum(norms, 1e-9)
        self.dataset, self.n = dataset, n

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        pooled = np.zeros((len(contexts), self.vectors.shape[1]), np.float32)
        for r, item_rows in enumerate(_context_rows(contexts, self.dataset)):
            known = item_rows[item_rows > 1][-self.n :]
            if len(known):
                pooled[r] = self.vectors[known].mean(axis=0)
        return pooled @ self.vectors[columns].T


class KnownProbabilities:
    """Ranks by the true probability of each item as the user's next event in the scenario,
    known for generated data (``encoders.data.synthetic.item_probabilities``): no ranking scores
    a higher expected NDCG, so it is the ceiling the other methods are read against. The time is
    the context's last event's (the target's own is not shown to any scorer)."""

    def __init__(self, probabilities: ItemProbabilities, dataset: EventDataset,
                 scenario_names: Sequence[str]) -> None:
        self.probabilities, self.dataset, self.scenario_names = probabilities, dataset, tuple(scenario_names)

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        column_of = {int(row): j for j, row in enumerate(columns)}
        out = np.zeros((len(contexts), len(columns)), np.float32)
        for r, history in enumerate(contexts):
            ts = int(history.ts_ms[-1]) if len(history) else 0
            for item, p in self.probabilities(history.user_id, ts, self.scenario_names[scenario]).items():
                j = column_of.get(self.dataset.index.get(item, -1))
                if j is not None:
                    out[r, j] = p
        return out
