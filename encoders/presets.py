"""Every training preset in one place: model size and training schedule per use."""

from __future__ import annotations

from encoders.config import ModelConfig, TrainConfig

__all__ = ["FEED_ONLY", "TIGHT_SLOTS", "amazon", "default", "demo", "movielens"]

#: Train on feed (scenario 0) targets only: the single-scenario MovieLens check.
FEED_ONLY = (True, False, False)
#: The tight-budget ablation: 4 feed (Food) + 4 search (Kitchen) slots vs one recent window of 8.
TIGHT_SLOTS = {"feed": 4, "search": 4, "ads": 0}


def default(use_text: bool = False) -> TrainConfig:
    """The default model and schedule (synthetic data, your own events)."""
    return TrainConfig(model=ModelConfig(use_text=use_text))


def demo(use_text: bool = False) -> TrainConfig:
    """A small model that trains in seconds (``make demo``)."""
    model = ModelConfig(d_model=32, dim=32, n_layers=1, n_heads=2, use_text=use_text)
    return TrainConfig(model=model, epochs=2, batch_size=128, n_negatives=256, cuts_per_user=2)


def amazon() -> TrainConfig:
    """Amazon Food-Kitchen: day-level timestamps, <= 15 events a user, next event per domain.

    Half the samples hold out a random event (context: the rest of the history): on short,
    day-stamped histories this teaches the symmetric co-occurrence kNN thrives on, and the model
    stops over-fitting after the second epoch.
    """
    model = ModelConfig(max_len=32, id_embedding=True, content_dim=128, dropout=0.1)
    return TrainConfig(model=model, epochs=3, cuts_per_user=8, n_negatives=4096, holdout_fraction=0.5,
                       targets_per_scenario=1, target_window_ms=10**13)


def movielens() -> TrainConfig:
    """MovieLens-100K: feed-only next-item training, one target (the next rating), uniform negatives."""
    model = ModelConfig(max_len=50, id_embedding=True, content_dim=64)
    return TrainConfig(model=model, epochs=20, patience=3, cuts_per_user=32, n_negatives=1024,
                       targets_per_scenario=1, target_window_ms=10**13,
                       scenario_mask=FEED_ONLY, input_scenarios=(0,))
