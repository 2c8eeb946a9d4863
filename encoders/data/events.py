"""Your own events for training, evaluation and replay: JSONL, CSV, Parquet or msgpack files in the
input topics' schema (``user_id``, ``item_id``, ``scenario``, ``action``, ``ts_ms``, optional ``text``)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgpack

from encoders.config import DEFAULT_ACTIONS, DEFAULT_SCENARIOS
from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = ["REQUIRED_COLUMNS", "histories_from_records", "read_event_records", "read_events"]

REQUIRED_COLUMNS = ("user_id", "scenario", "action", "ts_ms")
_SCEN = {s: i for i, s in enumerate(DEFAULT_SCENARIOS)}
_ACT = {a: i for i, a in enumerate(DEFAULT_ACTIONS)}
Row = tuple[int, str | None, str | None, int, int]


def read_event_records(path: Path) -> Iterator[Mapping[str, Any]]:
    """Records of an event file by suffix: ``.jsonl`` / ``.ndjson``, ``.csv`` (header row), ``.parquet``,
    ``.msgpack`` / ``.mpk`` (a stream of maps). CSV values are strings; readers of records convert."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            with path.open() as fh:
                for n, line in enumerate(fh, start=1):
                    if line.strip():
                        yield _json(line, path, n)
        elif suffix == ".csv":
            with path.open(newline="") as fh:
                yield from csv.DictReader(fh)
        elif suffix == ".parquet":
            yield from _parquet(path)
        elif suffix in (".msgpack", ".mpk"):
            yield from _msgpack(path)
        else:
            raise DataError(f"{path}: unknown event file type {suffix!r} (use .jsonl, .csv, .parquet or .msgpack)")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _json(line: str, path: Path, n: int) -> Mapping[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{n}: not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise DataError(f"{path}:{n}: an event is a JSON object, got {type(record).__name__}")
    return record


def _msgpack(path: Path) -> Iterator[Mapping[str, Any]]:
    with path.open("rb") as fh:
        try:
            for n, record in enumerate(msgpack.Unpacker(fh, raw=False), start=1):
                if not isinstance(record, dict):
                    raise DataError(f"{path} record {n}: an event is a msgpack map, got {type(record).__name__}")
                yield record
        except (ValueError, msgpack.UnpackException) as exc:
            raise DataError(f"{path}: not a msgpack stream: {exc}") from exc


def _parquet(path: Path) -> Iterator[Mapping[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise DataError("reading .parquet needs pyarrow: pip install 'unistate[parquet]'") from exc
    yield from pq.read_table(path).to_pylist()


def _row(record: Mapping[str, Any], where: str) -> tuple[str, Row]:
    missing = [c for c in REQUIRED_COLUMNS if record.get(c) in (None, "")]
    if missing:
        raise DataError(f"{where}: missing {missing}")
    scenario, action = str(record["scenario"]), str(record["action"])
    if scenario not in _SCEN:
        raise DataError(f"{where}: unknown scenario {scenario!r} (one of {list(DEFAULT_SCENARIOS)})")
    if action not in _ACT:
        raise DataError(f"{where}: unknown action {action!r} (one of {list(DEFAULT_ACTIONS)})")
    try:
        ts_ms = int(record["ts_ms"])
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: ts_ms={record['ts_ms']!r} is not an integer") from exc
    item = record.get("item_id")
    text = record.get("text")
    return str(record["user_id"]), (ts_ms, None if item in (None, "") else str(item),
                                    None if text in (None, "") else str(text), _SCEN[scenario], _ACT[action])


def histories_from_records(records: Iterable[Mapping[str, Any]], source: str = "events") -> list[UserHistory]:
    """Group validated records by user (sorted by user id) into time-sorted histories."""
    rows: dict[str, list[Row]] = defaultdict(list)
    for n, record in enumerate(records, start=1):
        user, row = _row(record, f"{source} record {n}")
        rows[user].append(row)
    if not rows:
        raise DataError(f"{source}: no events")
    return [UserHistory.from_events(u, rows[u]) for u in sorted(rows)]


def read_events(path: Path) -> list[UserHistory]:
    """Every user's time-sorted history from an event file (see :func:`read_event_records`)."""
    return histories_from_records(read_event_records(path), str(path))
