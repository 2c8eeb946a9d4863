"""Event records from a file or a known dataset, and their conversion to the input topics' wire events.

A record is either in the flat schema that training reads (``user_id``, ``item_id``, ``scenario``,
``action``, ``ts_ms``, optional ``text`` / ``event_id``) or already a wire event plus a
``scenario`` field; both become ``(scenario, wire dict)`` pairs (docs/events.md, docs/replay.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from encoders.errors import DataError
from state.records import ACTIONS, SCENARIOS
from streams.errors import PoisonMessageError, StreamsError

__all__ = ["Record", "ScenarioEvent", "dataset_records", "file_records", "wire_event"]

#: ``(where, record)``: ``where`` names the record (``file.csv:12``) and is its default event id.
Record = tuple[str, Mapping[str, Any]]
ScenarioEvent = tuple[str, dict[str, Any]]

_INT_FIELDS = frozenset({"ts_ms", "dwell_ms", "position"})
_ID_FIELDS = frozenset({"event_id", "user_id", "item_id", "clicked_item_id", "ad_id", "creative_id"})
_INT = re.compile(r"^-?\d+$")


def file_records(path: Path) -> Iterator[Record]:
    """Records of a ``.jsonl``, ``.csv``, ``.parquet`` or ``.msgpack`` file, named ``file:N``."""
    from encoders.data.events import read_event_records

    path = Path(path)
    try:
        for n, record in enumerate(read_event_records(path), start=1):
            yield f"{path.name}:{n}", record
    except DataError as exc:
        raise StreamsError(str(exc)) from exc


def dataset_records(name: str, root: Path | None = None) -> Iterator[Record]:
    """Records of a known dataset (``encoders.evaluation.datasets.registry``), with the same
    scenario and action mapping as training and evaluation. Event ids are ``NAME:USER:K``.

    None of these datasets has query text, so a search event's query is its item id (a stand-in,
    like the behaviour-to-scenario mapping itself).
    """
    from encoders.evaluation.datasets.registry import load_dataset

    try:
        histories = load_dataset(name, root)
    except DataError as exc:
        raise StreamsError(str(exc)) from exc
    for history in histories:
        rows = zip(history.item_ids, history.texts, history.scenario_idx.tolist(), history.action_idx.tolist(),
                   history.ts_ms.tolist(), strict=True)
        for k, (item, text, scenario, action, ts_ms) in enumerate(rows):
            where = f"{name}:{history.user_id}:{k}"
            if SCENARIOS[scenario] == "search" and text is None:
                text = item
            yield where, {"event_id": where, "user_id": history.user_id, "item_id": item, "text": text,
                          "scenario": SCENARIOS[scenario], "action": ACTIONS[action], "ts_ms": ts_ms}


def _clean(name: str, value: Any) -> Any:
    """CSV strings and Parquet numbers in the wire's strict types; anything else is left for validation."""
    if isinstance(value, str) and name in _INT_FIELDS and _INT.match(value.strip()):
        return int(value)
    if isinstance(value, float) and name in _INT_FIELDS and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and name in _ID_FIELDS:
        return str(value)
    return value


def wire_event(record: Mapping[str, Any], default_event_id: str) -> ScenarioEvent:
    """``(scenario, wire dict)`` of one record; empty values count as absent.

    Flat fields map as the worker reads them back: a search's ``text`` is its ``query`` and its
    ``item_id`` the clicked result (unless the action is ``query``); an ad's ``item_id`` is its
    ``ad_id``. Wire fields already present win. Raises ``PoisonMessageError`` (reason
    ``unknown_scenario``) when the record names no known scenario: it has no topic.
    """
    fields = {k: _clean(k, v) for k, v in record.items() if v is not None and v != ""}
    scenario = fields.pop("scenario", None)
    if scenario not in SCENARIOS:
        raise PoisonMessageError("unknown_scenario", f"scenario {scenario!r} is not one of {list(SCENARIOS)}")
    fields.setdefault("event_id", default_event_id)
    text = fields.pop("text", None)
    if scenario == "search":
        item, action = fields.pop("item_id", None), fields.pop("action", None)
        if text is not None:
            fields.setdefault("query", text)
        if item is not None and action != "query":
            fields.setdefault("clicked_item_id", item)
    elif scenario == "ads" and "item_id" in fields:
        fields.setdefault("ad_id", fields.pop("item_id"))
    return str(scenario), fields
