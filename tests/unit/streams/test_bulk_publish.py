"""The re-embed and backfill helpers that need no server: the rate limiter and the checkpoint file."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from streams.bulk_publish import RateLimiter
from streams.checkpoint import Checkpoint
from streams.errors import ConfigurationError
from streams.reembed import ReembedCounts


def test_the_rate_limiter_spaces_units_out_to_the_rate() -> None:
    limiter = RateLimiter(200.0)
    started = time.monotonic()
    for _ in range(4):
        limiter.acquire(10)  # 40 units at 200/s: the last batch may start at 0.15 s
    assert time.monotonic() - started >= 0.14


def test_a_stopped_rate_limiter_does_not_wait() -> None:
    stop = threading.Event()
    stop.set()
    limiter = RateLimiter(1.0, stop)
    started = time.monotonic()
    limiter.acquire(5)
    limiter.acquire(5)
    assert time.monotonic() - started < 1.0


def test_no_rate_means_no_wait() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0.0)
    RateLimiter(None).acquire(10**9)


def test_a_checkpoint_round_trips_and_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.json"
    counts = ReembedCounts(scanned=7, reembedded=5, already_current=2)
    Checkpoint("p", "abc", {"127.0.0.1:7000": 42, "127.0.0.1:7001": 0}, counts.as_dict()).save(path)
    Checkpoint("p", "abc", {"127.0.0.1:7001": 9}, counts.as_dict()).save(path)
    loaded = Checkpoint.load(path)
    assert loaded.cursors == {"127.0.0.1:7001": 9} and not loaded.complete
    assert ReembedCounts.from_dict(loaded.counts) == counts
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.json"]


def test_a_file_that_is_no_checkpoint_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "ckpt.json"
    path.write_text('{"format": 99}')
    with pytest.raises(ConfigurationError, match="unknown format"):
        Checkpoint.load(path)
    with pytest.raises(ConfigurationError):
        Checkpoint.load(tmp_path / "missing.json")
