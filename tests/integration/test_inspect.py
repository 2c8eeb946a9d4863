"""``unistate inspect`` against a real redis-server and a tiny exported model."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.records import SCENARIOS, Behavior
from state.sequence import UserSequence
from streams.cli import main

pytestmark = pytest.mark.integration

HOUR_MS = 3_600_000
UNKNOWN = "it_not_in_the_vocabulary"


def store_dave(client: redis.Redis, keys: RedisKeys, index: ItemIndex) -> dict[str, str]:
    """dave: a known feed item, an unknown one, a search without a click, an ad, a 3-day-old view."""
    feed_item = next(i for i in index.ids if index.item_scenarios(i) == ("feed",))
    ad = next(i for i in index.ids if i.startswith("ad_"))
    now = int(time.time() * 1000)
    seq = UserSequence("dave")
    for k, (scenario, age_ms, item, text) in enumerate([
        ("feed", 72 * HOUR_MS, feed_item, None), ("feed", 3 * HOUR_MS, UNKNOWN, None),
        ("search", 2 * HOUR_MS, None, "espresso grinder"), ("feed", HOUR_MS, feed_item, None),
        ("ads", HOUR_MS // 2, ad, None),
    ]):
        action = "query" if scenario == "search" else "click"
        seq.apply(Behavior(f"e{k}", "dave", scenario, now - age_ms, action, item, text))
    vectors = np.random.default_rng(0).standard_normal((len(SCENARIOS), 2, index.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=-1, keepdims=True)
    update = UserUpdate("dave", 1, seq.watermark_ms, now, index.model_version, SCENARIOS, vectors, seq.to_bytes())
    assert RedisPublisher(client, keys).publish([update]) == [True]
    return {"feed_item": feed_item, "ad": ad}


def command_calls(client: redis.Redis) -> dict[str, int]:
    return {name: stats["calls"] for name, stats in client.info("commandstats").items()}


def test_json_report_has_rounded_vectors_top_items_and_flags_unknown_items(
    redis_server, redis_client: redis.Redis, unique: str, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = ItemIndex.load(tiny_model_dir)
    store_dave(redis_client, RedisKeys(unique), index)
    before = command_calls(redis_client)
    argv = ["inspect", "dave", "--redis-url", redis_server.url, "--key-prefix", unique,
            "--model-dir", str(tiny_model_dir), "--json", "--top", "3", "--precision", "3"]
    assert main(argv) == 0
    after = command_calls(redis_client)
    calls = {c: after.get(c, 0) - before.get(c, 0) for c in ("cmdstat_hgetall", "cmdstat_hmget", "cmdstat_hget")}
    assert calls == {"cmdstat_hgetall": 1, "cmdstat_hmget": 0, "cmdstat_hget": 0}  # the key is read once
    report = json.loads(capsys.readouterr().out)

    assert report["user_id"] == "dave" and report["model"]["same_model"] is True
    seq = report["sequence"]
    assert seq["buffered"] == {"feed": 3, "search": 1, "ads": 1} and seq["chosen"] == seq["buffered"]
    assert [e["bucket"] for e in seq["events"]] == [1, 0, 0, 0, 0]
    assert [b["max_age_ms"] for b in seq["buckets"]] == [24 * HOUR_MS, 7 * 24 * HOUR_MS, None]
    assert [e["unknown_item"] for e in seq["events"]] == [False, True, None, False, False]
    assert report["unknown_items"] == {"count": 1, "events_with_item": 4, "distinct": [UNKNOWN]}
    vectors = report["vectors"]
    assert (vectors["q"], vectors["d"], vectors["model_version"]) == (2, index.dim, index.model_version)
    values = np.array(vectors["scenarios"]["ads"]["values"])
    assert values.shape == (2, index.dim) and np.array_equal(values, np.round(values, 3))
    assert set(report["top_items"]) == set(SCENARIOS)
    assert all(len(r) == 3 for r in report["top_items"].values())
    assert all(r["item_id"].startswith("ad_") for r in report["top_items"]["ads"])
    assert not any(r["item_id"].startswith("ad_") for r in report["top_items"]["feed"])


def test_text_report_flags_unknown_items_and_plot_writes_a_png(
    redis_server, redis_client: redis.Redis, unique: str, tiny_model_dir: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
    store_dave(redis_client, RedisKeys(unique), ItemIndex.load(tiny_model_dir))
    png = tmp_path / "dave.png"
    argv = ["inspect", "dave", "--redis-url", redis_server.url, "--key-prefix", unique,
            "--model-dir", str(tiny_model_dir), "--plot", str(png)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"item={UNKNOWN} [unknown item]" in out and "unknown items: 1 of 4 events" in out
    assert "mixed sequence: 5 of 5 buffered events" in out and "top items (model" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5_000


def test_without_a_model_the_report_says_so_and_a_missing_model_dir_is_an_error(
    redis_server, redis_client: redis.Redis, unique: str, tiny_model_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    store_dave(redis_client, RedisKeys(unique), ItemIndex.load(tiny_model_dir))
    monkeypatch.chdir(tmp_path)  # no models/current here
    common = ["--redis-url", redis_server.url, "--key-prefix", unique]
    assert main(["inspect", "dave", "--json", *common]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["top_items"] is None and report["unknown_items"] is None
    assert any("--model-dir" in note for note in report["notes"])
    assert main(["inspect", "dave", "--model-dir", str(tmp_path / "nope"), *common]) == 1
    assert "manifest" in capsys.readouterr().err
    assert main(["inspect", "nobody", *common]) == 1
