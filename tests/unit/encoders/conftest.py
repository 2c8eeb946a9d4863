"""Shared fixtures for the encoders tests: a tiny synthetic dataset and an exported model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encoders.config import ModelConfig, TrainConfig
from encoders.data.synthetic import generate_events
from encoders.data.wire import histories_from_wire
from encoders.dataset import EventDataset


class LastN:
    """Tiny policy for tests: the most recent ``n`` events."""

    def __init__(self, n: int) -> None:
        self.n = n

    def select(self, scenario_idx: np.ndarray, ts_ms: np.ndarray, now_ms: int) -> np.ndarray:
        return np.arange(max(0, len(ts_ms) - self.n), len(ts_ms))


TINY = ModelConfig(d_model=16, dim=8, n_heads=2, n_layers=1, max_len=24, dropout=0.0)


@pytest.fixture(scope="session")
def policy() -> LastN:
    return LastN(24)


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return TINY


@pytest.fixture(scope="session")
def tiny_dataset() -> EventDataset:
    return EventDataset.build(histories_from_wire(generate_events(40, seed=1, mean_events=30)))


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_dataset: EventDataset) -> Path:
    from encoders.export import export
    from encoders.train import train

    root = tmp_path_factory.mktemp("tiny")
    cfg = TrainConfig(model=TINY, epochs=1, min_steps=600, batch_size=32, n_negatives=64, progress=False, threads=1)
    ckpt = train(cfg, tiny_dataset, LastN(24), root)
    export(ckpt, root / "artifact")
    return root
