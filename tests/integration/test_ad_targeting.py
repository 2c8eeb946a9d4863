"""Ad-targeting reads against a real redis-server and a tiny exported model: ``ItemTargeting.top_k``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import redis

from encoders.errors import DataError
from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.records import SCENARIOS
from streams.devservers.servers import Server
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


def test_top_k_ranks_the_scenarios_items_by_the_best_query_vector(
    redis_client: redis.Redis, unique: str, index: ItemIndex
) -> None:
    keys = RedisKeys(unique)
    ads, feed = ids_of(index, "ad_"), [i for i in index.ids if index.item_scenarios(i) == ("feed",)]
    assert ads and feed and index.knows_scenarios
    ad, feed_item = ads[0], feed[0]
    queries = np.stack([index.vector(ad), index.vector(feed_item)])  # q0: an ad, q1: a feed item
    store(redis_client, keys, "alice", index.model_version, ads=queries, feed=queries[::-1])
    targeting = ItemTargeting(redis_client, keys, index)

    top = targeting.top_k(["alice"], "ads", k=len(index))
    ranked = top.ranked["alice"]
    assert sorted(i for i, _ in ranked) == sorted(ads)  # the feed item (score 1.0) is no ad candidate
    assert dict(ranked)[ad] == pytest.approx(1.0, abs=1e-5) == ranked[0][1]
    truth = {i: float(np.max(queries @ index.vector(i))) for i in ads}  # max over the query vectors
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
    queries = np.stack([index.vector(feed_item), index.vector(feed_item)])
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


def unit_rows(rng: np.random.Generator, q: int, d: int) -> np.ndarray:
    rows = rng.standard_normal((q, d)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_audience_ranks_every_stored_user_by_their_best_query_for_one_item(
    redis_client: redis.Redis, unique: str, index: ItemIndex
) -> None:
    keys = RedisKeys(unique)
    ad = ids_of(index, "ad_")[0]
    item = index.vector(ad)
    rng = np.random.default_rng(1)
    truth = {}
    for n in range(30):
        queries = unit_rows(rng, 2, index.dim)
        store(redis_client, keys, f"u{n:02d}", index.model_version, ads=queries)
        truth[f"u{n:02d}"] = float(np.max(queries @ item))
    store(redis_client, keys, "fan", index.model_version, ads=np.stack([-item, item]))  # q1 is the ad
    truth["fan"] = float(item @ item)
    store(redis_client, keys, "old", "previous-model", ads=np.stack([item, item]))
    targeting = ItemTargeting(redis_client, keys, index)

    every = targeting.audience(ad, "ads", k=5, batch_users=7)  # a SCAN walk, read 7 users at a time
    expected = sorted(truth, key=lambda u: -truth[u])[:5]
    assert [u for u, _ in every.ranked] == expected and expected[0] == "fan"
    for user, score in every.ranked:
        assert score == pytest.approx(truth[user], abs=1e-5)
    assert (every.read, every.missing, every.other_model) == (32, 0, 1)  # "old": another model, not scored

    given = targeting.audience(ad, "ads", ["u03", "ghost", "u03", "old", "u07"], k=10)
    assert [u for u, _ in given.ranked] == sorted(["u03", "u07"], key=lambda u: -truth[u])
    assert (given.read, given.missing, given.other_model) == (4, 1, 1)  # u03 once; ghost has no key
    assert targeting.audience(ad, "ads", [], k=3).ranked == []
    with pytest.raises(DataError, match="not in the model's vocabulary"):
        targeting.audience("never-seen", "ads")
    with pytest.raises(DataError, match="unknown scenario"):
        targeting.audience(ad, "email")


def test_the_audience_command_prints_the_best_users_and_refuses_what_it_cannot_score(
    redis_client: redis.Redis, redis_server: Server, unique: str, index: ItemIndex, tiny_model_dir: Path,
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    from streams.cli.main import main

    keys = RedisKeys(unique)
    ad = ids_of(index, "ad_")[0]
    item = index.vector(ad)
    store(redis_client, keys, "close", index.model_version, ads=np.stack([item, -item]))
    store(redis_client, keys, "far", index.model_version, ads=np.stack([-item, -item]))
    near = item + 0.5 * unit_rows(np.random.default_rng(2), 1, index.dim)[0]
    store(redis_client, keys, "near", index.model_version, ads=np.stack([near / np.linalg.norm(near), -item]))
    common = ["--redis-url", redis_server.url, "--key-prefix", unique, "--model-dir", str(tiny_model_dir)]

    assert main(["audience", "--item", ad, "--scenario", "ads", "--top", "2", "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [r["user_id"] for r in report["ranked"]] == ["close", "near"]
    assert (report["item_id"], report["read"], report["missing"]) == (ad, 3, 0)

    users = tmp_path / "users.txt"
    users.write_text("far\n\nghost\n")
    assert main(["audience", "--item", ad, "--scenario", "ads", "--users-file", str(users), *common]) == 0
    out = capsys.readouterr().out
    assert "     1  far  " in out and "read 2 users: 1 without ads vectors" in out

    assert main(["audience", "--text", "solar panels", "--scenario", "ads", *common]) == 1
    assert "no new-item graph" in capsys.readouterr().err  # the tiny model has no item texts
    assert main(["audience", "--item", "never-seen", "--scenario", "ads", *common]) == 1
    assert main(["audience", "--item", ad, "--scenario", "ads", "far", "--users-file", str(users), *common]) == 2
    assert main(["audience", "--item", ad, "--scenario", "ads", "--users-file", str(tmp_path / "nope"), *common]) == 2
    assert "no such file" in capsys.readouterr().err
