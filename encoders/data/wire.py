"""Wire-format event dicts (feed / search / ads) to per-user model arrays."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from encoders.config import DEFAULT_ACTIONS, DEFAULT_SCENARIOS
from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = ["histories_from_wire", "wire_to_row"]

_SCEN = {s: i for i, s in enumerate(DEFAULT_SCENARIOS)}
_ACT = {a: i for i, a in enumerate(DEFAULT_ACTIONS)}


def wire_to_row(scenario: str, wire: dict) -> tuple[int, str | None, str | None, int, int]:
    """``(ts_ms, item_id, text, scenario_idx, action_idx)`` for one event, like the worker maps it."""
    try:
        if scenario == "feed":
            item, text, action = wire["item_id"], None, wire["action"]
        elif scenario == "search":
            item, text = wire.get("clicked_item_id"), wire["query"]
            action = "click" if item else "query"
        elif scenario == "ads":
            item, text, action = wire["ad_id"], None, wire["action"]
        else:
            raise DataError(f"unknown scenario {scenario!r}")
        return int(wire["ts_ms"]), item, text, _SCEN[scenario], _ACT[action]
    except KeyError as exc:
        raise DataError(f"bad {scenario} event {wire.get('event_id')}: missing {exc}") from exc


def histories_from_wire(events: Iterable[tuple[str, dict]]) -> list[UserHistory]:
    """Group events by user (sorted by user id) into time-sorted histories."""
    rows: dict[str, list] = defaultdict(list)
    for scenario, wire in events:
        rows[wire["user_id"]].append(wire_to_row(scenario, wire))
    return [UserHistory.from_events(u, rows[u]) for u in sorted(rows)]
