"""Every training preset in one place: the default recipe, and the small demo model."""

from __future__ import annotations

from encoders.config import ModelConfig, TrainConfig

__all__ = ["default", "demo"]


def default(use_text: bool = False) -> TrainConfig:
    """The one recipe for every dataset (docs/model.md): learned item rows plus a 64-wide
    co-occurrence content table built from the training events, and TrainConfig's defaults."""
    return TrainConfig(model=ModelConfig(use_text=use_text, content_dim=64))


def demo(use_text: bool = False) -> TrainConfig:
    """The default recipe on a small model that trains in under a minute (``make demo``)."""
    model = ModelConfig(d_model=32, dim=32, n_layers=1, n_heads=2, use_text=use_text, content_dim=64)
    return TrainConfig(model=model, batch_size=128, n_negatives=1024, min_steps=200, threads=2)
