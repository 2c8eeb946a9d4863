"""One evaluation for any dataset: baselines, the default recipe, its single-scenario variant and
the personalization report, all on the same split (``protocol.split_events``)."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from encoders.config import TrainConfig
from encoders.dataset import EventDataset, UserHistory
from encoders.evaluation.baselines import CooccurrenceKnn, ItemProbabilities, KnownProbabilities, MeanPool, Popularity
from encoders.evaluation.personalization import personalization_report
from encoders.evaluation.protocol import Split, split_events
from encoders.evaluation.ranking import (
    EvalCases,
    ModelScorer,
    ScorerProtocol,
    candidate_dot,
    candidate_scores,
    evaluate_scorer,
    metrics_from_ranks,
    sampled_ranks,
)
from encoders.evaluation.repeat_fit import fit_repeat_coef
from encoders.features import MixingPolicyProtocol, TextFn
from encoders.items import title_table
from encoders.model import InterestModel
from encoders.train import CHECKPOINT_NAME, load_checkpoint, train

__all__ = [
    "CEILING", "RECENT_KEY", "VIEWS_KEY", "EvaluationConfig", "RecentGridScorer", "Results", "SeenMasked",
    "repeat_share", "run_evaluation", "train_with_choices",
]

logger = logging.getLogger(__name__)
KNN_DECAYS = (0.5, 0.7, 0.8, 0.9, 1.0)  # recency weights tried for kNN on the validation users
#: Below this share of repeated (user, item) events, items already in the context are never the
#: target, so every scorer ranks them last (MovieLens: nobody rates a movie twice).
REPEAT_SHARE_TO_MASK = 0.01
Results = dict[str, dict[str, dict[str, float]]]  # method -> "<scenario> <slice>" -> metric -> value
VIEWS_KEY = "views (validation NDCG@10)"  # results entry: each scenario's view scores and choice
RECENT_KEY = "recent items (validation NDCG@10)"  # results entry: each scenario's recent-item weights
#: results entry on generated data: the generator's own probabilities ranked (the Bayes ceiling)
CEILING = "ceiling: the generator's probabilities"
#: per method, a scenario's sampled metrics over the test users whose target item they had
#: touched before, and over those whose target is new to them (with each part's "share")
TOUCHED, NEW = "sampled, touched before", "sampled, new item"
#: (alpha, beta) tried for each scenario's recent items on the validation users; (0, 1): none
RECENT_GRID = ((0.0, 1.0),) + tuple((a, b) for a in (0.4, 0.6, 0.8, 1.0) for b in (0.7, 0.85, 0.95))
#: (gamma, delta) tried for each scenario's recent pool, after its recent items; (0, 1): none
POOL_GRID = ((0.0, 1.0),) + tuple((g, d) for g in (0.02, 0.05, 0.1, 0.2, 0.4) for d in (0.5, 0.7, 0.9))
#: recent items, a pool or a prior is kept only if its paired gain over none on the validation
#: users exceeds this many standard errors (the one-standard-error rule): synthetic data's 30
#: validation users chose pools on gains of 0.3-1.2 standard errors that lost on its test users,
#: and MovieLens' 94 took recent items or a pool by turns on gains within one standard error
CHOICE_Z = 1.0
#: each scenario's popularity prior tried on the validation users after its pool; 0: none
PRIOR_GRID = (0.0, 0.01, 0.02, 0.04, 0.08, 0.16)
#: (a, b) tried for each scenario's repeat items (weights ``a + b * g``) after its prior; (0, 0): none
REPEAT_GRID = ((0.0, 0.0),) + tuple((a, b) for a in (0.25, 0.5, 0.75, 1.0, 1.25) for b in (0.05, 0.1, 0.2, 0.4))


@dataclass(frozen=True)
class EvaluationConfig:
    """What to run; the model is ``train`` (the default recipe) for every dataset."""

    train: TrainConfig
    n_negatives: int = 999
    max_test_users: int | None = None
    #: also train one model per listed target scenario on that scenario alone (None: every one)
    single_scenarios: tuple[str, ...] | None = None
    seed: int = 0


class SeenMasked:
    """A scorer whose candidates already in the user's context score ``-inf``."""

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

    def candidate_scores(self, contexts: Sequence[UserHistory], candidates: np.ndarray, columns: np.ndarray,
                         scenario: int = 0) -> np.ndarray:
        """The wrapped scorer's ``ranking.candidate_scores``, masked alike."""
        s = np.asarray(candidate_scores(self.scorer, contexts, candidates, columns, scenario), np.float64)
        for r, h in enumerate(contexts):
            s[r, np.isin(columns[candidates[r]], self.dataset.item_rows(h))] = -np.inf
        return s


def repeat_share(histories: Sequence[UserHistory]) -> float:
    """Share of events whose item the same user already touched earlier."""
    repeats = total = 0
    for h in histories:
        items = [i for i in h.item_ids if i is not None]
        total += len(items)
        repeats += len(items) - len(set(items))
    return repeats / max(total, 1)


def _seen_masking(split: Split) -> Callable[[ScorerProtocol], ScorerProtocol]:
    """``SeenMasked`` around every scorer where the training events (almost) never repeat an item."""
    mask = repeat_share(split.training) < REPEAT_SHARE_TO_MASK
    logger.info("repeat_share=%.4f mask_seen=%s", repeat_share(split.training), mask)

    def wrap(scorer: ScorerProtocol) -> ScorerProtocol:
        return SeenMasked(scorer, split.dataset) if mask else scorer

    return wrap


def _score(name: str, scorer: ScorerProtocol, cases: Sequence[EvalCases], split: Split, cfg: EvaluationConfig,
           results: Results) -> None:
    for c in cases:
        n_neg = min(cfg.n_negatives, len(c.columns) - 1)
        ranks = evaluate_scorer(scorer, c, n_negatives=n_neg, seed=cfg.seed)
        label = split.scenario_names[c.scenario]
        results.setdefault(name, {})[f"{label} sampled"] = metrics_from_ranks(ranks["sampled"])
        results[name][f"{label} full"] = metrics_from_ranks(ranks["full"])
        touched = c.touched_before()
        if touched.any() and not touched.all():  # where the model wins: coming back, or new items
            for part, users in ((TOUCHED, touched), (NEW, ~touched)):
                results[name][f"{label} {part}"] = {**metrics_from_ranks(ranks["sampled"][users]),
                                                    "share": float(users.mean())}
        r = results[name][f"{label} sampled"]
        logger.info("method=%s scenario=%s NDCG@10=%.4f HR@10=%.4f", name, label, r["NDCG@10"], r["HR@10"])


def _val_ndcg(scorer: ScorerProtocol, cases: Sequence[EvalCases], cfg: EvaluationConfig) -> list[float]:
    return [float(per_user.mean()) for per_user in _val_ndcg_per_user(scorer, cases, cfg)]


def _val_ndcg_per_user(scorer: ScorerProtocol, cases: Sequence[EvalCases], cfg: EvaluationConfig) -> list[np.ndarray]:
    """Per case set, each validation user's NDCG@10 against the sampled negatives."""
    out = []
    for c in cases:
        n_neg = min(cfg.n_negatives, len(c.columns) - 1)
        ranks = sampled_ranks(scorer, c, n_neg, seed=cfg.seed + 1)
        out.append(np.where(ranks < 10, 1.0 / np.log2(ranks + 2.0), 0.0))
    return out


def _clear_gain(per_option: Sequence[np.ndarray], z: float) -> int:
    """The option (index) with the best mean of ``per_option`` (each validation user's NDCG@10
    under it; 0: none), if its paired gain over option 0 exceeds ``z`` standard errors, else 0:
    with a few dozen validation users the best of a grid is often noise."""
    best = int(np.argmax([x.mean() for x in per_option]))
    gain = per_option[best] - per_option[0]
    if best == 0 or z <= 0:
        return best
    if len(gain) < 2:
        return 0
    se = gain.std(ddof=1) / np.sqrt(len(gain))
    logger.info("best grid point %d: validation gain %.4f, standard error %.4f (%d users)", best, gain.mean(), se,
                len(gain))
    return best if gain.mean() > z * se else 0


def _mean_val_ndcg(scorer: ScorerProtocol, cases: Sequence[EvalCases], cfg: EvaluationConfig) -> float:
    return float(np.mean(_val_ndcg(scorer, cases, cfg)))


def _tuned_knn(split: Split, cfg: EvaluationConfig, wrap) -> ScorerProtocol:  # noqa: ANN001
    scores = {d: _mean_val_ndcg(wrap(CooccurrenceKnn(split.training, split.dataset, decay=d)), split.val, cfg)
              for d in KNN_DECAYS}
    best = max(scores, key=scores.__getitem__)
    logger.info("knn decay=%s chosen on validation (NDCG@10 %s)", best, {d: round(v, 4) for d, v in scores.items()})
    return wrap(CooccurrenceKnn(split.training, split.dataset, decay=best))


def _train_model(split: Split, cfg: EvaluationConfig, train_cfg: TrainConfig, policy: MixingPolicyProtocol | None,
                 scenarios: tuple[int, ...] | None, val: Sequence[EvalCases], wrap, work: Path,  # noqa: ANN001
                 text_fn: TextFn | None = None, results: Results | None = None,
                 mixing_policy: dict | None = None) -> InterestModel:
    """Train with the epoch chosen on ``val``, then choose each scenario's recent-item weights on
    ``val``; with ``results`` the choices go into it. With ``results`` and several scenarios in
    ``val`` each scenario's view is chosen too, before them: the own view where it scores higher
    on ``val``, each epoch scored by its scenarios' better views."""
    views = (False, True) if results is not None and len(val) > 1 else (False,)

    def per_view(model: InterestModel) -> np.ndarray:
        """``[views, scenarios]`` validation NDCG@10."""
        return np.array([_val_ndcg(wrap(ModelScorer(model, split.dataset, policy, scenarios, text_fn=text_fn,
                                                    own_view=own)), val, cfg) for own in views])

    def eval_fn(model: InterestModel) -> float:
        scores = per_view(model)
        for own, row in zip(views, scores, strict=True):
            logger.info("validation NDCG@10 per scenario (%s view) %s", "own" if own else "all", " ".join(
                f"{split.scenario_names[c.scenario]}={v:.4f}" for c, v in zip(val, row, strict=True)))
        return float(scores.max(axis=0).mean())

    model, _, _ = load_checkpoint(train(train_cfg, split.dataset, policy, work, text_fn=text_fn, eval_fn=eval_fn,
                                        mixing_policy=mixing_policy))
    if len(views) == 1:
        return _choose_served_weights(model, split, cfg, policy, scenarios, val, wrap, text_fn,
                                      {} if results is None else results)
    scores = per_view(model)
    own = tuple(model.cfg.scenarios[c.scenario] for c, a, o in zip(val, *scores, strict=True) if o > a)
    for c, a, o in zip(val, *scores, strict=True):
        results.setdefault(VIEWS_KEY, {})[split.scenario_names[c.scenario]] = {
            "all view": float(a), "own view": float(o), "own view chosen": float(o > a)}
    logger.info("own-view scenarios chosen on validation users: %s", list(own))
    return _choose_served_weights(model.with_own_views(own), split, cfg, policy, scenarios, val, wrap, text_fn,
                                  results)


def _choose_served_weights(model: InterestModel, split: Split, cfg: EvaluationConfig,
                           policy: MixingPolicyProtocol | None, scenarios: tuple[int, ...] | None,
                           val: Sequence[EvalCases], wrap, text_fn: TextFn | None,  # noqa: ANN001
                           results: Results) -> InterestModel:
    """Per scenario, the (alpha, beta) of ``RECENT_GRID`` whose recent items score best on
    ``val``, then with them the (gamma, delta) of ``POOL_GRID``, the popularity prior of
    ``PRIOR_GRID`` and the repeat items' (a, b) of ``REPEAT_GRID`` (their score fit first on the
    training histories), each kept only if its gain over none is clear (``CHOICE_Z``); the
    choices go into ``results``. Every choice scores the model with the prior it serves
    (``item_prior``: the one its training stands for), which the chosen prior adds to."""
    n_scen = len(model.cfg.scenarios)
    prior = model.cfg.item_counts  # a checkpoint from before the counts has no prior to choose
    base = model.cfg.item_prior or (0.0,) * n_scen
    unscaled = model.with_recent_weights(((1.0, 1.0),) * n_scen)
    if prior:
        unscaled = unscaled.with_item_prior((1.0,) * n_scen)
    coef = tuple(fit_repeat_coef(model, split.training, split.dataset, policy, s, cfg.seed, scenarios)
                 if any(c.scenario == s for c in val) else () for s in range(n_scen))
    repeat = model.with_repeat(coef, ()) if any(coef) else None
    grid = RecentGridScorer(ModelScorer(unscaled, split.dataset, policy, scenarios, text_fn=text_fn),
                            model.cfg.n_queries,
                            repeat and ModelScorer(repeat, split.dataset, policy, scenarios, text_fn=text_fn), base)

    def best(options: Sequence[tuple[float, ...]], fixed: dict[int, tuple[float, ...]],
             z: float) -> tuple[list[int], np.ndarray]:
        """Per val case the chosen option (the best on ``val``, kept only if its gain over the
        first is clear by ``z`` standard errors) with the ``fixed`` weights before it, and
        ``[options, val cases]`` mean NDCG@10."""
        per_user = []  # [options][val cases]: each user's NDCG@10
        for option in options:
            grid.weights = {c.scenario: (*fixed.get(c.scenario, ()), *option) for c in val}
            per_user.append(_val_ndcg_per_user(wrap(grid), val, cfg))
        picks = [_clear_gain([users[j] for users in per_user], z) for j in range(len(val))]
        return picks, np.array([[x.mean() for x in users] for users in per_user])

    picks, item_scores = best(RECENT_GRID, {}, z=CHOICE_Z)
    chosen = {c.scenario: RECENT_GRID[i] for c, i in zip(val, picks, strict=True)}
    pool_picks, pool_scores = best(POOL_GRID, chosen, z=CHOICE_Z)
    pools = {c.scenario: POOL_GRID[i] for c, i in zip(val, pool_picks, strict=True)}
    prior_picks, prior_scores = pool_picks, pool_scores  # no prior: "with prior" is "with pool"
    lams = {c.scenario: 0.0 for c in val}
    if prior:
        prior_picks, prior_scores = best(tuple((lam,) for lam in PRIOR_GRID),
                                         {s: (*chosen[s], *pools[s]) for s in chosen}, z=CHOICE_Z)
        lams = {c.scenario: PRIOR_GRID[i] for c, i in zip(val, prior_picks, strict=True)}
    repeats = {c.scenario: REPEAT_GRID[0] for c in val}
    with_repeat = [float(prior_scores[prior_picks[j], j]) for j in range(len(val))]  # none: "with prior"
    if repeat is not None:
        repeat_picks, repeat_scores = best(REPEAT_GRID, {s: (*chosen[s], *pools[s], lams[s]) for s in chosen},
                                           z=CHOICE_Z)
        for j, c in enumerate(val):
            if coef[c.scenario]:  # a scenario without a repeat score keeps none
                repeats[c.scenario] = REPEAT_GRID[repeat_picks[j]]
                with_repeat[j] = float(repeat_scores[repeat_picks[j], j])
    for j, c in enumerate(val):
        (alpha, beta), (gamma, delta), (a, b) = chosen[c.scenario], pools[c.scenario], repeats[c.scenario]
        results.setdefault(RECENT_KEY, {})[split.scenario_names[c.scenario]] = {
            "alpha": alpha, "beta": beta, "gamma": gamma, "delta": delta, "lam": lams[c.scenario], "a": a, "b": b,
            "without": float(item_scores[0, j]), "with": float(item_scores[picks[j], j]),
            "with pool": float(pool_scores[pool_picks[j], j]), "with prior": float(prior_scores[prior_picks[j], j]),
            "with repeat": with_repeat[j]}
    weights = tuple(chosen.get(s, RECENT_GRID[0]) for s in range(n_scen))
    pool = tuple(pools.get(s, POOL_GRID[0]) for s in range(n_scen))
    lam = tuple(b + lams.get(s, 0.0) for s, b in enumerate(base))
    ab = tuple(repeats.get(s, REPEAT_GRID[0]) for s in range(n_scen))
    logger.info("recent-item weights, pool, popularity prior and repeat items chosen on validation users: %s %s %s %s",
                weights, pool, lam, ab)
    served = model.with_recent_weights(weights if any(a > 0 for a, _ in weights) else (),
                                       pool if any(g > 0 for g, _ in pool) else ())
    if any(a > 0 or b > 0 for a, b in ab):
        served = served.with_repeat(coef, ab)
    return served.with_item_prior(lam) if any(lam) else served


_NO_WEIGHTS = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0)  # (alpha, beta, gamma, delta, lam, a, b): none of them


class RecentGridScorer:
    """Scores as a model whose scenarios have the recent-item weights, pool and popularity prior
    ``weights`` (scenario → ``(alpha, beta, gamma, delta, lam, a, b)``, a prefix of it; missing: none)
    would, from one forward pass per context batch of the same model with weights (1, 1), no
    pool and (when the model has it) prior 1: the learned vectors do not depend on them, and each
    recent row is the item's vector, or (no item) a copy of learned row 0. The pool adds
    ``gamma * delta**k`` times the k-th found row to every learned vector; the appended rows are
    scaled by ``alpha * beta**k``, a missing one copying pooled row 0; every row's prior
    coordinate becomes ``base_prior[scenario] + lam`` (the prior the model serves, plus the
    chosen one); ``repeat`` (a model with repeat scores) gives the repeat items, appended scaled
    by ``a + b * g``. Each context batch's vectors are kept, so the grid costs one forward pass
    (two with ``repeat``)."""

    def __init__(self, unscaled: ModelScorer, n_queries: int, repeat: ModelScorer | None = None,
                 base_prior: Sequence[float] = ()) -> None:
        self.unscaled, self.n_queries, self.repeat = unscaled, n_queries, repeat
        self.base_prior = tuple(base_prior)
        self.prior = bool(unscaled.model.cfg.item_prior)
        self.weights: dict[int, tuple[float, ...]] = {}
        self._interests: dict[tuple, torch.Tensor] = {}
        self._slots: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def vectors(self, contexts: Sequence[UserHistory], scenario: int) -> torch.Tensor:
        """``[N, V, D]``: the scenario's vectors under ``weights`` (V = Q without recent items)."""
        key = (tuple((h.user_id, len(h)) for h in contexts), scenario)
        if key not in self._interests:
            self._interests[key] = self.unscaled.interests(contexts)[:, scenario]  # [N, Q+K, D]
        u = self._interests[key]
        if self.prior:
            u = u[..., :-1]
        learned, recent = u[:, : self.n_queries], u[:, self.n_queries :]
        given = self.weights.get(scenario, ())
        alpha, beta, gamma, delta, lam, a, b = (*given, *_NO_WEIGHTS[len(given):])
        found = (recent != learned[:, :1]).any(dim=-1, keepdim=True)  # a fallback row copies row 0
        k = torch.arange(recent.shape[1], dtype=u.dtype, device=u.device)
        if gamma > 0:
            learned = learned + (recent * found * (gamma * delta**k)[None, :, None]).sum(dim=1, keepdim=True)
        out = learned
        if alpha > 0:
            out = torch.cat([learned, torch.where(found, recent * (alpha * beta**k)[None, :, None], learned[:, :1])],
                            dim=1)
        if (a > 0 or b > 0) and self.repeat is not None:
            if key not in self._slots:
                slots, g = self.repeat.repeat_slots(contexts)
                self._slots[key] = slots[:, scenario], g[:, scenario]
            slots, g = self._slots[key]
            weight = torch.where(g > -1e3, a + b * g, torch.zeros_like(g))
            rows = torch.where((weight > 0)[..., None], slots * weight[..., None], learned[:, :1])
            out = torch.cat([out, rows], dim=1)
        if self.prior:
            lam += self.base_prior[scenario] if self.base_prior else 0.0
            out = torch.cat([out, torch.full((*out.shape[:2], 1), lam, dtype=u.dtype, device=u.device)], dim=-1)
        return out

    @torch.no_grad()
    def scores(self, contexts: Sequence[UserHistory], columns: np.ndarray, scenario: int = 0) -> np.ndarray:
        u = self.vectors(contexts, scenario)
        return torch.einsum("nqd,cd->nqc", u, self.unscaled.column_vectors(columns)).amax(dim=1).cpu().numpy()

    @torch.no_grad()
    def candidate_scores(self, contexts: Sequence[UserHistory], candidates: np.ndarray, columns: np.ndarray,
                         scenario: int = 0) -> np.ndarray:
        return candidate_dot(self.vectors(contexts, scenario), self.unscaled.column_vectors(columns), candidates)


def _personalization(model: InterestModel, split: Split, policy: MixingPolicyProtocol | None,
                     results: Results, planted_items: Callable[[str], set[str]] | None = None,
                     text_fn: TextFn | None = None) -> None:
    scorer = ModelScorer(model, split.dataset, policy, text_fn=text_fn)
    with torch.no_grad():
        items = model.served_item_vectors(torch.arange(split.dataset.n_items)).numpy()
    for c in split.test:
        planted = None
        if planted_items is not None:
            planted = [{split.dataset.index[i] for i in planted_items(h.user_id) if i in split.dataset.index}
                       for h in c.histories]
        contexts = c.contexts()
        users = np.concatenate([scorer.interests(contexts[i:i + 512]).numpy() for i in range(0, len(contexts), 512)])
        row = personalization_report(users, items, c.columns, planted=planted, scenarios=[c.scenario],
                                     n_learned=model.cfg.n_queries, n_dims=model.cfg.dim)[c.scenario]
        results.setdefault("personalization (unistate)", {})[f"{split.scenario_names[c.scenario]} report"] = row


def _score_as_new_items(model: InterestModel, split: Split, cfg: EvaluationConfig, policy: MixingPolicyProtocol | None,
                        text_fn: TextFn | None, wrap: Callable[[ScorerProtocol], ScorerProtocol],
                        results: Results) -> None:
    """Every candidate as an item the model never saw: its vector from its title alone
    (``text_item_vectors``), against the mean-pool of the context's title vectors."""
    as_new = partial(model.served_item_vectors, from_text=True)
    _score("unistate, candidates as new items (title only)",
           wrap(ModelScorer(model, split.dataset, policy, text_fn=text_fn, item_vectors=as_new)),
           split.test, split, cfg, results)
    titles = split.dataset.content[:, -model.cfg.text_dim :]
    _score("mean-pool of recent title vectors", wrap(MeanPool(titles, split.dataset)), split.test, split, cfg, results)


def run_evaluation(histories: list[UserHistory], scenario_names: tuple[str, ...], cfg: EvaluationConfig,
                   policy: MixingPolicyProtocol | None, work_dir: Path | None = None,
                   planted_items: Callable[[str], set[str]] | None = None, text_fn: TextFn | None = None,
                   item_texts: Mapping[str, str] | None = None,
                   item_probabilities: ItemProbabilities | None = None) -> Results:
    """Baselines, the model (epochs chosen on validation users) and its single-scenario variant.

    ``planted_items`` (synthetic data): a user's ground-truth items, for the planted-interest share.
    ``item_probabilities`` (synthetic data): the generator's own, ranked as the ceiling row.
    ``text_fn`` (MiniLM) encodes event texts for a ``use_text`` model and ``item_texts`` (titles)
    into vectors that join the co-occurrence factors in the content table.
    """
    content_dim = cfg.train.model.content_dim or 64
    vectors = title_table(item_texts, text_fn) if item_texts and text_fn is not None else None
    if vectors is not None:  # the titles follow the co-occurrence factors in the content table
        cfg = replace(cfg, train=replace(cfg.train, model=cfg.train.model.with_(content_text=True)))
    split = split_events(histories, scenario_names, seed=cfg.seed, max_test_users=cfg.max_test_users,
                         content_dim=content_dim, item_vectors=vectors)
    wrap = _seen_masking(split)
    results: Results = {}
    train_h = split.training
    _score("popularity", wrap(Popularity(train_h, split.dataset)), split.test, split, cfg, results)
    _score("last item (co-occurrence)", wrap(CooccurrenceKnn(train_h, split.dataset, last_only=True)),
           split.test, split, cfg, results)
    _score("mean-pool of recent item vectors", wrap(MeanPool(split.dataset.content[:, :content_dim], split.dataset)),
           split.test, split, cfg, results)
    _score("co-occurrence kNN", _tuned_knn(split, cfg, wrap), split.test, split, cfg, results)
    if item_probabilities is not None:
        _score(CEILING, wrap(KnownProbabilities(item_probabilities, split.dataset, scenario_names)), split.test, split,
               cfg, results)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(work_dir or tmp)
        model = _train_model(split, cfg, cfg.train, policy, None, split.val, wrap, work / "model", text_fn,
                             results)
        _score("unistate", wrap(ModelScorer(model, split.dataset, policy, text_fn=text_fn)), split.test, split, cfg,
               results)
        if vectors is not None:
            _score_as_new_items(model, split, cfg, policy, text_fn, wrap, results)
        _personalization(model, split, policy, results, planted_items, text_fn)
        wanted = cfg.single_scenarios if cfg.single_scenarios is not None else scenario_names
        if len(split.test) > 1:
            for c, v in zip(split.test, split.val, strict=True):
                s = c.scenario
                if scenario_names[s] not in wanted:
                    continue
                only = tuple(i == s for i in range(len(scenario_names)))
                tc = replace(cfg.train, scenario_mask=only, input_scenarios=(s,))
                single = _train_model(split, cfg, tc, policy, (s,), [v], wrap, work / f"single{s}", text_fn)
                _score("single-scenario model", wrap(ModelScorer(single, split.dataset, policy, (s,), text_fn=text_fn)),
                       [c], split, cfg, results)
    return results


def run_quota_study(histories: list[UserHistory], scenario_names: tuple[str, ...], cfg: EvaluationConfig,
                    policies: Sequence[tuple[str, MixingPolicyProtocol]], target: int,
                    work_dir: Path | None = None) -> Results:
    """The same recipe trained and scored once per mixing policy, on one target scenario only
    (RED-Rec's claim: quotas keep a rare scenario's share when the slot budget binds); served in
    the all view, since which events the policy mixes in is what it compares."""
    split = split_events(histories, scenario_names, seed=cfg.seed, max_test_users=cfg.max_test_users,
                         content_dim=cfg.train.model.content_dim or 64)
    test = [c for c in split.test if c.scenario == target]
    val = [c for c in split.val if c.scenario == target]
    wrap = _seen_masking(split)
    results: Results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, policy) in enumerate(policies):
            model = _train_model(split, cfg, cfg.train, policy, None, val, wrap, Path(work_dir or tmp) / f"p{k}")
            _score(name, wrap(ModelScorer(model, split.dataset, policy)), test, split, cfg, results)
    return results


def train_with_choices(split: Split, train_cfg: TrainConfig, policy: MixingPolicyProtocol | None, out_dir: Path,
                       text_fn: TextFn | None = None, mixing_policy: dict | None = None) -> tuple[Path, Results]:
    """What ``unistate train`` runs with validation users (``protocol.validation_split``): the
    recipe exactly as ``run_evaluation`` trains and serves it (the epoch, then each validated
    scenario's view, recent items and pool, chosen on ``split.val``), saved as the checkpoint in
    ``out_dir``; returns its path and the choices (the ``VIEWS_KEY`` / ``RECENT_KEY`` entries)."""
    cfg = EvaluationConfig(train=train_cfg, seed=train_cfg.seed)
    results: Results = {}
    model = _train_model(split, cfg, train_cfg, policy, None, split.val, _seen_masking(split), out_dir, text_fn,
                         results, mixing_policy)
    path = out_dir / CHECKPOINT_NAME
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    checkpoint["model_config"] = model.cfg.to_dict()
    checkpoint["validation_choices"] = results
    torch.save(checkpoint, path)
    return path, results
