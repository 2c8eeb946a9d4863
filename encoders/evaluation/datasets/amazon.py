"""The C2DSR Amazon Food-Kitchen files as unified histories and a leave-last-out split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = ["FOOD", "KITCHEN", "AmazonSplit", "load_amazon", "read_users"]

FOOD, KITCHEN = 0, 1  # domain A -> scenario 0 (feed), domain B -> scenario 1 (search)
_CLICK = 1  # index of "click" in the shared action vocabulary


def read_users(path: Path) -> list[UserHistory]:
    """One history per line; events sorted by timestamp (stable: file order breaks ties)."""
    n_food = sum(1 for _ in (path.parent / "items_a.txt").open())
    out = []
    for line in path.read_text().splitlines():
        parts = line.rstrip("\t").split("\t")
        if len(parts) < 3:
            continue
        events = []
        for raw in parts[2:]:
            item, ts = raw.split("|")[:2]
            scen = FOOD if int(item) < n_food else KITCHEN
            events.append((int(ts) * 1000, item, None, scen, _CLICK))
        out.append(UserHistory.from_events(f"amz{parts[0]}", events))
    return out


@dataclass(frozen=True)
class AmazonSplit:
    """Users with their evaluation targets (leave-last-out per domain).

    ``val`` are the validation users whose targets select the best epoch; ``train_only`` are the
    other users of ``val_new.txt``, whose whole histories are training data.
    """

    val: list[UserHistory]
    test: list[UserHistory]
    val_targets: np.ndarray  # [n_val, 2] position of the last Food / Kitchen event
    test_targets: np.ndarray
    domain_items: tuple[list[str], list[str]]  # full Food and Kitchen catalogues
    train_only: list[UserHistory] = field(default_factory=list)

    def training_histories(self) -> list[UserHistory]:
        """``train_only`` users whole; validation and test users minus their two target events."""
        out = list(self.train_only)
        for users, targets in ((self.val, self.val_targets), (self.test, self.test_targets)):
            out.extend(h.without(t.tolist()) for h, t in zip(users, targets, strict=True))
        return [h for h in out if len(h)]


def _targets(users: list[UserHistory]) -> np.ndarray:
    out = np.full((len(users), 2), -1, np.int64)
    for u, h in enumerate(users):
        for d in (FOOD, KITCHEN):
            pos = np.flatnonzero(h.scenario_idx == d)
            if len(pos):
                out[u, d] = pos[-1]
    return out


def load_amazon(root: Path, selection_users: int | None = None, seed: int = 0) -> AmazonSplit:
    """Read ``val_new.txt``/``test_new.txt``; users lacking either domain are dropped.

    ``selection_users``: keep a random sample of that many val users (seeded) as validation
    users; the rest become ``train_only``. ``None`` keeps every val user for validation.
    """
    if not (root / "test_new.txt").is_file():
        raise DataError(f"amazon-food-kitchen files not found under {root}")
    n_food = sum(1 for _ in (root / "items_a.txt").open())
    n_kitchen = sum(1 for _ in (root / "items_b.txt").open())
    parts = []
    for name in ("val_new.txt", "test_new.txt"):
        users = read_users(root / name)
        targets = _targets(users)
        keep = (targets >= 0).all(axis=1)
        parts.append(([u for u, k in zip(users, keep, strict=True) if k], targets[keep]))
    items = ([str(i) for i in range(n_food)], [str(i) for i in range(n_food, n_food + n_kitchen)])
    (val, val_targets), (test, test_targets) = parts
    train_only: list[UserHistory] = []
    if selection_users is not None and selection_users < len(val):
        pick = np.zeros(len(val), bool)
        pick[np.random.default_rng(seed).choice(len(val), selection_users, replace=False)] = True
        train_only = [h for h, p in zip(val, pick, strict=True) if not p]
        val, val_targets = [h for h, p in zip(val, pick, strict=True) if p], val_targets[pick]
    return AmazonSplit(val, test, val_targets, test_targets, items, train_only)
