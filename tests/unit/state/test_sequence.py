"""UserSequence: ordering, dedupe, lateness, capacity and the msgpack round trip."""

from __future__ import annotations

import random
import zlib

import msgpack
import numpy as np
import pytest

from state.config import StateConfig
from state.errors import InvalidInputError, StateFormatError
from state.records import ACTIONS, SCENARIOS, Behavior
from state.sequence import ApplyResult, UserSequence, event_key

HOUR_MS = 3_600_000


def keys(*event_ids: str) -> list[str]:
    """How ``behaviors()`` names these events (the state keeps digests of ids)."""
    return [event_key(e) for e in event_ids]


def ids(behaviors: list[Behavior]) -> list[str]:
    return [b.event_id for b in behaviors]


def ev(event_id: str, ts_ms: int, scenario: str = "feed", **kw: object) -> Behavior:
    return Behavior(event_id=event_id, user_id="u1", scenario=scenario, ts_ms=ts_ms,
                    action=str(kw.pop("action", "click")), **kw)  # type: ignore[arg-type]


def test_events_are_kept_in_event_time_order_with_arrival_order_on_ties() -> None:
    seq = UserSequence("u1")
    for e in [ev("c", 300), ev("a", 100), ev("b1", 200), ev("b2", 200), ev("s", 150, "search")]:
        assert seq.apply(e) is ApplyResult.ADDED
    assert ids(seq.behaviors()) == keys("a", "s", "b1", "b2", "c")
    assert ids(seq.scenario_behaviors("feed")) == keys("a", "b1", "b2", "c")
    assert seq.counts() == {"feed": 4, "search": 1, "ads": 0}
    assert seq.watermark_ms == 300
    assert len(seq) == 5


def test_equal_times_across_scenarios_order_by_scenario_then_arrival() -> None:
    seq = UserSequence("u1")
    seq.apply(ev("ad", 100, "ads"))
    seq.apply(ev("f", 100, "feed"))
    assert ids(seq.behaviors()) == keys("f", "ad")


def test_duplicate_event_id_is_refused_and_changes_nothing() -> None:
    seq = UserSequence("u1")
    assert seq.apply(ev("e1", 100, item_id="i1")) is ApplyResult.ADDED
    assert seq.apply(ev("e1", 100, item_id="i1")) is ApplyResult.DUPLICATE
    assert seq.counts()["feed"] == 1
    assert seq.watermark_ms == 100


@pytest.mark.parametrize("other", [ev("e1", 500, "search"), ev("e1", 100, item_id="i2"),
                                   ev("e1", 100, item_id="i1", action="like")])
def test_an_event_id_reused_for_other_content_is_a_conflict(other: Behavior) -> None:
    seq = UserSequence("u1")
    seq.apply(ev("e1", 100, item_id="i1"))
    assert seq.apply(other) is ApplyResult.CONFLICT
    assert [b.item_id for b in seq.behaviors()] == ["i1"] and seq.watermark_ms == 100


def test_redelivered_offsets_are_duplicates_without_touching_the_id_memory() -> None:
    seq = UserSequence("u1", StateConfig(buffer_capacity={"feed": 2}, recent_ids_capacity=4))
    for i in range(50):
        assert seq.apply(ev(f"e{i}", 1000 + i), "feed/0", i) is ApplyResult.ADDED
    # A whole-partition replay: every event is known by its offset, even long forgotten ones.
    assert all(seq.apply(ev(f"e{i}", 1000 + i), "feed/0", i) is ApplyResult.DUPLICATE for i in range(50))
    assert seq.apply(ev("e49", 1049), "feed/0", 49) is ApplyResult.DUPLICATE
    # A new event at an old offset (a recreated topic) is newer than the watermark: applied.
    assert seq.apply(ev("fresh", 5000), "feed/0", 3) is ApplyResult.ADDED
    assert seq.apply(ev("next", 5001), "feed/0", 50) is ApplyResult.ADDED


def test_replaying_a_long_history_under_new_offsets_adds_nothing() -> None:
    """Re-produced events (new offsets, same ids) must not cascade through the bounded memory."""
    seq = UserSequence("u1", StateConfig(recent_ids_capacity=64))
    history = [ev(f"e{i}", 1000 + i) for i in range(1000)]
    for offset, b in enumerate(history):
        seq.apply(b, "feed/0", offset)
    outcomes = [seq.apply(b, "feed/0", 1000 + offset) for offset, b in enumerate(history)]
    assert ApplyResult.ADDED not in outcomes
    assert outcomes.count(ApplyResult.DUPLICATE) == 256  # the buffered and remembered ones


def test_dedupe_remembers_ids_evicted_by_capacity() -> None:
    seq = UserSequence("u1", StateConfig(buffer_capacity={"feed": 2}, recent_ids_capacity=8))
    for i in range(4):
        seq.apply(ev(f"e{i}", 1000 + i))
    assert ids(seq.behaviors()) == keys("e2", "e3")
    assert seq.apply(ev("e0", 1000)) is ApplyResult.DUPLICATE


def test_recent_id_set_is_bounded() -> None:
    seq = UserSequence("u1", StateConfig(buffer_capacity={"feed": 1}, recent_ids_capacity=2))
    for i in range(4):
        seq.apply(ev(f"e{i}", 1000 + i))
    assert seq.apply(ev("e3", 1003)) is ApplyResult.DUPLICATE
    # e0 and e1 left both the buffer and the 2-id memory: at their times they may be duplicates.
    assert seq.apply(ev("e1", 1001)) is ApplyResult.STALE
    assert seq.apply(ev("new", 1001)) is ApplyResult.STALE
    assert seq.apply(ev("e0", 2000)) is ApplyResult.ADDED  # newer than anything forgotten


def test_capacity_evicts_the_oldest_event_not_the_last_arrived() -> None:
    seq = UserSequence("u1", StateConfig(buffer_capacity={"feed": 3, "search": 1}))
    for e in [ev("t5", 5), ev("t1", 1), ev("t9", 9), ev("t3", 3)]:
        seq.apply(e)
    assert ids(seq.behaviors()) == keys("t3", "t5", "t9")
    # An event older than everything in a full buffer is accepted and dropped at once.
    assert seq.apply(ev("t0", 0)) is ApplyResult.ADDED
    assert ids(seq.behaviors()) == keys("t3", "t5", "t9")
    assert seq.apply(ev("t0", 0)) is ApplyResult.DUPLICATE


def test_event_older_than_allowed_lateness_is_too_late() -> None:
    seq = UserSequence("u1", StateConfig(allowed_lateness_ms=HOUR_MS))
    now = 100 * HOUR_MS
    assert seq.apply(ev("new", now)) is ApplyResult.ADDED
    assert seq.apply(ev("edge", now - HOUR_MS)) is ApplyResult.ADDED
    assert seq.apply(ev("late", now - HOUR_MS - 1)) is ApplyResult.TOO_LATE
    assert ids(seq.behaviors()) == keys("edge", "new")
    # A too-late event is not remembered: nothing about it changed the state.
    assert seq.apply(ev("late", now)) is ApplyResult.ADDED


def test_unknown_scenario_and_foreign_user_are_rejected() -> None:
    seq = UserSequence("u1")
    with pytest.raises(InvalidInputError):
        seq.apply(ev("x", 1, "mail"))
    with pytest.raises(InvalidInputError):
        seq.apply(Behavior("x", "u2", "feed", 1, "click"))


def test_bump_version_increments_and_returns() -> None:
    seq = UserSequence("u1")
    assert seq.version == 0
    assert seq.bump_version() == 1
    assert seq.bump_version() == 2
    assert seq.version == 2


def test_arrays_are_chronological_with_scenario_indices() -> None:
    seq = UserSequence("u1")
    seq.apply(ev("a", 30, "ads"))
    seq.apply(ev("s", 10, "search", action="query", text="red shoes"))
    seq.apply(ev("f", 20, "feed", item_id="i9"))
    behaviors, scenario_idx, ts_ms = seq.arrays()
    assert ids(behaviors) == keys("s", "f", "a")
    assert scenario_idx.dtype == np.int64 and ts_ms.dtype == np.int64
    assert scenario_idx.tolist() == [1, 0, 2]
    assert ts_ms.tolist() == [10, 20, 30]


def test_empty_sequence_exports_empty_arrays() -> None:
    behaviors, scenario_idx, ts_ms = UserSequence("u1").arrays()
    assert behaviors == [] and scenario_idx.shape == (0,) and ts_ms.shape == (0,)
    columns = UserSequence("u1").columns()
    assert columns.ts_ms.shape == (0,) and columns.item_ids == [] and columns.action_idx.dtype == np.int64


def test_columns_hold_the_behaviors_in_the_same_order() -> None:
    seq = UserSequence("u1")
    for e in [ev("a", 30, "ads", item_id="ad1"), ev("s", 10, "search", action="query", text="red shoes"),
              ev("f", 20, item_id="i9", action="like"), ev("g", 20, "feed"), ev("t", 20, "search", item_id="i2")]:
        seq.apply(e)
    behaviors, scenario_idx, ts_ms = seq.arrays()
    columns = seq.columns()
    assert columns.scenario_idx.tolist() == scenario_idx.tolist() == [1, 0, 0, 1, 2]
    assert columns.ts_ms.tolist() == ts_ms.tolist()
    assert columns.item_ids == [b.item_id for b in behaviors] == [None, "i9", None, "i2", "ad1"]
    assert columns.texts == [b.text for b in behaviors]
    assert [ACTIONS[i] for i in columns.action_idx.tolist()] == [b.action for b in behaviors]


def test_a_sequence_reloaded_at_any_point_decides_exactly_as_one_never_stored() -> None:
    """A restarted worker must dedupe as the one that crashed: the id memory forgets in steps, and
    a reload must keep exactly what the live sequence kept."""
    rng = random.Random(7)
    config = StateConfig(buffer_capacity={"feed": 16, "search": 8, "ads": 8}, recent_ids_capacity=48,
                         allowed_lateness_ms=500)
    events = [ev(f"e{i}", 1000 + 10 * i + rng.randrange(-400, 400), rng.choice(SCENARIOS),
                 item_id=f"i{rng.randrange(30)}", action=rng.choice(["click", "like"])) for i in range(600)]
    events += [rng.choice(events) for _ in range(300)]  # producer re-sends, some long forgotten
    rng.shuffle(events)
    live, reloaded = UserSequence("u1", config), UserSequence("u1", config)
    for k, e in enumerate(events):
        assert live.apply(e) is reloaded.apply(e), (k, e)
        if rng.random() < 0.1:
            reloaded = UserSequence.from_bytes(reloaded.to_bytes(), config)
    assert reloaded.to_bytes() == live.to_bytes()


def test_a_lagging_scenario_topic_is_not_stale_behind_ids_another_scenario_pushed_out() -> None:
    """A catch-up reads feed far ahead of ads: feed ids push the older ones out of the memory,
    and the ads events that follow (never seen, older than that feed) must still be applied."""
    config = StateConfig(buffer_capacity={"feed": 4, "search": 4, "ads": 4}, recent_ids_capacity=16)
    seq = UserSequence("u1", config)
    for i in range(12):
        seq.apply(ev(f"a{i}", 1000 + i, "ads"), "ads/0", i)
    for i in range(64):
        seq.apply(ev(f"f{i}", 5000 + i, "feed"), "feed/0", i)
    assert seq._memory.forgotten_ms[SCENARIOS.index("ads")] == 1011  # every ads id was forgotten
    caught_up = [seq.apply(ev(f"a{i}", 1000 + i, "ads"), "ads/0", i) for i in range(12, 20)]
    assert caught_up == [ApplyResult.ADDED] * 8
    assert seq.apply(ev("a3", 1003, "ads"), "ads/0", 40) is ApplyResult.STALE  # a re-send of a forgotten one
    assert UserSequence.from_bytes(seq.to_bytes(), config).apply(ev("a5", 1005, "ads")) is ApplyResult.STALE


def test_an_unknown_action_or_a_dwell_time_outside_uint32_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="unknown action"):
        UserSequence("u1").apply(ev("e", 1, action="teleport"))
    with pytest.raises(InvalidInputError, match="dwell_ms"):
        UserSequence("u1").apply(ev("e", 1, dwell_ms=-1))


def test_a_full_user_is_compact_in_bytes_and_in_memory() -> None:
    """Ids are 8-byte digests and events flat columns: a full default user is a few tens of KB
    (format 2, one msgpack row per event with 36-character ids, was ~95 KB and ~500 KB cached)."""
    seq = UserSequence("u1")
    for i in range(2048):
        seq.apply(ev(f"{i:08d}-0000-4000-8000-000000000000", 1000 * i, SCENARIOS[i % 3], item_id=f"item-{i % 700}"))
    assert len(seq) == 512 and 1024 <= len(seq._memory) <= 1024 + 64  # forgotten in steps of 64
    assert len(seq.to_bytes()) < 40_000
    assert seq.approx_bytes() < 100_000


def test_bytes_round_trip_keeps_everything_including_dedupe_memory() -> None:
    config = StateConfig(buffer_capacity={"feed": 2, "search": 4, "ads": 4})
    seq = UserSequence("u1", config)
    seq.apply(ev("f1", 10, item_id="i1", dwell_ms=1500))
    seq.apply(ev("f2", 20, dwell_ms=86_400_000))  # a day: wider than 16 bits
    seq.apply(ev("f3", 20))
    seq.apply(ev("s1", 15, "search", action="query", text="tea pot ünïcode"))
    seq.apply(ev("a1", 25, "ads", action="impression", item_id="ad7"))
    seq.bump_version()
    restored = UserSequence.from_bytes(seq.to_bytes(), config)
    assert restored.user_id == "u1"
    assert restored.version == 1
    assert restored.watermark_ms == 25
    assert restored.behaviors() == seq.behaviors()
    assert restored.apply(ev("f1", 10, item_id="i1", dwell_ms=1500)) is ApplyResult.DUPLICATE  # evicted, remembered
    assert restored.to_bytes() == seq.to_bytes()


def test_loading_with_smaller_capacity_keeps_the_newest() -> None:
    seq = UserSequence("u1")
    for i in range(5):
        seq.apply(ev(f"e{i}", i))
    small = UserSequence.from_bytes(seq.to_bytes(), StateConfig(buffer_capacity={"feed": 2}))
    assert ids(small.behaviors()) == keys("e3", "e4")


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1garbage",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"f": 99, "u": "u1"}),
        msgpack.packb({"f": 1, "u": "u1"}),
        msgpack.packb({"f": 1, "u": "u1", "v": 0, "w": 0, "s": {"mail": []}, "r": []}),
        msgpack.packb({"f": 1, "u": "u1", "v": 0, "w": 0, "s": {"feed": [[1, 2]]}, "r": []}),
    ],
)
def test_bad_bytes_raise_state_format_error(data: bytes) -> None:
    with pytest.raises(StateFormatError):
        UserSequence.from_bytes(data)


def test_lateness_is_judged_per_scenario_so_topic_skew_in_a_replay_loses_nothing() -> None:
    seq = UserSequence("u1", StateConfig(allowed_lateness_ms=HOUR_MS))
    # The feed topic was consumed ten days ahead of the search topic (replay skew).
    assert seq.apply(ev("f", 240 * HOUR_MS, "feed")) is ApplyResult.ADDED
    assert seq.apply(ev("s1", 10 * HOUR_MS, "search")) is ApplyResult.ADDED
    assert seq.apply(ev("s2", 11 * HOUR_MS, "search")) is ApplyResult.ADDED
    # Inside one scenario the bound still holds, and it survives the round trip.
    restored = UserSequence.from_bytes(seq.to_bytes(), seq.config)
    assert restored.apply(ev("s0", 9 * HOUR_MS, "search")) is ApplyResult.TOO_LATE
    assert restored.watermark_ms == 240 * HOUR_MS


def test_format_2_state_is_read_and_dedupes_as_before() -> None:
    doc = {"f": 2, "u": "u1", "v": 5, "w": 30, "sw": {"feed": 30, "search": 25}, "fm": -1, "o": {"feed/0": 7},
           "s": {"feed": [["f1", 10, "click", "i1", None, 0], ["f3", 30, "like", "i3", None, 900]],
                 "search": [["s1", 25, "query", None, "tea", 0]]},
           "r": [["f1", 10, zlib.crc32(b"x")], ["f3", 30, 0], ["s1", 25, 0]]}
    seq = UserSequence.from_bytes(msgpack.packb(doc, use_bin_type=True))
    assert seq.version == 5 and ids(seq.behaviors()) == keys("f1", "s1", "f3")
    rows = [(b.item_id, b.text, b.dwell_ms) for b in seq.behaviors()]
    assert rows == [("i1", None, 0), (None, "tea", 0), ("i3", None, 900)]
    assert seq.apply(ev("x", 40), "feed/0", 7) is ApplyResult.ADDED  # newer than the feed watermark
    assert seq.apply(ev("f1", 10, item_id="i1")) is ApplyResult.CONFLICT  # fingerprint differs
    again = UserSequence.from_bytes(seq.to_bytes())
    assert again.behaviors() == seq.behaviors() and again.to_bytes() == seq.to_bytes()


Q = (0).to_bytes(8, "little")  # one int64 zero


@pytest.mark.parametrize("mutate", [
    lambda d: d.__setitem__("d", d["d"][:12]),  # a digest column of a partial value
    lambda d: d["t"].__setitem__(2, d["t"][2][:4]),  # fewer times than events
    lambda d: d.__setitem__("a", b"\x00"),  # fewer actions than events
    lambda d: d.__setitem__("a", b"\x63\x63"),  # an action index out of range
    lambda d: d["dw"].__setitem__(1, b"\x00"),  # a dwell column of a partial value
    lambda d: d["dw"].__setitem__(0, "Q"),  # an unknown dwell width
    lambda d: d.__setitem__("i", [1, 2]),  # an item that is not a string
    lambda d: d.__setitem__("t", [[20, 0, 0, 10], "q", Q + (-10).to_bytes(8, "little", signed=True) + Q + Q]),
    lambda d: d.__setitem__("n", [3, 0, 0, 1]),  # counts that do not match the columns
    lambda d: d.__setitem__("n", [2, 0, 0]),  # no count for the id memory
    lambda d: d.__setitem__("d", d["d"][:24] + d["d"][16:24]),  # one digest remembered twice
])
def test_malformed_columns_raise_state_format_error(mutate: object) -> None:
    seq = UserSequence("u1")
    seq.apply(ev("a", 10, item_id="i1"))
    seq.apply(ev("b", 20, item_id="i2"))
    doc = msgpack.unpackb(seq.to_bytes(), raw=False)
    mutate(doc)  # type: ignore[operator]
    with pytest.raises(StateFormatError):
        UserSequence.from_bytes(msgpack.packb(doc, use_bin_type=True))


def test_format_1_state_is_read_and_its_ids_still_dedupe() -> None:
    doc = {"f": 1, "u": "u1", "v": 3, "w": 20, "sw": {"feed": 20},
           "s": {"feed": [["f2", 20, "click", None, None, 0]]}, "r": ["f1", "f2"]}
    seq = UserSequence.from_bytes(msgpack.packb(doc, use_bin_type=True))
    assert seq.version == 3 and ids(seq.behaviors()) == keys("f2")
    assert seq.apply(ev("f1", 10, item_id="anything")) is ApplyResult.DUPLICATE  # content unknown
    assert seq.apply(ev("f3", 30)) is ApplyResult.ADDED
    assert UserSequence.from_bytes(seq.to_bytes()).apply(ev("f1", 10)) is ApplyResult.DUPLICATE
