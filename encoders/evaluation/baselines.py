"""Non-neural rankers for the evaluation: popularity, last item, mean-pool, co-occurrence kNN."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import sparse

from encoders.dataset import EventDataset, UserHistory
from encoders.items import interaction_matrix

__all__ = ["CooccurrenceKnn", "MeanPool", "Popularity"]


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
