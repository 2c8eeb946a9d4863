"""Process fixtures: a real Tansu broker and a real redis-server on free ports, names unique per test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from streams.devservers.servers import Server, start_broker, start_redis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Server]:
    """A real redis-server for the whole session (no persistence)."""
    with start_redis() as server:
        yield server


@pytest.fixture()
def redis_client(redis_server: Server) -> Iterator[redis.Redis]:
    """A client of the session's redis-server; tests keep apart by key prefix (``unique``)."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=False)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[Server]:
    """A real Tansu Kafka-protocol broker (memory storage) for the whole session."""
    with start_broker() as server:
        yield server


@pytest.fixture()
def unique() -> str:
    """A short name unique to this test: topic prefix, consumer group, Redis key prefix."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model trained by ``encoders.train`` and exported by ``encoders.export`` (about 2 s)."""
    from fixtures.pipeline import build_tiny_artifact

    return build_tiny_artifact(tmp_path_factory.mktemp("model"))
