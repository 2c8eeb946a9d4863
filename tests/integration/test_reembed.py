"""``unistate reembed`` against a real Tansu broker and a real redis-server: every stored user moves
to a second exported model, versions grow, notifications carry the new model version, an
interrupted run resumes from its checkpoint, a dry run writes nothing, and a write by a "live
worker" between load and publish is refused and retried."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from fixtures.pipeline import build_tiny_artifact, read_topic

from encoders.serving import InterestEncoder
from state.keys import RedisKeys
from state.mixing import MixingPolicy
from state.publisher import RedisPublisher
from state.records import SCENARIOS, Behavior
from state.scan import UserScanner
from state.sequence import UserSequence
from state.store import SequenceStore
from streams.bulk_publish import BulkPublisher
from streams.cli import main
from streams.devservers.servers import Server, start_redis
from streams.notifications import decode_notification
from streams.notifier import Notifier
from streams.producer import KafkaProducer
from streams.recompute import Recomputer
from streams.reembed import Reembedder
from streams.retry import RetryPolicy
from streams.settings import KafkaSettings
from streams.topics import TopicNames

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BASE_MS = 1_718_000_000_000
CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """Another tiny model (other training data): a new model version to upgrade to."""
    path = build_tiny_artifact(tmp_path_factory.mktemp("model2"), seed=7)
    assert _version(path) != _version(tiny_model_dir)
    return path


def _version(model_dir: Path) -> str:
    return json.loads((model_dir / "manifest.json").read_text())["model_version"]


def _behaviors(user_id: str) -> list[Behavior]:
    return [Behavior(f"{user_id}-f", user_id, "feed", BASE_MS, "click", item_id="it1"),
            Behavior(f"{user_id}-s", user_id, "search", BASE_MS + 1, "query", text="solar panels"),
            Behavior(f"{user_id}-a", user_id, "ads", BASE_MS + 2, "impression", item_id="ad1")]


def seed_users(client: redis.Redis, keys: RedisKeys, model_dir: Path, n: int) -> list[str]:
    """``n`` users with three events each, published with the model of ``model_dir`` (version 1)."""
    recomputer = Recomputer(InterestEncoder.load(model_dir, providers=CPU), MixingPolicy())
    sequences = []
    for i in range(n):
        seq = UserSequence(f"u{i:03d}")
        for behavior in _behaviors(seq.user_id):
            seq.apply(behavior)
        sequences.append(seq)
    assert all(RedisPublisher(client, keys).publish(recomputer.updates(sequences)))
    return [s.user_id for s in sequences]


def stored(client: redis.Redis, keys: RedisKeys, users: list[str]) -> dict[str, dict[bytes, bytes]]:
    return {u: client.hgetall(keys.user(u)) for u in users}


def _common(kafka_broker: Server, redis_server: Server, prefix: str) -> list[str]:
    return ["--bootstrap-servers", kafka_broker.bootstrap, "--topic-prefix", f"{prefix}.",
            "--redis-url", redis_server.url, "--key-prefix", prefix]


@pytest.fixture()
def common(kafka_broker: Server, redis_server: Server, unique: str) -> list[str]:
    args = _common(kafka_broker, redis_server, unique)
    assert main(["topics", "create", "--partitions", "1", *args]) == 0
    return args


def test_reembed_moves_every_user_to_the_new_model_and_notifies_it(
    kafka_broker, redis_client, unique, tiny_model_dir, second_model_dir, common, capsys
) -> None:
    keys, new_version = RedisKeys(unique), _version(second_model_dir)
    users = seed_users(redis_client, keys, tiny_model_dir, 12)
    before = stored(redis_client, keys, users)
    redis_client.hset(keys.user("junk"), mapping={"ver": 3, "mv": "old", "seq": b"\xc1garbage"})

    assert main(["reembed", *common, "--model-dir", str(second_model_dir), "--batch-size", "5",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "scanned 13, re-embedded 12, already current 0, no state 1 (quarantined 1), errors 0" in out
    assert redis_client.hget(keys.quarantine("junk"), "seq") == b"\xc1garbage"

    after = stored(redis_client, keys, users)
    sequences = SequenceStore(redis_client, keys).load_many(users)
    for user in users:
        assert after[user][b"mv"].decode() == new_version
        assert int(after[user][b"ver"]) == int(before[user][b"ver"]) + 1
        assert after[user][b"nv"] == after[user][b"ver"]  # notified, and the acknowledgement recorded
        assert after[user][b"v:feed"] != before[user][b"v:feed"]
        assert sequences[user].counts() == {s: 1 for s in SCENARIOS}  # the events are kept
    notes = [decode_notification(m.value()) for m in
             read_topic(kafka_broker.bootstrap, TopicNames.from_prefix(f"{unique}.").updates, 1, 12)]
    assert sorted(n.user_id for n in notes) == users
    assert {n.model_version for n in notes} == {new_version}
    assert all(n.version == int(after[n.user_id][b"ver"]) for n in notes)

    assert main(["reembed", *common, "--model-dir", str(second_model_dir), "--no-progress"]) == 0
    assert "scanned 13, re-embedded 0, already current 12, no state 1 (quarantined 0)" in capsys.readouterr().out
    assert stored(redis_client, keys, users) == after  # a second run writes nothing


def test_dry_run_counts_and_changes_nothing(
    redis_server, redis_client, unique, tiny_model_dir, second_model_dir, tmp_path, capsys
) -> None:
    keys = RedisKeys(unique)
    users = seed_users(redis_client, keys, tiny_model_dir, 7)
    before = stored(redis_client, keys, users)
    checkpoint = tmp_path / "ckpt.json"
    # No broker: a dry run needs none.
    assert main(["reembed", "--bootstrap-servers", "127.0.0.1:1", "--redis-url", redis_server.url,
                 "--key-prefix", unique, "--model-dir", str(second_model_dir), "--dry-run", "--no-progress",
                 "--checkpoint", str(checkpoint)]) == 0
    assert "7 users scanned, 7 would be re-embedded" in capsys.readouterr().out
    assert stored(redis_client, keys, users) == before
    assert not checkpoint.exists()
    assert main(["reembed", "--redis-url", redis_server.url, "--key-prefix", unique, "--model-dir",
                 str(tiny_model_dir), "--dry-run", "--no-progress"]) == 0
    assert "0 would be re-embedded" in capsys.readouterr().out


def test_an_interrupted_run_resumes_from_its_checkpoint(
    redis_client, unique, tiny_model_dir, second_model_dir, common, tmp_path, capsys
) -> None:
    keys, new_version = RedisKeys(unique), _version(second_model_dir)
    users = seed_users(redis_client, keys, tiny_model_dir, 20)
    checkpoint = tmp_path / "reembed.json"
    run = ["reembed", *common, "--model-dir", str(second_model_dir), "--batch-size", "2", "--no-progress",
           "--checkpoint", str(checkpoint)]

    assert main([*run, "--limit", "5"]) == 0  # stops after a few pages, like an interrupted run
    assert "stopped: continue with --resume" in capsys.readouterr().out
    saved = json.loads(checkpoint.read_text())
    assert not saved["complete"] and saved["cursors"]
    done = [u for u in users if redis_client.hget(keys.user(u), "mv").decode() == new_version]
    assert 5 <= len(done) < len(users) and saved["counts"]["reembedded"] == len(done)

    assert main([*run, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "complete" in out and "re-embedded 20," in out  # counts include the first run
    for user in users:
        assert redis_client.hget(keys.user(user), "mv").decode() == new_version
        assert redis_client.hget(keys.user(user), "ver") == b"2"  # each user re-embedded exactly once
    assert json.loads(checkpoint.read_text())["complete"]
    assert main([*run, "--resume"]) == 0  # a complete checkpoint: nothing left to do
    assert "complete" in capsys.readouterr().out


class _WorkerRace:
    """The new model's encoder, but the first call first lets an old-model "worker" write ``user``
    (a newer version, as a live worker with a new event would): the re-embed's write is refused."""

    def __init__(self, new: InterestEncoder, old_write: Callable[[], None]) -> None:
        self._new, self._old_write, self.raced = new, old_write, False

    def __getattr__(self, name: str) -> object:
        return getattr(self._new, name)

    def encode(self, sequences: list) -> object:
        if not self.raced:
            self.raced = True
            self._old_write()
        return self._new.encode(sequences)


def test_a_write_by_a_live_worker_meanwhile_is_refused_then_retried(
    kafka_broker, redis_client, unique, tiny_model_dir, second_model_dir, common
) -> None:
    keys, policy = RedisKeys(unique), MixingPolicy()
    users = seed_users(redis_client, keys, tiny_model_dir, 3)
    store, publisher = SequenceStore(redis_client, keys), RedisPublisher(redis_client, keys)
    old = Recomputer(InterestEncoder.load(tiny_model_dir, providers=CPU), policy)

    def worker_writes_a_new_event() -> None:
        seq = store.load_many(["u001"])["u001"]
        seq.apply(Behavior("u001-new", "u001", "feed", BASE_MS + 10, "like", item_id="it2"))
        assert publisher.publish(old.updates([seq])) == [True]

    encoder = _WorkerRace(InterestEncoder.load(second_model_dir, providers=CPU), worker_writes_a_new_event)
    kafka = KafkaSettings(bootstrap_servers=kafka_broker.bootstrap)
    retry = RetryPolicy()
    with KafkaProducer(kafka.producer_config()) as producer:
        notifier = Notifier(producer, TopicNames.from_prefix(f"{unique}.").updates, publisher, retry)
        bulk = BulkPublisher(Recomputer(encoder, policy), publisher, notifier, retry)
        counts, left = Reembedder(redis_client, keys, encoder.model_version, bulk=bulk).walk()
    assert left == {} and encoder.raced
    assert (counts.scanned, counts.reembedded, counts.refused_then_retried, counts.errors) == (3, 3, 1, 0)
    seq = store.load_many(["u001"])["u001"]
    assert seq.version == 3 and len(seq) == 4  # the worker's event kept, then re-embedded on top
    assert {redis_client.hget(keys.user(u), "mv").decode() for u in users} == {encoder.model_version}


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[Server]:
    with start_redis(cluster=True) as server:
        yield server


def test_the_scan_walks_every_primary_of_a_cluster_and_resumes_from_its_cursors(redis_cluster, unique) -> None:
    client = redis.RedisCluster.from_url(redis_cluster.url)
    keys = RedisKeys(unique)
    users = {f"c{i}" for i in range(40)}  # spread over many hash slots
    for user in users:
        client.hset(keys.user(user), "ver", 1)
    client.hset(f"{unique}:quarantine:c1", "ver", 1)  # not a user key
    scanner = UserScanner(client, keys, scan_count=5)
    assert scanner.count_users() == len(users)
    seen, pages = [], scanner.pages(scanner.start())
    first = next(pages)
    seen += first.user_ids
    assert first.cursors  # more to come
    seen += [u for page in scanner.pages(first.cursors) for u in page.user_ids]  # a "resumed" walk
    assert set(seen) == users
    client.close()
