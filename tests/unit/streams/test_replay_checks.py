"""Replay without a broker: record conversion, the worker's checks, the pacing schedule, the dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli import main
from streams.cli.event_records import dataset_records, wire_event
from streams.cli.produce import read_event_file
from streams.cli.replay import check_records
from streams.cli.schedule import send_offsets_s
from streams.errors import PoisonMessageError
from streams.events import EventLimits

TS = 1_718_000_000_000
NOW_MS = TS + 3_600_000


def test_speedup_divides_the_event_time_gaps() -> None:
    assert send_offsets_s([TS, TS + 2000, TS + 2000, TS + 10_000], speedup=2) == [0.0, 1.0, 1.0, 5.0]


def test_rate_spaces_events_evenly_whatever_their_times() -> None:
    assert send_offsets_s([TS + 9, TS, TS + 5, TS], rate_per_s=4) == [0.0, 0.25, 0.5, 0.75]


def test_without_pacing_there_is_no_schedule() -> None:
    assert send_offsets_s([TS, TS + 1]) is None
    assert send_offsets_s([], speedup=3) == []


@pytest.mark.parametrize("kwargs", [{"rate_per_s": 1, "speedup": 1}, {"speedup": 0}, {"rate_per_s": -1}])
def test_bad_pacing_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        send_offsets_s([TS], **kwargs)


def test_event_time_pacing_needs_time_order() -> None:
    with pytest.raises(ValueError, match="time order"):
        send_offsets_s([TS + 1, TS], speedup=1)


def test_flat_records_become_the_wire_events_the_worker_reads() -> None:
    feed = {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "like", "ts_ms": str(TS), "text": ""}
    assert wire_event(feed, "f:1") == ("feed", {"event_id": "f:1", "user_id": "u1", "item_id": "i1",
                                                "action": "like", "ts_ms": TS})
    search = {"user_id": 7, "item_id": "i2", "scenario": "search", "action": "click", "ts_ms": TS, "text": "tea"}
    assert wire_event(search, "f:2") == ("search", {"event_id": "f:2", "user_id": "7", "ts_ms": TS,
                                                    "query": "tea", "clicked_item_id": "i2"})
    query = {"user_id": "u1", "scenario": "search", "action": "query", "ts_ms": TS, "text": "tea", "item_id": "i3"}
    assert "clicked_item_id" not in wire_event(query, "f:3")[1]
    ads = {"event_id": "e9", "user_id": "u1", "item_id": "ad1", "scenario": "ads", "action": "click",
           "ts_ms": float(TS)}
    assert wire_event(ads, "f:4") == ("ads", {"event_id": "e9", "user_id": "u1", "ad_id": "ad1",
                                              "action": "click", "ts_ms": TS})


def test_wire_events_with_a_scenario_pass_through() -> None:
    wire = {"event_id": "s-1", "user_id": "u1", "ts_ms": TS, "query": "latte", "clicked_item_id": "i1", "position": 2}
    assert wire_event({"scenario": "search", **wire}, "f:1") == ("search", wire)


def test_a_record_without_a_known_scenario_has_no_topic() -> None:
    with pytest.raises(PoisonMessageError) as info:
        wire_event({"user_id": "u1", "scenario": "email", "ts_ms": TS}, "f:1")
    assert info.value.reason == "unknown_scenario"


def test_checks_count_rejects_by_the_workers_reasons_and_sort_by_event_time() -> None:
    records = [
        ("a:1", {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "click", "ts_ms": TS + 5}),
        ("a:2", {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "teleport", "ts_ms": TS}),
        ("a:3", {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "click", "ts_ms": NOW_MS * 2}),
        ("a:4", {"user_id": "u2", "scenario": "search", "action": "query", "ts_ms": TS, "text": "tea"}),
        ("a:5", {"user_id": "u2", "scenario": "mail", "ts_ms": TS}),
        ("a:6", {"user_id": "u2", "item_id": "x" * 300, "scenario": "ads", "action": "click", "ts_ms": TS}),
    ]
    checked = check_records(records, EventLimits(max_message_bytes=300), NOW_MS)
    assert [(e.scenario, e.key, e.ts_ms) for e in checked.events] == [("search", b"u2", TS), ("feed", b"u1", TS + 5)]
    assert checked.rejected == {"validation_error": 2, "unknown_scenario": 1, "message_too_large": 1}
    assert checked.examples["validation_error"].startswith("a:2: feed event: action")
    assert checked.read == 6


def _write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_dry_run_counts_a_bad_records_reason_and_produces_nothing(tmp_path: Path, capsys) -> None:
    path = _write_jsonl(tmp_path / "events.jsonl", [
        {"user_id": "u1", "item_id": "i1", "scenario": "feed", "action": "click", "ts_ms": TS},
        {"user_id": "u1", "item_id": "i2", "scenario": "feed", "action": "click", "ts_ms": 5},  # before 2000
    ])
    # No broker listens on the bootstrap address: a dry run never connects.
    assert main(["replay", str(path), "--dry-run", "--bootstrap-servers", "127.0.0.1:1"]) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 records read, 1 valid, 1 rejected" in out
    assert "validation_error=1" in out and "events.jsonl:2: feed event: ts_ms" in out
    assert "valid per scenario (nothing produced): feed=1" in out


@pytest.mark.parametrize("argv", [
    ["replay"],
    ["replay", "x.jsonl", "--dataset", "taobao"],
    ["replay", "x.jsonl", "--rate", "10", "--speedup", "2"],
    ["replay", "x.jsonl", "--rate", "0"],
])
def test_replay_arguments_are_checked(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2


def test_dataset_records_use_the_evaluation_mapping_and_stable_ids(tmp_path: Path) -> None:
    (tmp_path / "UserBehavior.csv").write_text("1,100,7,pv,1511658000\n1,101,7,cart,1511658060\n")
    records = list(dataset_records("taobao", tmp_path))
    assert [where for where, _ in records] == ["taobao:tb1:0", "taobao:tb1:1"]
    events = [wire_event(r, w) for w, r in records]
    assert events[0] == ("feed", {"event_id": "taobao:tb1:0", "user_id": "tb1", "item_id": "100",
                                  "action": "click", "ts_ms": 1_511_658_000_000})
    assert events[1][0] == "search" and events[1][1]["clicked_item_id"] == "101" and events[1][1]["query"] == "101"


def test_produce_reads_files_with_replays_reader(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(f"user_id,item_id,scenario,action,ts_ms\nu1,i1,feed,click,{TS}\nu1,ad1,ads,click,{TS + 1}\n")
    assert list(read_event_file(path)) == [
        ("feed", {"event_id": "events.csv:1", "user_id": "u1", "item_id": "i1", "action": "click", "ts_ms": TS}),
        ("ads", {"event_id": "events.csv:2", "user_id": "u1", "ad_id": "ad1", "action": "click", "ts_ms": TS + 1}),
    ]
