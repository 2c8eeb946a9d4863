"""The C2DSR Amazon Food-Kitchen files as unified histories and a leave-last-out split."""

from __future__ import annotations

from dataclasses import dataclass
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
    """Users with their evaluation targets; training sees only prefixes before the targets."""

    val: list[UserHistory]
    test: list[UserHistory]
    val_targets: np.ndarray  # [n_val, 2] position of the last Food / Kitchen event
    test_targets: np.ndarray
    domain_items: tuple[list[str], list[str]]  # full Food and Kitchen catalogues

    def training_histories(self) -> list[UserHistory]:
        """Every user's events strictly before the earlier of their two targets."""
        out = []
        for users, targets in ((self.val, self.val_targets), (self.test, self.test_targets)):
            for h, t in zip(users, targets, strict=True):
                if t.min() > 0:
                    out.append(h.prefix(int(t.min())))
        return out


def _targets(users: list[UserHistory]) -> np.ndarray:
    out = np.full((len(users), 2), -1, np.int64)
    for u, h in enumerate(users):
        for d in (FOOD, KITCHEN):
            pos = np.flatnonzero(h.scenario_idx == d)
            if len(pos):
                out[u, d] = pos[-1]
    return out


def load_amazon(root: Path) -> AmazonSplit:
    """Read ``val_new.txt``/``test_new.txt``; users lacking either domain are dropped."""
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
    return AmazonSplit(parts[0][0], parts[1][0], parts[0][1], parts[1][1], items)
