"""The C2DSR Amazon Food-Kitchen files as unified histories and a leave-last-out split."""

from __future__ import annotations

from pathlib import Path

from encoders.dataset import UserHistory

__all__ = ["FOOD", "KITCHEN", "read_users"]

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
