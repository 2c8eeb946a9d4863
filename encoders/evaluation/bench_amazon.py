"""The Amazon Food-Kitchen benchmark: the model, its baselines and ablations in one run."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from encoders.config import TrainConfig
from encoders.dataset import EventDataset, UserHistory
from encoders.evaluation.baselines import CooccurrenceKnn, MeanPool, Popularity
from encoders.evaluation.datasets.amazon import AmazonSplit, load_amazon
from encoders.evaluation.ranking import (
    EvalCases,
    ModelScorer,
    ScorerProtocol,
    evaluate_scorer,
    metrics_from_ranks,
)
from encoders.features import MixingPolicyProtocol
from encoders.items import cooccurrence_table
from encoders.train import load_checkpoint, train

__all__ = ["BenchmarkConfig", "amazon_cases", "amazon_training_dataset", "run_amazon", "tuned_knn"]

logger = logging.getLogger(__name__)
DOMAINS = ("Food", "Kitchen")
KNN_DECAYS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)  # recency weights tried for kNN on the validation users
Results = dict[str, dict[str, dict[str, float]]]


@dataclass(frozen=True)
class BenchmarkConfig:
    """What to run: sizes are knobs so the in-suite test can use a tiny slice."""

    root: Path
    train: TrainConfig
    content_dim: int = 64
    selection_users: int = 2000  # random val users whose last events pick the best epoch (others: training)
    max_test_users: int | None = None
    test_sample_seed: int | None = None  # with max_test_users: a random sample, not the first ones
    few_events: int = 2  # slice: at most this many earlier events in the target domain
    ablations: bool = True
    seed: int = 0


def amazon_cases(
    split: AmazonSplit, dataset: EventDataset, which: str, limit: int | None = None, sample_seed: int | None = None
) -> list[EvalCases]:
    """One :class:`EvalCases` per domain: each user's last event there, in the given user set.

    ``limit`` keeps the first users of the file (which are more active than average), or, with
    ``sample_seed``, a uniform random sample of that many users.
    """
    users, targets = (split.test, split.test_targets) if which == "test" else (split.val, split.val_targets)
    if limit is not None and sample_seed is not None and limit < len(users):
        pick = np.sort(np.random.default_rng(sample_seed).choice(len(users), limit, replace=False))
        users, targets = [users[i] for i in pick], targets[pick]
    else:
        users, targets = users[:limit], targets[:limit]
    out = []
    for d, items in enumerate(split.domain_items):
        rows = np.array([dataset.index[h.item_ids[int(t)]] for h, t in zip(users, targets[:, d], strict=True)])
        columns = np.array([dataset.index[i] for i in items])
        out.append(EvalCases(users, targets[:, d], rows, d, columns))
    return out


def _score(name: str, scorer: ScorerProtocol, cases: list[EvalCases], cfg: BenchmarkConfig, results: Results) -> None:
    for c in cases:
        d = c.scenario
        ranks = evaluate_scorer(scorer, c, seed=cfg.seed)
        few = c.few_events_mask(cfg.few_events)
        results.setdefault(name, {})
        results[name][f"{DOMAINS[d]} sampled"] = metrics_from_ranks(ranks["sampled"])
        results[name][f"{DOMAINS[d]} full"] = metrics_from_ranks(ranks["full"])
        results[name][f"{DOMAINS[d]} few-events sampled"] = metrics_from_ranks(ranks["sampled"][few])
        r = results[name][f"{DOMAINS[d]} sampled"]
        logger.info(
            "method=%s domain=%s NDCG@10=%.4f HR@10=%.4f MRR=%.4f", name, DOMAINS[d], r["NDCG@10"], r["HR@10"], r["MRR"]
        )


def _selection_fn(
    dataset: EventDataset,
    val_cases: list[EvalCases],
    policy: MixingPolicyProtocol | None,
    input_scenarios: tuple[int, ...] | None,
    domains: tuple[int, ...],
    seed: int,
) -> Callable:
    def fn(model) -> float:
        scorer = ModelScorer(model, dataset, policy, input_scenarios)
        return float(
            np.mean(
                [
                    metrics_from_ranks(evaluate_scorer(scorer, val_cases[d], seed=seed)["sampled"])["NDCG@10"]
                    for d in domains
                ]
            )
        )

    return fn


def tuned_knn(
    train_h: list[UserHistory], dataset: EventDataset, val_cases: list[EvalCases], seed: int
) -> CooccurrenceKnn:
    """Co-occurrence kNN with the recency decay that scores best (mean NDCG@10) on validation users."""

    def val_score(decay: float) -> float:
        knn = CooccurrenceKnn(train_h, dataset, decay=decay)
        return float(
            np.mean([metrics_from_ranks(evaluate_scorer(knn, c, seed=seed)["sampled"])["NDCG@10"] for c in val_cases])
        )

    scores = {d: val_score(d) for d in KNN_DECAYS}
    best = max(scores, key=scores.__getitem__)
    logger.info("knn decay=%s chosen on validation (NDCG@10 %s)", best, {d: round(v, 4) for d, v in scores.items()})
    return CooccurrenceKnn(train_h, dataset, decay=best)


def _train_variant(
    cfg: BenchmarkConfig,
    dataset: EventDataset,
    val_cases: list[EvalCases],
    policy: MixingPolicyProtocol | None,
    train_cfg: TrainConfig,
    input_scenarios: tuple[int, ...] | None,
    domains: tuple[int, ...],
    work: Path,
) -> ModelScorer:
    eval_fn = _selection_fn(dataset, val_cases, policy, input_scenarios, domains, cfg.seed + 1)
    ckpt = train(train_cfg, dataset, policy, work, eval_fn=eval_fn)
    model, _, _ = load_checkpoint(ckpt)
    return ModelScorer(model, dataset, policy, input_scenarios)


def amazon_training_dataset(
    root: Path, content_dim: int, seed: int = 0, selection_users: int | None = 2000
) -> tuple[EventDataset, AmazonSplit]:
    """Training events (every event except the validation and test users' targets), the whole
    catalogue as vocabulary, and a co-occurrence content table from those training events only."""
    split = load_amazon(root, selection_users, seed)
    train_h = split.training_histories()
    items = split.domain_items[0] + split.domain_items[1]
    bare = EventDataset(histories=train_h, items=items)
    return EventDataset(
        histories=train_h, items=items, content=cooccurrence_table(train_h, bare, content_dim, seed)
    ), split


def run_amazon(
    cfg: BenchmarkConfig,
    policy: MixingPolicyProtocol,
    no_quota_policy: MixingPolicyProtocol,
    work_dir: Path | None = None,
    tight_policies: tuple[MixingPolicyProtocol, MixingPolicyProtocol] | None = None,
) -> Results:
    """Train on every event but the validation and test users' targets; evaluate on test users.

    ``tight_policies`` (quotas, no quotas) with a small slot budget add the ablation pair in
    which the budget binds (Amazon users have at most 15 events, so the default one never does).
    """
    dataset, split = amazon_training_dataset(
        cfg.root, cfg.train.model.content_dim or cfg.content_dim, cfg.seed, cfg.selection_users
    )
    train_h = dataset.histories
    test_cases = amazon_cases(split, dataset, "test", cfg.max_test_users, cfg.test_sample_seed)
    val_cases = amazon_cases(split, dataset, "val")
    logger.info(
        "train_users=%d train_events=%d test_users=%d",
        len(train_h),
        sum(map(len, train_h)),
        len(test_cases[0].histories),
    )
    results: Results = {}
    _score("popularity", Popularity(train_h, dataset), test_cases, cfg, results)
    _score("last item (co-occurrence)", CooccurrenceKnn(train_h, dataset, last_only=True), test_cases, cfg, results)
    _score("mean-pool of recent item vectors", MeanPool(dataset.content, dataset), test_cases, cfg, results)
    _score("co-occurrence kNN", tuned_knn(train_h, dataset, val_cases, cfg.seed + 1), test_cases, cfg, results)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        tc = cfg.train
        variants: list[
            tuple[str, MixingPolicyProtocol | None, TrainConfig, tuple[int, ...] | None, tuple[int, ...]]
        ] = [
            ("unistate (2-D mixing, Q=3, time gaps)", policy, tc, None, (0, 1)),
        ]
        for d, name in enumerate(DOMAINS):
            mask = tuple(s == d for s in range(len(tc.model.scenarios)))
            variants.append(
                (
                    f"single-scenario model ({name} only)",
                    policy,
                    replace(tc, scenario_mask=mask, input_scenarios=(d,)),
                    (d,),
                    (d,),
                )
            )
        if cfg.ablations:
            variants += [
                ("ablation: global recent window, no quotas", no_quota_policy, tc, None, (0, 1)),
                ("ablation: Q=1", policy, replace(tc, model=tc.model.with_(n_queries=1)), None, (0, 1)),
                (
                    "ablation: no time-gap tokens",
                    policy,
                    replace(tc, model=tc.model.with_(use_time_gap=False)),
                    None,
                    (0, 1),
                ),
            ]
            if tight_policies is not None:
                variants += [
                    ("ablation: 8-slot budget, 2-D quotas", tight_policies[0], tc, None, (0, 1)),
                    ("ablation: 8-slot budget, recent window", tight_policies[1], tc, None, (0, 1)),
                ]
        for k, (name, sel, tcfg, inputs, domains) in enumerate(variants):
            scorer = _train_variant(cfg, dataset, val_cases, sel, tcfg, inputs, domains, work / f"variant{k}")
            cases = [test_cases[d] for d in domains]
            _score(name, scorer, cases, cfg, results)
    return results
