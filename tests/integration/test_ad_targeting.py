"""Ad-targeting reads against a real redis-server and a tiny exported model: ``ItemTargeting.top_k``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import redis

from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.records import SCENARIOS
from streams.integrations.targeting import ItemTargeting, rank_users

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def index(tiny_model_dir: Path) -> ItemIndex:
    return ItemIndex.load(tiny_model_dir)


def store(client: redis.Redis, keys: RedisKeys, user_id: str, model_version: str, **queries: np.ndarray) -> None:
    """Publish ``user_id`` with the given ``[Q, D]`` query vectors per scenario (others random)."""
    q, d = next(iter(queries.values())).shape
    rng = np.random.default_rng(0)
    vectors = np.stack([queries.get(s, rng.standard_normal((q, d))) for s in SCENARIOS]).astype(np.float32)
    update = UserUpdate(user_id, 1, 1_000, 2_000, model_version, SCENARIOS, vectors, b"")
    assert RedisPublisher(client, keys).publish([update]) == [True]


def ids_of(index: ItemIndex, prefix: str) -> list[str]:
    return [i for i in index.ids if i.startswith(prefix)]


def vector(index: ItemIndex, item_id: str) -> np.ndarray:
    return index.vectors[index.ids.index(item_id)]


def test_top_k_ranks_the_scenarios_items_by_the_best_query_vector(
    redis_client: redis.Redis, unique: str, index: ItemIndex
) -> None:
    keys = RedisKeys(unique)
    ads, feed = ids_of(index, "ad_"), [i for i in index.ids if index.item_scenarios(i) == ("feed",)]
    assert ads and feed and index.knows_scenarios
    ad, feed_item = ads[0], feed[0]
    queries = np.stack([vector(index, ad), vector(index, feed_item)])  # q0: an ad, q1: a feed item
    store(redis_client, keys, "alice", index.model_version, ads=queries, feed=queries[::-1])
    targeting = ItemTargeting(redis_client, keys, index)

    top = targeting.top_k(["alice"], "ads", k=len(index))
    ranked = top.ranked["alice"]
    assert sorted(i for i, _ in ranked) == sorted(ads)  # the feed item (score 1.0) is no ad candidate
    assert dict(ranked)[ad] == pytest.approx(1.0, abs=1e-5) == ranked[0][1]
    truth = {i: float(np.max(queries @ vector(index, i))) for i in ads}  # max over the query vectors
    assert [s for _, s in ranked] == sorted([s for _, s in ranked], reverse=True)
    for item, score in ranked:
        assert score == pytest.approx(truth[item], abs=1e-5)
    assert (top.missing, top.other_model, top.unknown_candidates) == ([], [], [])

    top_feed = targeting.top_k(["alice"], "feed", k=3).ranked["alice"]
    assert top_feed[0][1] == pytest.approx(1.0, abs=1e-5) and len(top_feed) == 3
    assert not any(i.startswith("ad_") for i, _ in top_feed)


def test_explicit_candidates_replace_the_scenarios_items_and_unknown_ones_are_reported(
    redis_client: redis.Redis, unique: str, index: ItemIndex
) -> None:
    keys = RedisKeys(unique)
    feed_item, other_ad = ids_of(index, "it_")[0], ids_of(index, "ad_")[1]
    queries = np.stack([vector(index, feed_item), vector(index, feed_item)])
    store(redis_client, keys, "bob", index.model_version, ads=queries)
    top = ItemTargeting(redis_client, keys, index).top_k(["bob"], "ads", [other_ad, "never-seen", feed_item], k=5)
    ranked = top.ranked["bob"]
    assert sorted(i for i, _ in ranked) == sorted([feed_item, other_ad])  # a feed item, asked for
    assert dict(ranked)[feed_item] == pytest.approx(1.0, abs=1e-5) and ranked[0][1] >= ranked[1][1]
    assert top.unknown_candidates == ["never-seen"]


def test_users_without_vectors_or_from_another_model_are_reported_not_dropped(
    redis_client: redis.Redis, unique: str, index: ItemIndex
) -> None:
    keys = RedisKeys(unique)
    unit = np.eye(2, index.dim, dtype=np.float32)
    store(redis_client, keys, "carol", index.model_version, ads=unit)
    store(redis_client, keys, "old", "previous-model", ads=unit)
    store(redis_client, keys, "wide", index.model_version, ads=np.eye(2, index.dim + 8, dtype=np.float32))
    top = ItemTargeting(redis_client, keys, index).top_k(["carol", "ghost", "old", "wide", "carol"], "ads", k=2)
    assert list(top.ranked) == ["carol"] and len(top.ranked["carol"]) == 2
    assert top.missing == ["ghost", "wide"] and top.other_model == ["old"]
    assert ItemTargeting(redis_client, keys, index).top_k([], "ads").ranked == {}
    wide = rank_users(index, "ads", ["x"], np.zeros((1, 2, index.dim + 1)), [index.model_version])
    assert wide.ranked == {} and wide.other_model == ["x"]  # another D: another model
