"""Publisher, reader and sequence store against a real redis-server."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from state.errors import StoreUnavailableError
from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.reader import MISSING_AGE_MS, EmbeddingReader
from state.records import SCENARIOS, Behavior
from state.sequence import ApplyResult, UserSequence
from state.store import SequenceStore, StoredVersion
from streams.devservers.servers import free_port

pytestmark = pytest.mark.integration

Q, D = 4, 8
TTL_S = 3_600


def vectors_for(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((len(SCENARIOS), Q, D)).astype(np.float32)


def update_for(
    user_id: str, version: int, seed: int = 0, seq: UserSequence | None = None
) -> UserUpdate:
    seq = seq or UserSequence(user_id)
    return UserUpdate(
        user_id=user_id,
        version=version,
        watermark_ms=1_000 + version,
        computed_at_ms=2_000 + version,
        model_version=f"m{version}",
        scenarios=SCENARIOS,
        vectors=vectors_for(seed),
        sequence_state=seq.to_bytes(),
    )


def test_publish_then_read_round_trips_the_arrays(redis_client: redis.Redis, unique: str) -> None:
    keys = RedisKeys(unique)
    updates = [update_for("u1", 3, seed=1), update_for("u2", 5, seed=2)]
    assert RedisPublisher(redis_client, keys, TTL_S).publish(updates) == [True, True]
    reader = EmbeddingReader(redis_client, keys)
    for s, scenario in enumerate(SCENARIOS):
        result = reader.get(["u2", "nobody", "u1"], scenario)
        assert result.vectors.shape == (3, Q, D) and result.vectors.dtype == np.float32
        np.testing.assert_array_equal(result.vectors[0], updates[1].vectors[s])
        np.testing.assert_array_equal(result.vectors[2], updates[0].vectors[s])
        assert result.found.tolist() == [True, False, True]
        assert result.version.tolist() == [5, 0, 3]
        assert result.watermark_ms.tolist() == [1_005, 0, 1_003]
        assert result.computed_at_ms.tolist() == [2_005, 0, 2_003]
        assert result.model_version == ["m5", None, "m3"]
    assert result.age_ms(10_000).tolist() == [7_995, MISSING_AGE_MS, 7_997]


def test_reader_handles_missing_users_and_empty_batches(
    redis_client: redis.Redis, unique: str
) -> None:
    reader = EmbeddingReader(redis_client, RedisKeys(unique))
    result = reader.get(["x", "y"], "feed")
    assert result.found.tolist() == [False, False] and result.vectors.shape == (2, 0, 0)
    assert reader.get([], "ads").vectors.shape == (0, 0, 0)
    pinned = EmbeddingReader(redis_client, RedisKeys(unique), q=Q, d=D).get(["x"], "feed")
    assert pinned.vectors.shape == (1, Q, D) and not pinned.found.any()
    assert reader.get_user("x") is None


def test_older_or_equal_version_never_replaces_a_newer_one(
    redis_client: redis.Redis, unique: str
) -> None:
    keys = RedisKeys(unique)
    publisher = RedisPublisher(redis_client, keys, TTL_S)
    assert publisher.publish([update_for("u1", 7, seed=7)]) == [True]
    older_and_equal = [update_for("u1", 6, seed=6), update_for("u1", 7, seed=8)]
    assert publisher.publish(older_and_equal) == [False, False]
    stored = EmbeddingReader(redis_client, keys).get(["u1"], "search")
    assert stored.version.tolist() == [7]
    np.testing.assert_array_equal(stored.vectors[0], vectors_for(7)[1])
    newer = [update_for("u1", 8, seed=9), update_for("u1", 10, seed=10)]
    assert publisher.publish(newer) == [True, True]
    assert EmbeddingReader(redis_client, keys).get(["u1"], "feed").version.tolist() == [10]


def test_a_retried_write_is_recognised_as_its_own_not_refused(redis_client: redis.Redis, unique: str) -> None:
    """A publish whose reply was lost (socket timeout) is retried: Redis already holds it."""
    publisher = RedisPublisher(redis_client, RedisKeys(unique), TTL_S)
    update = update_for("u1", 4)
    assert publisher.publish([update]) == [True]
    assert publisher.publish([update]) == [True]  # the same write, again
    assert publisher.publish([update_for("u1", 4)]) == [False]  # another writer's version 4


def test_unnotified_versions_are_reported_on_load_until_marked(
    redis_client: redis.Redis, unique: str
) -> None:
    keys = RedisKeys(unique)
    publisher = RedisPublisher(redis_client, keys, TTL_S)
    seen: list[StoredVersion] = []
    store = SequenceStore(redis_client, keys, on_unnotified=seen.append)
    publisher.publish([update_for("u1", 2), update_for("u2", 7)])
    store.load_many(["u1", "u2", "nobody"])
    assert seen == [StoredVersion("u1", 2, 1_002, 2_002, "m2"), StoredVersion("u2", 7, 1_007, 2_007, "m7")]
    assert publisher.mark_notified([("u1", 2), ("u2", 6)]) == 1  # u2 moved on: not its version
    seen.clear()
    store.load_many(["u1", "u2"])
    assert [s.user_id for s in seen] == ["u2"]
    publisher.publish([update_for("u1", 3)])  # a new version is not notified yet
    seen.clear()
    store.load_many(["u1"])
    assert [(s.user_id, s.version) for s in seen] == [("u1", 3)]


def test_ttl_is_set_and_refreshed_on_write(redis_client: redis.Redis, unique: str) -> None:
    keys = RedisKeys(unique)
    RedisPublisher(redis_client, keys, ttl_s=TTL_S).publish([update_for("u1", 1)])
    assert 0 < redis_client.ttl(keys.user("u1")) <= TTL_S
    redis_client.expire(keys.user("u1"), 10)
    RedisPublisher(redis_client, keys, ttl_s=TTL_S).publish([update_for("u1", 2)])
    assert redis_client.ttl(keys.user("u1")) > 10
    embedding = EmbeddingReader(redis_client, keys).get_user("u1")
    assert embedding is not None and embedding.ttl_s is not None and 10 < embedding.ttl_s <= TTL_S


def test_sequence_state_persists_and_reloads(redis_client: redis.Redis, unique: str) -> None:
    keys = RedisKeys(unique)
    seq = UserSequence("u1")
    seq.apply(Behavior("e1", "u1", "feed", 1_000, "click", item_id="i1"))
    seq.apply(Behavior("e2", "u1", "search", 1_500, "query", text="green tea"))
    version = seq.bump_version()
    RedisPublisher(redis_client, keys, TTL_S).publish([update_for("u1", version, seq=seq)])
    loaded = SequenceStore(redis_client, keys).load_many(["u1", "ghost", "u1"])
    assert list(loaded) == ["u1"]
    restored = loaded["u1"]
    assert restored.behaviors() == seq.behaviors()
    assert restored.version == 1 and restored.watermark_ms == 1_500
    assert restored.apply(Behavior("e1", "u1", "feed", 1_000, "click", item_id="i1")) is ApplyResult.DUPLICATE
    assert SequenceStore(redis_client, keys).load_many([]) == {}


def test_loaded_version_is_never_below_the_stored_version(
    redis_client: redis.Redis, unique: str
) -> None:
    keys = RedisKeys(unique)
    stale_state = UserSequence("u1")  # serialised at version 0, published as version 4
    RedisPublisher(redis_client, keys, TTL_S).publish([update_for("u1", 4, seq=stale_state)])
    assert SequenceStore(redis_client, keys).load_many(["u1"])["u1"].version == 4


@pytest.mark.parametrize("bad_seq", [b"\xc1 not msgpack", msgpack.packb({"f": 99}), msgpack.packb({"f": 1, "s": 3})])
def test_an_undecodable_state_is_quarantined_and_the_user_restarts(
    redis_client: redis.Redis, unique: str, bad_seq: bytes
) -> None:
    keys = RedisKeys(unique)
    good = UserSequence("ok")
    good.apply(Behavior("e1", "ok", "feed", 1_000, "click", item_id="i1"))
    publisher = RedisPublisher(redis_client, keys, TTL_S)
    publisher.publish([update_for("bad", 7), update_for("ok", 1, seq=good)])
    redis_client.hset(keys.user("bad"), "seq", bad_seq)
    quarantined: list[str] = []
    loaded = SequenceStore(redis_client, keys, on_quarantine=quarantined.append).load_many(["bad", "ok"])
    assert quarantined == ["bad"]
    assert len(loaded["bad"]) == 0 and loaded["bad"].version == 7  # versions stay monotonic
    assert loaded["ok"].behaviors() == good.behaviors()
    kept = redis_client.hgetall(keys.quarantine("bad"))
    assert kept[b"seq"] == bad_seq and kept[b"ver"] == b"7" and kept[b"reason"]
    assert redis_client.hget(keys.user("bad"), "seq") is None
    assert publisher.publish([update_for("bad", 8)]) == [True]  # the user goes on
    assert SequenceStore(redis_client, keys).load_many(["bad"])["bad"].version == 8


def test_a_user_key_of_the_wrong_type_is_quarantined(redis_client: redis.Redis, unique: str) -> None:
    keys = RedisKeys(unique)
    redis_client.set(keys.user("u1"), b"not a hash")
    loaded = SequenceStore(redis_client, keys).load_many(["u1"])
    assert len(loaded["u1"]) == 0 and loaded["u1"].version == 0
    assert redis_client.exists(keys.user("u1")) == 0
    assert redis_client.hget(keys.quarantine("u1"), "dump")
    assert b"WRONGTYPE" in redis_client.hget(keys.quarantine("u1"), "reason")


def test_get_user_returns_every_scenario_and_metadata(
    redis_client: redis.Redis, unique: str
) -> None:
    keys = RedisKeys(unique)
    update = update_for("u1", 2, seed=3)
    RedisPublisher(redis_client, keys, TTL_S).publish([update])
    embedding = EmbeddingReader(redis_client, keys).get_user("u1")
    assert embedding is not None
    assert sorted(embedding.vectors) == sorted(SCENARIOS)
    for s, scenario in enumerate(SCENARIOS):
        np.testing.assert_array_equal(embedding.vectors[scenario], update.vectors[s])
    assert embedding.version == 2
    assert (embedding.watermark_ms, embedding.computed_at_ms) == (1_002, 2_002)
    assert embedding.model_version == "m2" and embedding.layout_version == 1
    assert embedding.sequence_state == update.sequence_state


def test_hash_matches_the_documented_layout(redis_client: redis.Redis, unique: str) -> None:
    """Reads the hash with raw commands and struct, as a non-Python consumer would."""
    keys = RedisKeys(unique)
    update = update_for("u1", 9, seed=4)
    RedisPublisher(redis_client, keys, TTL_S).publish([update])
    raw = redis_client.hgetall(f"{unique}:user:u1")
    assert set(raw) == {b"fmt", b"ver", b"wm", b"at", b"mv", b"q", b"d", b"seq",
                        b"wid", b"v:feed", b"v:search", b"v:ads"}
    assert (raw[b"fmt"], raw[b"ver"], raw[b"wm"], raw[b"at"]) == (b"1", b"9", b"1009", b"2009")
    assert (raw[b"q"], raw[b"d"], raw[b"mv"]) == (str(Q).encode(), str(D).encode(), b"m9")
    floats = struct.unpack(f"<{Q * D}f", raw[b"v:ads"])
    assert floats == tuple(update.vectors[2].reshape(-1).tolist())
    assert msgpack.unpackb(raw[b"seq"])["u"] == "u1"


def test_publisher_reloads_the_script_after_a_flush(
    redis_client: redis.Redis, unique: str
) -> None:
    keys = RedisKeys(unique)
    publisher = RedisPublisher(redis_client, keys, TTL_S)
    redis_client.script_flush()
    assert publisher.publish([update_for("a", 1), update_for("b", 1)]) == [True, True]
    assert publisher.publish([]) == []


def script_calls(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: stats.get(f"cmdstat_{name}", {}).get("calls", 0)
            for name in ("evalsha", "eval", "script|load", "script|exists")}


def test_a_warm_publish_sends_only_evalsha(redis_client: redis.Redis, unique: str) -> None:
    publisher = RedisPublisher(redis_client, RedisKeys(unique), TTL_S)
    publisher.publish([update_for("warm", 1)])
    before = script_calls(redis_client)
    assert publisher.publish([update_for(f"u{i}", 1) for i in range(5)]) == [True] * 5
    after = script_calls(redis_client)
    assert {k: after[k] - before[k] for k in after} == {
        "evalsha": 5, "eval": 0, "script|load": 0, "script|exists": 0
    }


def test_unreachable_redis_raises_store_unavailable(unique: str) -> None:
    no_retry = Retry(NoBackoff(), 0)
    client = redis.Redis(
        port=free_port(), socket_connect_timeout=1.0, socket_timeout=1.0, retry=no_retry
    )
    keys = RedisKeys(unique)
    with pytest.raises(StoreUnavailableError):
        RedisPublisher(client, keys, TTL_S).publish([update_for("u1", 1)])
    with pytest.raises(StoreUnavailableError):
        EmbeddingReader(client, keys).get(["u1"], "feed")
    with pytest.raises(StoreUnavailableError):
        SequenceStore(client, keys).load_many(["u1"])
