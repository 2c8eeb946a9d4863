"""One evaluation protocol for any events: per target scenario, each user's last event there is the
target and everything before it (all scenarios) the context; validation users drawn with a seed."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from encoders.dataset import EventDataset, UserHistory
from encoders.evaluation.ranking import EvalCases
from encoders.items import align_table, cooccurrence_table

__all__ = [
    "MIN_VALIDATION_USERS", "Split", "VALIDATION_FLOOR", "development_histories", "split_events", "target_positions",
    "validation_count", "validation_split",
]

logger = logging.getLogger(__name__)
#: ``validation_split``: a scenario with fewer validation users keeps the defaults (no choices)
MIN_VALIDATION_USERS = 20
#: a small dataset's validation share is raised to this many users (at most a third of them):
#: MovieLens' 10 % (94 users) chose its epoch and pool by chance, and on development users three
#: seeds read 0.148 on average with 94 and 0.167-0.173 with ~300 (two draws; docs/model.md)
VALIDATION_FLOOR = 300


@dataclass(frozen=True)
class Split:
    """Training events, the vocabulary, and test / validation cases per target scenario.

    ``training`` holds every event except the validation and test targets; ``dataset`` has the
    whole catalogue as vocabulary and a co-occurrence content table from ``training`` only.
    """

    dataset: EventDataset
    test: list[EvalCases]
    val: list[EvalCases]
    scenario_names: tuple[str, ...]

    @property
    def training(self) -> list[UserHistory]:
        return self.dataset.histories

    @property
    def scenarios(self) -> tuple[int, ...]:
        return tuple(c.scenario for c in self.test)


def target_positions(history: UserHistory, n_scenarios: int) -> np.ndarray:
    """Per scenario, the position of the user's last event there that has an item and at least
    one earlier event (any scenario); -1 where there is none."""
    out = np.full(n_scenarios, -1, np.int64)
    for pos in range(len(history) - 1, 0, -1):
        s = int(history.scenario_idx[pos])
        if out[s] < 0 and history.item_ids[pos] is not None:
            out[s] = pos
    return out


def _pick(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[rng.choice(n, min(k, n), replace=False)] = True
    return mask


def split_events(
    histories: list[UserHistory], scenario_names: tuple[str, ...], seed: int = 0, val_share: float = 0.1,
    max_val_users: int = 2000, min_users: int = 50, max_test_users: int | None = None, content_dim: int = 64,
    item_vectors: Mapping[str, np.ndarray] | None = None,
) -> Split:
    """Leave-last-out per scenario. Validation users are a seeded random ``val_share`` of the users
    with a target (at least ``VALIDATION_FLOOR`` or a third of them, at most ``max_val_users``); a
    scenario needs ``min_users`` test targets to be evaluated. ``max_test_users`` keeps a seeded
    random sample of the test users (faster runs). ``item_vectors`` (item id -> vector, e.g. title
    embeddings) widen the content table: the first ``content_dim`` columns stay the co-occurrence
    factors, items without a vector get zeros."""
    rng = np.random.default_rng(seed)
    n_scen = len(scenario_names)
    targets, is_val = _targets_and_validation(histories, n_scen, rng, val_share, max_val_users)
    has_target = (targets >= 0).any(axis=1)
    is_test = has_target & ~is_val
    if max_test_users is not None and is_test.sum() > max_test_users:
        test_idx = np.flatnonzero(is_test)
        is_test[:] = False
        is_test[test_idx[_pick(len(test_idx), max_test_users, rng)]] = True
    evaluated = is_val | has_target  # every user with a target loses it from training
    training = [h.without(t[t >= 0].tolist()) if ev else h
                for h, t, ev in zip(histories, targets, evaluated, strict=True)]
    catalogue = _catalogues(histories, n_scen)
    items = sorted(set().union(*catalogue))
    bare = EventDataset(histories=training, items=items)
    content = cooccurrence_table(training, bare, content_dim, seed)
    if item_vectors:  # e.g. MiniLM title vectors, beside the co-occurrence factors
        content = np.hstack([content, align_table(bare, item_vectors)])
    dataset = EventDataset(histories=training, items=items, content=content)
    test, val = [], []
    for s in range(n_scen):
        columns = np.array([dataset.index[i] for i in sorted(catalogue[s])], np.int64)
        cases = [_cases(histories, targets[:, s], mask, s, dataset, columns) for mask in (is_test, is_val)]
        if len(cases[0].histories) >= min_users and len(cases[1].histories) > 0:
            test.append(cases[0])
            val.append(cases[1])
    logger.info("split users=%d val=%d test=%d train_events=%d scenarios=%s", len(histories), is_val.sum(),
                is_test.sum(), sum(map(len, training)), [scenario_names[c.scenario] for c in test])
    return Split(dataset, test, val, scenario_names)


def validation_split(
    dataset: EventDataset, scenario_names: tuple[str, ...], seed: int = 0, val_share: float = 0.1,
    max_val_users: int = 2000, min_val_users: int = MIN_VALIDATION_USERS,
) -> Split:
    """For training on every user (``unistate train``): validation users are drawn as in
    ``split_events`` and lose their targets; every other event trains. ``test`` is empty, the
    vocabulary is ``dataset``'s and the content table is left to training (its events only). A
    scenario is validated when it has ``min_val_users`` validation users."""
    histories = dataset.histories
    n_scen = len(scenario_names)
    targets, is_val = _targets_and_validation(histories, n_scen, np.random.default_rng(seed), val_share,
                                              max_val_users)
    known = set(dataset.items)
    is_val &= np.array([all(h.item_ids[t] in known for t in row[row >= 0]) for h, row in zip(histories, targets,
                                                                                          strict=True)], bool)
    training = [h.without(t[t >= 0].tolist()) if v else h for h, t, v in zip(histories, targets, is_val, strict=True)]
    training_set = EventDataset(histories=training, items=dataset.items)
    catalogue = _catalogues(histories, n_scen)
    val = []
    for s in range(n_scen):
        columns = np.array([training_set.index[i] for i in sorted(catalogue[s] & known)], np.int64)
        cases = _cases(histories, targets[:, s], is_val, s, training_set, columns)
        if len(cases.histories) >= min_val_users:
            val.append(cases)
    logger.info("validation split users=%d val=%d train_events=%d validated=%s", len(histories), is_val.sum(),
                sum(map(len, training)), [scenario_names[c.scenario] for c in val])
    return Split(training_set, [], val, scenario_names)


def _targets_and_validation(histories: list[UserHistory], n_scen: int, rng: np.random.Generator, val_share: float,
                            max_val_users: int) -> tuple[np.ndarray, np.ndarray]:
    """``[users, scenarios]`` target positions (-1: none) and the validation users: a random
    ``val_share`` of the users with a target, at least ``VALIDATION_FLOOR`` or a third of them
    (``val_share`` 0: none), at most ``max_val_users``."""
    targets = np.stack([target_positions(h, n_scen) for h in histories]) if histories else np.zeros((0, n_scen))
    eligible = np.flatnonzero((targets >= 0).any(axis=1))
    is_val = np.zeros(len(histories), bool)
    is_val[eligible[_pick(len(eligible), validation_count(len(eligible), val_share, max_val_users), rng)]] = True
    return targets, is_val


def validation_count(n_users: int, val_share: float, max_val_users: int) -> int:
    """How many of ``n_users`` users with a target validate: ``val_share`` of them, at least
    ``VALIDATION_FLOOR`` or a third of them, at most ``max_val_users``; none when ``val_share`` is 0."""
    if val_share <= 0:
        return 0
    return min(max_val_users, max(1, int(val_share * n_users), min(VALIDATION_FLOOR, n_users // 3)))


def _catalogues(histories: list[UserHistory], n_scen: int) -> list[set[str]]:
    out: list[set[str]] = [set() for _ in range(n_scen)]
    for h in histories:
        for item, s in zip(h.item_ids, h.scenario_idx.tolist(), strict=True):
            if item is not None:
                out[s].add(item)
    return out


def _cases(histories: list[UserHistory], targets: np.ndarray, mask: np.ndarray, scenario: int,
           dataset: EventDataset, columns: np.ndarray) -> EvalCases:
    keep = np.flatnonzero(mask & (targets >= 0))
    users = [histories[i] for i in keep]
    rows = np.array([dataset.index[h.item_ids[int(t)]] for h, t in zip(users, targets[keep], strict=True)], np.int64)
    return EvalCases(users, targets[keep], rows, scenario, columns)


def development_histories(
    histories: list[UserHistory], scenario_names: tuple[str, ...], seed: int = 0
) -> list[UserHistory]:
    """The histories with every validation and test target removed (the training events of
    ``split_events`` with the same seed): evaluating on them scores each user's *previous* last
    event per scenario, so recipe changes can be compared without ever touching a test target."""
    split = split_events(histories, scenario_names, seed=seed, min_users=0)
    return [h for h in split.training if len(h) >= 2]
