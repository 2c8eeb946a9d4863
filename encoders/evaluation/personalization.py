"""Collapse diagnostics for interest vectors (numpy only): do users' vectors carry the user?

A collapsed model gives every user (nearly) the same vectors, so every user gets the same
top-k, usually the most popular items. :func:`personalization_report` measures that per
scenario, from the vectors alone (no held-out targets needed):

* ``cross_user_cos``: mean cosine between *different* users. Each user is summarised by the
  L2-normalised mean of its ``Q`` query vectors; the mean is over all distinct pairs of a
  random sample of at most ``max_users`` users. Near 1: collapse.
* ``intra_user_query_cos``: mean cosine between one user's ``Q`` query vectors (distinct pairs),
  averaged over users. Near 1: the queries are redundant.

Both cosines read the learned query vectors only (``n_learned``): a model's recent-item vectors
are items the user touched, not a summary of the user; and only their first ``n_dims``
coordinates: a popularity prior's coordinate is the same for every user.
* ``distinct_top_k``: number of distinct items over all users' top-``k`` lists.
* ``top1_share``: share of users whose #1 item is the most common #1 item.
* ``planted_share`` (when ``planted`` is given): share of the users' top-``k`` items that lie in
  the user's planted (ground-truth) item set, and ``planted_chance``, the same for a uniformly
  random top-``k`` over the candidates.

Ranking is ``max_q <u_q, v_item>`` over the scenario's candidates, as in serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = ["cross_user_cosine", "personalization_report", "topk_lists"]

Columns = np.ndarray | Sequence[np.ndarray] | Mapping[int, np.ndarray]


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _mean_offdiag(sims: np.ndarray) -> float:
    """Mean of the off-diagonal entries of the last two axes (square)."""
    n = sims.shape[-1]
    if n < 2:
        return float("nan")
    total = sims.sum(axis=(-2, -1)) - np.trace(sims, axis1=-2, axis2=-1)
    return float(np.mean(total / (n * (n - 1))))


def cross_user_cosine(vectors: np.ndarray, max_users: int = 2000, seed: int = 0) -> float:
    """Mean cosine between different users of ``[N, Q, D]`` vectors, each user summarised by the
    L2-normalised mean of its queries (a random sample of at most ``max_users`` users)."""
    vectors = np.asarray(vectors, np.float64)
    sample = np.sort(np.random.default_rng(seed).choice(len(vectors), min(len(vectors), max_users), replace=False))
    pooled = _normalise(vectors[sample].mean(axis=1))
    return _mean_offdiag(pooled @ pooled.T)


def topk_lists(user_vecs: np.ndarray, item_vecs: np.ndarray, columns: np.ndarray, k: int,
               batch_size: int = 1024) -> np.ndarray:
    """``[N, k]`` item columns (indices into ``item_vecs``), best first; ``user_vecs`` is
    ``[N, Q, D]`` and an item's score is its best query's dot product."""
    cand_t = np.ascontiguousarray(item_vecs[columns].T)  # [D, C]: one matrix product per query
    k = min(k, len(columns))
    out = np.empty((len(user_vecs), k), np.int64)
    for start in range(0, len(user_vecs), batch_size):
        batch = user_vecs[start:start + batch_size]
        s = batch[:, 0] @ cand_t
        for q in range(1, batch.shape[1]):
            np.maximum(s, batch[:, q] @ cand_t, out=s)
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1, kind="stable")
        out[start:start + batch_size] = columns[np.take_along_axis(part, order, 1)]
    return out


def _scenario_columns(candidate_columns: Columns, s: int) -> np.ndarray:
    if isinstance(candidate_columns, np.ndarray):
        return candidate_columns
    return np.asarray(candidate_columns[s], np.int64)


def personalization_report(
    user_vecs: np.ndarray,
    item_vecs: np.ndarray,
    candidate_columns: Columns,
    k: int = 10,
    planted: Sequence[set[int] | frozenset[int]] | None = None,
    max_users: int = 2000,
    seed: int = 0,
    scenarios: Sequence[int] | None = None,
    n_learned: int | None = None,
    n_dims: int | None = None,
) -> dict[int, dict[str, float]]:
    """Per scenario index: the collapse diagnostics described in the module docstring.

    ``user_vecs``: ``[N, S, Q, D]`` interest vectors; ``item_vecs``: ``[C, D]`` item vectors;
    ``candidate_columns``: one array of columns of ``item_vecs`` for every scenario, or one per
    scenario (sequence or mapping); ``planted``: per user, the set of columns it truly likes;
    ``n_learned``: the first ``n_learned`` of the ``Q`` vectors are the learned queries the
    cosines read (None: all), the rest (recent items) join only the ranking; likewise the first
    ``n_dims`` of the ``D`` coordinates (the popularity prior's, the same for every user, joins
    only the ranking).
    """
    user_vecs = np.asarray(user_vecs, np.float64)
    item_vecs = np.asarray(item_vecs, np.float64)
    n, n_scen, _, _ = user_vecs.shape
    n_q = n_learned or user_vecs.shape[2]
    out: dict[int, dict[str, float]] = {}
    for s in scenarios if scenarios is not None else range(n_scen):
        u = user_vecs[:, s, :n_q, :n_dims]  # [N, Q, D]
        q = _normalise(u)
        cols = _scenario_columns(candidate_columns, s)
        top = topk_lists(user_vecs[:, s], item_vecs, cols, k)
        firsts, counts = np.unique(top[:, 0], return_counts=True)
        row: dict[str, float] = {
            "cross_user_cos": cross_user_cosine(u, max_users, seed),
            "intra_user_query_cos": _mean_offdiag(np.einsum("nqd,npd->nqp", q, q)) if n_q > 1 else float("nan"),
            "distinct_top_k": float(len(np.unique(top))),
            "top1_share": float(counts.max() / n),
            "top1_item": float(firsts[counts.argmax()]),
        }
        if planted is not None:
            col_set = set(cols.tolist())
            hits = [len(set(t.tolist()) & p) / top.shape[1] for t, p in zip(top, planted, strict=True)]
            chance = [len(p & col_set) / len(cols) for p in planted]
            row["planted_share"] = float(np.mean(hits))
            row["planted_chance"] = float(np.mean(chance))
        out[int(s)] = row
    return out
