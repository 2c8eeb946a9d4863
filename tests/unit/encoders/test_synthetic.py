"""Properties of the synthetic event generator and the wire-to-arrays mapping."""

from __future__ import annotations

from collections import Counter

import numpy as np

from encoders.data.synthetic import TOPICS, generate_events, item_probabilities, item_titles
from encoders.data.wire import histories_from_wire

FEED_ACTIONS = {"impression", "click", "like", "collect", "comment", "share", "follow", "hide"}


def test_events_are_time_ordered_unique_and_match_the_wire_contract() -> None:
    events = list(generate_events(30, seed=3, mean_events=40))
    assert [w["ts_ms"] for _, w in events] == sorted(w["ts_ms"] for _, w in events)
    assert len({w["event_id"] for _, w in events}) == len(events)
    counts = Counter(s for s, _ in events)
    assert counts["feed"] > counts["search"] > counts["ads"] > 0
    for scenario, w in events:
        assert isinstance(w["user_id"], str) and isinstance(w["ts_ms"], int)
        if scenario == "feed":
            assert w["action"] in FEED_ACTIONS and w["dwell_ms"] >= 0
        elif scenario == "search":
            assert all(any(word in ws for ws in TOPICS.values()) for word in w["query"].split())
            assert (w["clicked_item_id"] is None) == (w["position"] is None)
        else:
            assert w["action"] in {"impression", "click", "conversion"} and w["creative_id"]


def test_generator_is_deterministic_per_seed() -> None:
    assert list(generate_events(5, seed=1)) == list(generate_events(5, seed=1))
    assert list(generate_events(5, seed=1)) != list(generate_events(5, seed=2))


def test_event_ids_depend_on_the_seed_so_another_seed_is_not_deduplicated() -> None:
    ids = {seed: [w["event_id"] for _, w in generate_events(3, seed=seed, mean_events=10)] for seed in (5, 6)}
    assert ids[5] == [w["event_id"] for _, w in generate_events(3, seed=5, mean_events=10)]
    assert not set(ids[5]) & set(ids[6])


def test_interests_are_shared_across_scenarios() -> None:
    topics: dict[str, dict[str, set[str]]] = {}
    for scenario, w in generate_events(20, seed=0):
        item = w.get("item_id") or w.get("ad_id") or w.get("clicked_item_id")
        if item:
            topics.setdefault(w["user_id"], {}).setdefault(scenario, set()).add(item.split("_")[1])
    shared = [len(t["feed"] & t["ads"]) for t in topics.values() if "ads" in t]
    assert sum(s > 0 for s in shared) >= 0.8 * len(shared)


def test_histories_and_titles_cover_the_events() -> None:
    histories = histories_from_wire(generate_events(10, seed=0, mean_events=20))
    assert len(histories) == 10 and all((h.ts_ms[:-1] <= h.ts_ms[1:]).all() for h in histories)
    titles = item_titles(0)
    assert all(i in titles for h in histories for i in h.item_ids if i)


def test_item_probabilities_are_the_generators_own() -> None:
    """Every generated item is possible under its user's probabilities at its time (the emerging
    interest only once it shows), each sums to one, and a user's events are far likelier under
    their own probabilities than under another user's."""
    own, other = [], []
    for scenario, w in generate_events(40, seed=2, mean_events=60):
        item = w.get("item_id") or w.get("clicked_item_id") or w.get("ad_id")
        if item is None:
            continue
        probabilities = item_probabilities(w["user_id"], w["ts_ms"], scenario, seed=2)
        assert abs(sum(probabilities.values()) - 1) < 1e-9
        assert probabilities.get(item, 0.0) > 0, (w["user_id"], scenario, item)
        own.append(np.log(probabilities[item]))
        neighbour = f"u{(int(w['user_id'][1:]) + 1) % 40:05d}"
        other.append(np.log(item_probabilities(neighbour, w["ts_ms"], scenario, seed=2).get(item, 1e-9)))
    assert len(own) > 1000 and np.mean(own) > np.mean(other) + 2
