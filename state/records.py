"""The plain behaviour record that flows from decoded events into per-user state."""

from __future__ import annotations

import msgspec

__all__ = ["ACTIONS", "SCENARIOS", "Behavior"]

#: Scenario names in their fixed order; a scenario's index is its position here.
SCENARIOS: tuple[str, ...] = ("feed", "search", "ads")

#: One action vocabulary shared by all scenarios; an action's index is its position here.
ACTIONS: tuple[str, ...] = (
    "impression",
    "click",
    "like",
    "collect",
    "comment",
    "share",
    "follow",
    "hide",
    "query",
    "conversion",
)


class Behavior(msgspec.Struct, frozen=True, gc=False):
    """One user behaviour in one scenario, as kept in the unified per-user sequence.

    ``item_id`` is the feed item, the clicked search result or the ad; ``text`` is a search
    query. Times are milliseconds since the Unix epoch. A frozen msgspec struct rather than a
    frozen dataclass: the same fields, equality, hashing and immutability, built ~10x faster
    (one is built per consumed event). Fields hold only strings and ints, so no GC tracking.
    """

    event_id: str
    user_id: str
    scenario: str
    ts_ms: int
    action: str
    item_id: str | None = None
    text: str | None = None
    dwell_ms: int = 0
