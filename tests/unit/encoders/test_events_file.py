"""Your own events in: JSONL, CSV and Parquet files in the input topics' schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from encoders.data.events import read_events
from encoders.errors import DataError

EVENTS = [
    {"user_id": "u2", "item_id": "i9", "scenario": "ads", "action": "click", "ts_ms": 30},
    {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "like", "ts_ms": 20},
    {"user_id": "u1", "scenario": "search", "action": "query", "ts_ms": 10, "text": "solar panels"},
]


def _check(histories) -> None:  # noqa: ANN001
    assert [h.user_id for h in histories] == ["u1", "u2"]
    u1 = histories[0]
    assert u1.item_ids == [None, "i1"] and u1.texts == ["solar panels", None]
    assert u1.scenario_idx.tolist() == [1, 0] and u1.ts_ms.tolist() == [10, 20]


def test_jsonl_and_csv_give_the_same_histories(tmp_path: Path) -> None:
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text("\n".join(json.dumps(e) for e in EVENTS) + "\n")
    csv_path = tmp_path / "e.csv"
    cols = ["user_id", "item_id", "scenario", "action", "ts_ms", "text"]
    csv_path.write_text(",".join(cols) + "\n" + "\n".join(",".join(str(e.get(c, "")) for c in cols) for e in EVENTS))
    _check(read_events(jsonl))
    _check(read_events(csv_path))


def test_parquet(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow", reason="pyarrow (the parquet extra) is not installed")
    import pyarrow.parquet as pq

    path = tmp_path / "e.parquet"
    pq.write_table(pa.Table.from_pylist([{**e, "text": e.get("text"), "item_id": e.get("item_id")} for e in EVENTS]),
                   path)
    _check(read_events(path))


def test_msgpack_stream(tmp_path: Path) -> None:
    import msgpack

    path = tmp_path / "e.msgpack"
    path.write_bytes(b"".join(msgpack.packb(e) for e in EVENTS))
    _check(read_events(path))


@pytest.mark.parametrize("bad, match", [
    ({"user_id": "u", "scenario": "email", "action": "click", "ts_ms": 1}, "unknown scenario"),
    ({"user_id": "u", "scenario": "feed", "action": "teleport", "ts_ms": 1}, "unknown action"),
    ({"user_id": "u", "scenario": "feed", "action": "click"}, "missing"),
    ({"user_id": "u", "scenario": "feed", "action": "click", "ts_ms": "soon"}, "not an integer"),
])
def test_bad_records_raise_a_clear_data_error(tmp_path: Path, bad: dict, match: str) -> None:
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(DataError, match=match):
        read_events(path)


def test_unknown_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown event file type"):
        read_events(tmp_path / "e.xml")
