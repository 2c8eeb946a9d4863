"""Item content tables: MiniLM title vectors and co-occurrence factors, aligned to the vocabulary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import sparse
from scipy.sparse.linalg import svds

from encoders.dataset import EventDataset, UserHistory
from encoders.features import FIRST_ITEM_ROW

__all__ = [
    "align_table", "cooccurrence_table", "interaction_matrix", "item_event_counts", "scenario_item_counts",
    "title_table",
]

logger = logging.getLogger(__name__)


def title_table(titles: Mapping[str, str], text_fn: Callable[[list[str]], np.ndarray]) -> dict[str, np.ndarray]:
    """MiniLM vectors of item titles."""
    ids = sorted(titles)
    return dict(zip(ids, text_fn([titles[i] for i in ids]), strict=True))


def align_table(dataset: EventDataset, table: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[n_items, C]`` content matrix in vocabulary row order (zeros for rows without a vector)."""
    width = len(next(iter(table.values())))
    out = np.zeros((dataset.n_items, width), np.float32)
    hits = 0
    for item, row in dataset.index.items():
        vec = table.get(item)
        if vec is not None:
            out[row] = vec
            hits += 1
    logger.info("item table aligned rows=%d with_vector=%d", dataset.n_items, hits)
    return out


def interaction_matrix(histories: Sequence[UserHistory], index: Mapping[str, int], n_items: int) -> sparse.csr_matrix:
    """Binary ``[users, n_items]`` matrix of which user touched which item."""
    rows, cols = [], []
    for u, h in enumerate(histories):
        for item in h.item_ids:
            row = index.get(item) if item is not None else None
            if row is not None:
                rows.append(u)
                cols.append(row)
    m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(histories), n_items))
    m.data[:] = 1.0
    return m


def item_event_counts(histories: Sequence[UserHistory], dataset: EventDataset) -> np.ndarray:
    """``[n_items]`` how many of the histories' events touch each vocabulary row (0 for the
    padding and unknown rows): the item side of the popularity prior."""
    n_scenarios = 1 + max((int(h.scenario_idx.max()) for h in histories if len(h)), default=0)
    return scenario_item_counts(histories, dataset, n_scenarios).sum(axis=0)


def scenario_item_counts(histories: Sequence[UserHistory], dataset: EventDataset, n_scenarios: int) -> np.ndarray:
    """``[n_scenarios, n_items]`` ``item_event_counts`` of each scenario's events."""
    counts = np.zeros((n_scenarios, dataset.n_items), np.float64)
    for h in histories:
        np.add.at(counts, (h.scenario_idx, dataset.item_rows(h)), 1.0)
    counts[:, :FIRST_ITEM_ROW] = 0.0
    return counts


def cooccurrence_table(
    histories: Sequence[UserHistory], dataset: EventDataset, dim: int, seed: int = 0
) -> np.ndarray:
    """``[n_items, dim]`` factors of the item-item cosine co-occurrence matrix (truncated SVD
    of the column-normalised user-item matrix), computed from the given histories only."""
    m = interaction_matrix(histories, dataset.index, dataset.n_items).tocsc()
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=0)).ravel())
    m = m @ sparse.diags(1.0 / np.maximum(norms, 1e-9))
    k = min(dim, min(m.shape) - 1)
    _, s, vt = svds(m.astype(np.float64), k=k, random_state=seed, v0=None)
    order = np.argsort(-s)
    factors = (vt[order].T * s[order]).astype(np.float32)
    if k < dim:
        factors = np.pad(factors, ((0, 0), (0, dim - k)))
    return factors
