"""Synthetic multi-scenario events with planted cross-scenario interest structure."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from encoders.dataset import EventDataset

__all__ = [
    "TOPICS", "ad_ids", "feed_item_ids", "generate_events", "item_probabilities", "item_titles", "planted_items",
    "synthetic_dataset",
]

TOPICS: dict[str, tuple[str, ...]] = {
    "solar": ("solar", "panel", "installation", "inverter", "battery", "roof"),
    "hiking": ("hiking", "trail", "boots", "backpack", "mountain", "tent"),
    "coffee": ("coffee", "espresso", "grinder", "beans", "latte", "roast"),
    "guitar": ("guitar", "chords", "amplifier", "strings", "pedal", "acoustic"),
    "baking": ("baking", "sourdough", "oven", "flour", "pastry", "bread"),
    "cycling": ("cycling", "bike", "helmet", "gravel", "saddle", "wheels"),
    "gaming": ("gaming", "console", "controller", "headset", "rpg", "speedrun"),
    "garden": ("garden", "tomato", "compost", "seeds", "soil", "pruning"),
    "skincare": ("skincare", "serum", "sunscreen", "moisturizer", "retinol", "cleanser"),
    "finance": ("finance", "index", "fund", "budget", "savings", "dividend"),
    "travel": ("travel", "flight", "hostel", "itinerary", "visa", "beach"),
    "fitness": ("fitness", "squat", "protein", "kettlebell", "yoga", "running"),
}
_FILLER = ("best", "guide", "review", "cheap", "pro", "new", "top", "how to", "beginner", "2024")
_FEED_ACTIONS = ("impression", "click", "like", "collect", "comment", "share", "follow", "hide")
_FEED_P = (0.45, 0.25, 0.1, 0.06, 0.04, 0.03, 0.02, 0.05)
_ADS_ACTIONS = ("impression", "click", "conversion")
_ADS_P = (0.75, 0.2, 0.05)
ITEMS_PER_TOPIC = 60
ADS_PER_TOPIC = 12
_EMERGING_SHARE = 0.5  # of a user's events once the emerging interest shows in their scenario
_SECOND_CORE_SHARE = 0.35  # of the events from the core interests
_START_MS, _SPAN_MS = 1_700_000_000_000, 30 * 86_400_000


def feed_item_ids() -> list[str]:
    """All feed/search item ids, ``it_<topic>_<k>``."""
    return [f"it_{t}_{k}" for t in TOPICS for k in range(ITEMS_PER_TOPIC)]


def ad_ids() -> list[str]:
    """All ad ids, ``ad_<topic>_<k>``."""
    return [f"ad_{t}_{k}" for t in TOPICS for k in range(ADS_PER_TOPIC)]


def item_titles(seed: int = 0) -> dict[str, str]:
    """A short title of topic words for every item and ad (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    titles = {}
    for item in feed_item_ids() + ad_ids():
        topic = item.split("_")[1]
        words = rng.choice(TOPICS[topic], size=2, replace=False).tolist()
        titles[item] = f"{rng.choice(_FILLER)} {' '.join(words)}"
    return titles


def _zipf(n: int, exponent: float = 1.1) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** exponent
    return p / p.sum()


@dataclass(frozen=True)
class _Plan:
    """A user's planted interests: two core topics and an emerging one that shows in search at
    ``t_new`` and in feed and ads ``lag_ms`` later."""

    core: tuple[str, str]
    emerging: str
    t_new: int
    lag_ms: int

    def shows_emerging(self, ts_ms: int, scenario: str) -> bool:
        return ts_ms >= self.t_new + (0 if scenario == "search" else self.lag_ms)

    def topic_shares(self, ts_ms: int, scenario: str) -> dict[str, float]:
        """The probability of each topic for an event in ``scenario`` at ``ts_ms``."""
        emerging = _EMERGING_SHARE if self.shows_emerging(ts_ms, scenario) else 0.0
        return {self.emerging: emerging, self.core[0]: (1 - emerging) * (1 - _SECOND_CORE_SHARE),
                self.core[1]: (1 - emerging) * _SECOND_CORE_SHARE}


def _plan(rng: np.random.Generator, start_ms: int, span_ms: int) -> _Plan:
    topics = list(TOPICS)
    chosen = rng.choice(len(topics), size=3, replace=False)
    t_new = start_ms + int(span_ms * rng.uniform(0.3, 0.7))
    return _Plan((topics[chosen[0]], topics[chosen[1]]), topics[chosen[2]], t_new, int(span_ms * 0.15))


def _user_events(
    user: int, seed: int, start_ms: int, span_ms: int, mean_events: int
) -> list[tuple[int, str, dict]]:
    """One user's events: core interests everywhere, an emerging interest that shows in
    search first and reaches feed and ads only later. Event ids name the seed, so another
    seed's events for the same users are new events, not duplicates."""
    rng = np.random.default_rng([seed, user])
    plan = _plan(rng, start_ms, span_ms)
    n = max(4, int(rng.poisson(mean_events)))
    times = np.sort(rng.integers(start_ms, start_ms + span_ms, size=n))
    scen = rng.choice(3, size=n, p=(0.75, 0.17, 0.08))
    item_p, ad_p = _zipf(ITEMS_PER_TOPIC), _zipf(ADS_PER_TOPIC)
    uid = f"u{user:05d}"
    out = []
    for k, (ts, s) in enumerate(zip(times.tolist(), scen.tolist(), strict=True)):
        shown = plan.shows_emerging(int(ts), ("feed", "search", "ads")[s])
        topic = plan.emerging if shown and rng.random() < _EMERGING_SHARE \
            else plan.core[int(rng.random() < _SECOND_CORE_SHARE)]
        base = {"event_id": f"{uid}-s{seed}-{k}", "user_id": uid, "ts_ms": int(ts)}
        if s == 0:
            action = str(rng.choice(_FEED_ACTIONS, p=_FEED_P))
            item = f"it_{topic}_{rng.choice(ITEMS_PER_TOPIC, p=item_p)}"
            dwell = 0 if action in ("impression", "hide") else int(rng.exponential(8000))
            out.append((ts, "feed", base | {"item_id": item, "action": action, "dwell_ms": dwell}))
        elif s == 1:
            words = rng.choice(TOPICS[topic], size=int(rng.integers(2, 4)), replace=False)
            clicked = rng.random() < 0.6
            item = f"it_{topic}_{rng.choice(ITEMS_PER_TOPIC, p=item_p)}" if clicked else None
            pos = int(rng.integers(0, 10)) if clicked else None
            out.append((ts, "search", base | {"query": " ".join(words), "clicked_item_id": item, "position": pos}))
        else:
            ad = int(rng.choice(ADS_PER_TOPIC, p=ad_p))
            out.append(
                (
                    ts,
                    "ads",
                    base
                    | {
                        "ad_id": f"ad_{topic}_{ad}",
                        "creative_id": f"cr_{topic}_{ad}_{int(rng.integers(0, 3))}",
                        "action": str(rng.choice(_ADS_ACTIONS, p=_ADS_P)),
                    },
                )
            )
    return out


def generate_events(
    n_users: int,
    seed: int,
    start_ms: int = _START_MS,
    span_ms: int = _SPAN_MS,
    mean_events: int = 100,
) -> Iterator[tuple[str, dict]]:
    """Yield ``(scenario, wire_dict)`` for all users, merged in time order."""
    streams = []
    for user in range(n_users):
        streams.append(_user_events(user, seed, start_ms, span_ms, mean_events))
    for _, scenario, wire in heapq.merge(*streams, key=lambda e: (e[0], e[2]["event_id"])):
        yield scenario, wire


def synthetic_dataset(n_users: int, seed: int, mean_events: int = 100) -> EventDataset:
    """Training data of ``n_users`` synthetic users; every feed item and ad is in the vocabulary."""
    from encoders.data.wire import histories_from_wire

    histories = histories_from_wire(generate_events(n_users, seed=seed, mean_events=mean_events))
    return EventDataset.build(histories, extra_items=feed_item_ids() + ad_ids())


def planted_items(user_id: str, seed: int = 0) -> set[str]:
    """Every feed item and ad of the user's planted topics (two core + the emerging one): the
    ground truth a personalized model's top items should come from."""
    plan = _plan(np.random.default_rng([seed, int(user_id.removeprefix("u"))]), _START_MS, _SPAN_MS)
    return {item for topic in (*plan.core, plan.emerging)
            for item in (*(f"it_{topic}_{k}" for k in range(ITEMS_PER_TOPIC)),
                         *(f"ad_{topic}_{k}" for k in range(ADS_PER_TOPIC)))}


def item_probabilities(user_id: str, ts_ms: int, scenario: str, seed: int = 0) -> dict[str, float]:
    """The generator's own probability of each item (ad in ``"ads"``) being the item of the
    user's event in ``scenario`` at ``ts_ms`` (``generate_events`` with its default span): what no
    model can beat, given the planted interests (the evaluation's Bayes ceiling)."""
    plan = _plan(np.random.default_rng([seed, int(user_id.removeprefix("u"))]), _START_MS, _SPAN_MS)
    prefix, per_topic = ("ad", ADS_PER_TOPIC) if scenario == "ads" else ("it", ITEMS_PER_TOPIC)
    popularity = _zipf(per_topic)
    return {f"{prefix}_{topic}_{k}": share * float(popularity[k])
            for topic, share in plan.topic_shares(ts_ms, scenario).items() if share > 0 for k in range(per_topic)}
