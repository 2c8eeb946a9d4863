"""Leave-last-out ranking evaluation: full catalogue and 999 sampled negatives, per scenario."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from encoders.dataset import EventDataset, UserHistory
from encoders.features import MixingPolicyProtocol, TextFn, build_inputs
from encoders.model import InterestModel

__all__ = [
    "METRICS",
    "EvalCases",
    "ModelScorer",
    "ScorerProtocol",
    "candidate_scores",
    "evaluate_scorer",
    "format_table",
    "metrics_from_ranks",
    "sampled_ranks",
]

METRICS = ("HR@10", "HR@50", "HR@100", "NDCG@10", "NDCG@100", "MRR")


class ScorerProtocol(Protocol):
    """Anything that scores candidate vocabulary rows for users' contexts."""

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        """``[len(contexts), len(columns)]``, higher is better."""
        ...


@runtime_checkable
class CandidateScorerProtocol(ScorerProtocol, Protocol):
    """A scorer that can also score each context's own candidates alone (cheaper than the
    whole catalogue when only the sampled ranks are wanted)."""

    def candidate_scores(self, contexts: Sequence[UserHistory], candidates: np.ndarray, columns: np.ndarray,
                         scenario: int = 0) -> np.ndarray:
        """``[len(contexts), M]``: row r scores the columns ``candidates[r]`` (indices into ``columns``)."""
        ...


@dataclass(frozen=True)
class EvalCases:
    """Per user: the history and the position of its target event in one scenario."""

    histories: list[UserHistory]
    targets: np.ndarray  # position of the target event in each history
    target_rows: np.ndarray  # vocabulary row of each target item
    scenario: int
    columns: np.ndarray  # vocabulary rows of the scenario's whole catalogue

    def contexts(self) -> list[UserHistory]:
        """Everything before each target (all scenarios)."""
        return [h.prefix(int(t)) for h, t in zip(self.histories, self.targets, strict=True)]

    def touched_before(self) -> np.ndarray:
        """Per user: whether the target item is already in the context (in any scenario)."""
        return np.array([
            h.item_ids[int(t)] is not None and h.item_ids[int(t)] in h.item_ids[: int(t)]
            for h, t in zip(self.histories, self.targets, strict=True)
        ], bool)


class ModelScorer:
    """Scores items by the best-matching query of the target scenario: ``max_q <u_q, v_i>``.

    ``own_view`` True/False puts every scenario in the own/all view; None serves each in the
    view its model config names (as the exported graph does). ``item_vectors`` maps candidate
    rows to their vectors (default ``model.served_item_vectors``).
    """

    def __init__(self, model: InterestModel, dataset: EventDataset, policy: MixingPolicyProtocol | None,
                 input_scenarios: Sequence[int] | None = None, batch_size: int = 512,
                 text_fn: TextFn | None = None, own_view: bool | None = None,
                 item_vectors: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.model, self.dataset, self.policy = model.eval(), dataset, policy
        self.input_scenarios, self.batch_size, self.text_fn = input_scenarios, batch_size, text_fn
        self.own_view = own_view
        self.item_vectors = item_vectors or model.served_item_vectors
        self._vectors: dict[bytes, torch.Tensor] = {}

    @torch.no_grad()
    def interests(self, contexts: Sequence[UserHistory], chunk: int = 128) -> torch.Tensor:
        """``[N, S, Q, D]`` for the contexts (each mixed by the policy, as in serving)."""
        cfg = self.model.cfg
        if not contexts:
            device = next(self.model.parameters()).device
            return torch.zeros(0, len(cfg.scenarios), cfg.n_vectors, cfg.vector_dim, device=device)
        return self._batched(contexts, chunk, lambda inputs: (self.model(**inputs),))[0]

    @torch.no_grad()
    def repeat_slots(self, contexts: Sequence[UserHistory], chunk: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
        """``InterestModel.repeat_slots`` for the contexts: ``[N, S, R, D]`` and ``[N, S, R]``."""
        return self._batched(contexts, chunk, lambda inputs: self.model.repeat_slots(**inputs))

    def _batched(self, contexts: Sequence[UserHistory], chunk: int,
                 fn: Callable[[dict[str, torch.Tensor]], tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """``fn`` over the contexts' model inputs, in chunks of similar length (a batch is padded
        to its longest), its outputs back in the contexts' order."""
        device = next(self.model.parameters()).device
        seqs = [h.context(len(h), self.policy, self.input_scenarios) for h in contexts]
        order = np.argsort([len(s) for s in seqs], kind="stable")
        parts = []
        for start in range(0, len(order), chunk):
            part = [seqs[i] for i in order[start : start + chunk]]
            inputs = {k: torch.from_numpy(v).to(device)
                      for k, v in build_inputs(part, self.dataset.index, self.model.cfg, self.text_fn).items()}
            if self.own_view is not None:
                inputs["own_view"] = torch.full((len(part),), float(self.own_view), device=device)
            parts.append(fn(inputs))
        back = torch.from_numpy(order).to(device)
        outputs = []
        for pieces in zip(*parts, strict=True):
            done = torch.cat(pieces)
            out = torch.empty_like(done)
            out[back] = done
            outputs.append(out)
        return tuple(outputs)

    @torch.no_grad()
    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        u = self.interests(contexts)[:, scenario]  # [N, Q, D]
        return torch.einsum("nqd,cd->nqc", u, self.column_vectors(columns)).amax(dim=1).cpu().numpy()

    @torch.no_grad()
    def candidate_scores(self, contexts: Sequence[UserHistory], candidates: np.ndarray, columns: np.ndarray,
                         scenario: int = 0) -> np.ndarray:
        return candidate_dot(self.interests(contexts)[:, scenario], self.column_vectors(columns), candidates)

    @torch.no_grad()
    def column_vectors(self, columns: np.ndarray) -> torch.Tensor:
        """``[C, D]``: the columns' item vectors (kept per set of columns: one per scenario)."""
        key = columns.tobytes()
        if key not in self._vectors:
            device = next(self.model.parameters()).device
            self._vectors[key] = self.item_vectors(torch.from_numpy(columns).to(device))
        return self._vectors[key]


def candidate_dot(users: torch.Tensor, items: torch.Tensor, candidates: np.ndarray) -> np.ndarray:
    """``max_v <users[n, v], items[candidates[n, m]]>`` as ``[N, M]`` (users ``[N, V, D]``)."""
    picked = items[torch.from_numpy(candidates).to(items.device)]  # [N, M, D]
    return torch.einsum("nvd,nmd->nvm", users, picked).amax(dim=1).cpu().numpy()


def metrics_from_ranks(ranks: np.ndarray) -> dict[str, float]:
    """HR@k, NDCG@k (single relevant item) and MRR from 0-based ranks."""
    ranks = np.asarray(ranks, np.float64)
    if not len(ranks):
        return {m: float("nan") for m in METRICS}
    out = {f"HR@{k}": float((ranks < k).mean()) for k in (10, 50, 100)}
    for k in (10, 100):
        out[f"NDCG@{k}"] = float(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["MRR"] = float((1.0 / (ranks + 1.0)).mean())
    return {m: out[m] for m in METRICS}


def _rank(scores: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """0-based rank of the target column per row; ties broken uniformly at random."""
    t = scores[np.arange(len(scores)), target][:, None]
    greater = (scores > t).sum(1)
    ties = (scores == t).sum(1) - 1
    return greater + np.floor(rng.random(len(scores)) * (ties + 1)).astype(np.int64)


def evaluate_scorer(scorer: ScorerProtocol, cases: EvalCases, n_negatives: int = 999, seed: int = 0,
                    batch_size: int = 512) -> dict[str, np.ndarray]:
    """Ranks of every case's target: ``{"full": ..., "sampled": ...}``.

    Full: against the scenario's whole catalogue. Sampled: against ``n_negatives`` items drawn
    uniformly without replacement from the catalogue minus the target, the same draw for every
    scorer (seeded by ``seed`` and the scenario). Ties are broken at random.
    """
    target_cols, negatives = _sampled_candidates(cases, n_negatives, seed)
    contexts = cases.contexts()
    tie_rng = np.random.default_rng([seed, cases.scenario, 1])
    full, sampled = [], []
    for start in range(0, len(contexts), batch_size):
        sl = slice(start, start + batch_size)
        s = scorer.scores(contexts[sl], cases.columns, cases.scenario)
        full.append(_rank(s, target_cols[sl], tie_rng))
        cand = np.concatenate([target_cols[sl, None], negatives[sl]], axis=1)
        sampled.append(_rank(np.take_along_axis(s, cand, 1), np.zeros(len(cand), np.int64), tie_rng))
    return {"full": np.concatenate(full), "sampled": np.concatenate(sampled)}


def candidate_scores(scorer: ScorerProtocol, contexts: Sequence[UserHistory], candidates: np.ndarray,
                     columns: np.ndarray, scenario: int = 0) -> np.ndarray:
    """Row r scores the columns ``candidates[r]``: by the scorer's own ``candidate_scores`` where it
    has one (``CandidateScorerProtocol``), else picked from its scores of every column."""
    if isinstance(scorer, CandidateScorerProtocol):
        return scorer.candidate_scores(contexts, candidates, columns, scenario)
    return np.take_along_axis(np.asarray(scorer.scores(contexts, columns, scenario)), candidates, 1)


def sampled_ranks(scorer: ScorerProtocol, cases: EvalCases, n_negatives: int = 999, seed: int = 0,
                  batch_size: int = 512) -> np.ndarray:
    """``evaluate_scorer(...)["sampled"]`` (the same draws and tie-breaks) from the sampled
    candidates' scores alone: what choosing on validation users needs, at a fraction of the cost
    for a scorer that scores candidates alone (``candidate_scores``)."""
    target_cols, negatives = _sampled_candidates(cases, n_negatives, seed)
    candidates = np.concatenate([target_cols[:, None], negatives], axis=1)
    contexts = cases.contexts()
    tie_rng = np.random.default_rng([seed, cases.scenario, 1])
    out = []
    for start in range(0, len(contexts), batch_size):
        sl = slice(start, start + batch_size)
        tie_rng.random(len(candidates[sl]))  # the full ranks' tie-breaks in evaluate_scorer
        s = candidate_scores(scorer, contexts[sl], candidates[sl], cases.columns, cases.scenario)
        out.append(_rank(s, np.zeros(len(s), np.int64), tie_rng))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _sampled_candidates(cases: EvalCases, n_negatives: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each case's target column and its ``n_negatives`` columns drawn uniformly without
    replacement from the rest (seeded by ``seed`` and the scenario)."""
    col_of = {int(c): j for j, c in enumerate(cases.columns)}
    target_cols = np.array([col_of[int(r)] for r in cases.target_rows], np.int64)
    neg_rng = np.random.default_rng([seed, cases.scenario])
    n_cols = len(cases.columns)
    negatives = np.stack([neg_rng.choice(n_cols - 1, n_negatives, replace=False) for _ in target_cols]) \
        if len(target_cols) else np.zeros((0, n_negatives), np.int64)
    negatives += negatives >= target_cols[:, None]
    return target_cols, negatives


def format_table(results: dict[str, dict[str, dict[str, float]]], columns: Sequence[str] = METRICS) -> str:
    """Markdown table: one row per (method, slice key), one column per metric."""
    keys = list(dict.fromkeys(k for per_key in results.values() for k in per_key))
    header = "| method | " + " | ".join(f"{k} {m}" for k in keys for m in columns) + " |"
    lines = [header, "|" + "---|" * (1 + len(keys) * len(columns))]
    for method, per_key in results.items():
        cells = [f"{per_key[k][m]:.4f}" if k in per_key else "–" for k in keys for m in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
