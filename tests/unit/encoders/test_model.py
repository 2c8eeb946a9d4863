"""Tests for encoders.model and encoders.train: shapes, normalisation, the loss learns."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.config import ModelConfig, TrainConfig
from encoders.dataset import EventDataset
from encoders.errors import ConfigError
from encoders.features import SequenceInput, build_inputs
from encoders.model import InterestModel
from encoders.train import (
    _targets,
    info_nce,
    length_batches,
    make_samples,
    own_view_draws,
    sample_context,
    train,
    update_ema,
)


def test_output_is_scenarios_by_queries_by_dim_and_unit_norm(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    TINY = tiny_config
    model = InterestModel(TINY.with_(n_items=tiny_dataset.n_items)).eval()
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:3]] + [
        tiny_dataset.histories[0].context(0, None)
    ]
    inputs = build_inputs(seqs, tiny_dataset.index, model.cfg)
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    assert out.shape == (4, 3, TINY.n_queries, TINY.dim)
    assert torch.allclose(out.norm(dim=-1), torch.ones(4, 3, TINY.n_queries), atol=1e-5)
    items = model.item_vectors(torch.arange(5))
    assert torch.allclose(items.norm(dim=-1), torch.ones(5), atol=1e-5)


def test_a_few_training_steps_decrease_the_loss(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    TINY = tiny_config
    torch.manual_seed(0)
    cfg = TrainConfig(model=TINY.with_(n_items=tiny_dataset.n_items), n_negatives=64)
    model = InterestModel(cfg.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    batch = make_samples(tiny_dataset, cfg, rng)[:32]
    rows = [tiny_dataset.item_rows(h) for h in tiny_dataset.histories]
    targets = torch.from_numpy(_targets(tiny_dataset, rows, batch, cfg))
    inputs = build_inputs([sample_context(tiny_dataset, s, policy, None) for s in batch], tiny_dataset.index, cfg.model)
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    negatives = torch.from_numpy(rng.integers(2, tiny_dataset.n_items, 64))
    losses = []
    for _ in range(15):
        loss = info_nce(model, model(**tensors), targets, negatives)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_held_out_samples_target_one_event_and_hide_it_from_a_context_that_spans_both_sides(
    tiny_dataset: EventDataset, tiny_config: ModelConfig
) -> None:
    cfg = TrainConfig(model=tiny_config.with_(n_items=tiny_dataset.n_items), holdout_fraction=1.0)
    samples = make_samples(tiny_dataset, cfg, np.random.default_rng(0))
    assert samples and all(held >= 0 and cut == len(tiny_dataset.histories[u]) for u, cut, held in samples)
    rows = [tiny_dataset.item_rows(h) for h in tiny_dataset.histories]
    targets = _targets(tiny_dataset, rows, samples[:50], cfg)
    for (u, cut, held), t in zip(samples[:50], targets, strict=True):
        h = tiny_dataset.histories[u]
        assert t.sum() == rows[u][held] and t[h.scenario_idx[held], 0] == rows[u][held]
        ctx = sample_context(tiny_dataset, (u, cut, held), None, None)
        assert len(ctx.item_ids) == len(h) - 1
        assert ctx.item_ids == [i for j, i in enumerate(h.item_ids) if j != held]


def test_plain_samples_keep_the_next_events_as_targets(tiny_dataset: EventDataset, tiny_config: ModelConfig) -> None:
    cfg = TrainConfig(model=tiny_config.with_(n_items=tiny_dataset.n_items), targets_per_scenario=1,
                      holdout_fraction=0.0, target_window_ms=10**13)
    samples = make_samples(tiny_dataset, cfg, np.random.default_rng(0))
    assert all(held == -1 for _, _, held in samples)
    rows = [tiny_dataset.item_rows(h) for h in tiny_dataset.histories]
    ((u, cut, _),) = samples[:1]
    h = tiny_dataset.histories[u]
    t = _targets(tiny_dataset, rows, samples[:1], cfg)[0]
    for s in range(3):
        later = [rows[u][j] for j in range(cut, len(h)) if h.scenario_idx[j] == s and rows[u][j] > 1]
        assert t[s, 0] == (later[0] if later else 0)


def test_length_batches_keep_every_sample_once_and_pad_less_than_random_batches() -> None:
    rng = np.random.default_rng(0)
    samples = [(u, int(n), -1) for u, n in enumerate(rng.zipf(1.5, 5000).clip(1, 128))]
    batches = length_batches(samples, 64, np.random.default_rng(1), pool=8)
    assert sorted(s for b in batches for s in b) == sorted(samples)
    assert all(0 < len(b) <= 64 for b in batches)
    padded = sum(len(b) * max(s[1] for s in b) for b in batches)
    random_padded = sum(64 * max(s[1] for s in samples[i : i + 64]) for i in range(0, len(samples), 64))
    assert padded < 0.5 * random_padded
    longest = [max(s[1] for s in b) for b in batches]
    assert longest != sorted(longest)  # the batch order is shuffled, not sorted by length


def _trained_weights(model: InterestModel) -> InterestModel:
    """Random non-zero weights everywhere (fresh zero-initialised parts would hide view leaks)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    return model.eval()


@pytest.mark.parametrize(("recent", "pool"), [((), ()), (((1.0, 0.9), (0.5, 0.8), (1.0, 1.0)), ((0.2, 0.7),) * 3)],
                         ids=["learned", "recent-items"])
def test_the_own_view_of_a_scenario_reads_that_scenarios_events_alone(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, recent: tuple, pool: tuple
) -> None:
    """In the own view a scenario's vectors are the same whether or not the other scenarios'
    events are in the sequence (ranks, attention, the item pool and the recent items all stay
    inside it); in the all view they are not."""
    cfg = tiny_config.with_(n_items=tiny_dataset.n_items, recent_weights=recent, recent_pool=pool)
    model = _trained_weights(InterestModel(cfg))
    n = model.cfg.max_len  # longer sequences keep their newest events: a filtered one keeps more
    histories = [h for h in tiny_dataset.histories if len(set(h.scenario_idx[:n].tolist())) == 3][:4]
    assert len(histories) == 4

    def run(seqs: list, own: float | None) -> torch.Tensor:
        inputs = {k: torch.from_numpy(v) for k, v in build_inputs(seqs, tiny_dataset.index, model.cfg).items()}
        view = None if own is None else torch.full((len(seqs),), own)
        with torch.no_grad():
            return model(**inputs, own_view=view)

    whole = [h.context(min(n, len(h)), None) for h in histories]
    own, every = run(whole, 1.0), run(whole, 0.0)
    for s in range(3):
        alone = [h.context(min(n, len(h)), None, (s,)) for h in histories]
        assert torch.allclose(own[:, s], run(alone, 1.0)[:, s], atol=1e-5)
        assert not torch.allclose(every[:, s], run(alone, 0.0)[:, s], atol=1e-3)


def _recent_model(tiny_config: ModelConfig, weights: tuple) -> tuple[InterestModel, dict[str, int]]:
    items = [f"i{k}" for k in range(6)]
    index = {item: row for row, item in enumerate(items, start=2)}
    cfg = tiny_config.with_(n_items=len(items) + 2, recent_items=3, recent_weights=weights)
    return _trained_weights(InterestModel(cfg)), index


def _encode(model: InterestModel, index: dict[str, int], item_ids: list, scenarios: list[int]) -> torch.Tensor:
    n = len(item_ids)
    seq = SequenceInput(item_ids, [None] * n, np.array(scenarios), np.ones(n, np.int64), np.arange(n) * 1000, n * 1000)
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in build_inputs([seq], index, model.cfg).items()})[0]


def test_recent_items_follow_the_learned_queries_newest_distinct_first_and_scaled(tiny_config: ModelConfig) -> None:
    """Per scenario: the learned queries, then the vectors of the newest distinct known items,
    the k-th scaled by alpha * beta**k; unknown items are skipped and an unfilled slot (or
    alpha 0) repeats the first learned query, which cannot change max_q."""
    model, index = _recent_model(tiny_config, ((1.0, 0.5), (0.0, 1.0), (0.8, 1.0)))
    q = model.cfg.n_queries
    out = _encode(model, index, ["i2", "i3", "never-seen", "i2", None], [0, 1, 2, 0, 1])
    learned = model.with_recent_weights(())
    assert out.shape == (3, q + 3, model.cfg.dim)
    assert torch.allclose(out[:, :q], _encode(learned, index, ["i2", "i3", "never-seen", "i2", None], [0, 1, 2, 0, 1]))
    vec = model.item_vectors(torch.tensor([index["i2"], index["i3"]])).detach()
    assert torch.allclose(out[0, q], vec[0], atol=1e-6)  # i2, touched again last: newest, once
    assert torch.allclose(out[0, q + 1], 0.5 * vec[1], atol=1e-6)
    assert torch.allclose(out[0, q + 2], out[0, 0])  # only two known items
    assert torch.allclose(out[2, q], 0.8 * vec[0], atol=1e-6)
    assert torch.allclose(out[1, q:], out[1, :1].expand(3, -1))  # alpha 0: none


def test_the_recent_pool_adds_the_decayed_recent_items_to_every_learned_vector(tiny_config: ModelConfig) -> None:
    """gamma * delta**k times the k-th newest distinct known item joins each learned vector of
    its scenario (gamma 0: none); the appended recent rows are unchanged, and a missing one
    repeats the pooled first vector."""
    model, index = _recent_model(tiny_config, ((1.0, 0.5), (0.0, 1.0), (0.8, 1.0)))
    pooled = model.with_recent_weights(model.cfg.recent_weights, ((0.5, 0.4), (0.0, 1.0), (0.1, 1.0)))
    items, scenarios = ["i2", "i3", "never-seen", "i2", None], [0, 1, 2, 0, 1]
    q = model.cfg.n_queries
    before, after = _encode(model, index, items, scenarios), _encode(pooled, index, items, scenarios)
    vec = model.item_vectors(torch.tensor([index["i2"], index["i3"]])).detach()
    assert torch.allclose(after[0, :q], before[0, :q] + 0.5 * vec[0] + 0.5 * 0.4 * vec[1], atol=1e-6)
    assert torch.allclose(after[2, :q], before[2, :q] + 0.1 * (vec[0] + vec[1]), atol=1e-6)
    assert torch.allclose(after[1], before[1])  # gamma 0
    assert torch.allclose(after[0, q : q + 2], before[0, q : q + 2])
    assert torch.allclose(after[0, q + 2], after[0, 0])


def test_training_scores_the_learned_queries_and_the_checkpoint_keeps_the_recent_weights(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object, tmp_path: Path
) -> None:
    from encoders.train import load_checkpoint

    weights, pool = ((1.0, 0.9),) * 3, ((0.1, 0.7),) * 3
    cfg = TrainConfig(model=tiny_config.with_(recent_weights=weights, recent_pool=pool), n_negatives=32, epochs=1,
                      max_epochs=1, min_steps=1, progress=False)
    model, _, _ = load_checkpoint(train(cfg, tiny_dataset, policy, tmp_path))
    assert model.cfg.recent_weights == weights and model.cfg.recent_pool == pool
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:3]]
    inputs = {k: torch.from_numpy(v) for k, v in build_inputs(seqs, tiny_dataset.index, model.cfg).items()}
    with torch.no_grad():
        assert model(**inputs).shape[2] == model.cfg.n_queries + model.cfg.recent_items


@pytest.mark.parametrize("weights", [((1.0, 0.9),), ((-0.1, 0.9),) * 3, ((1.0, 0.0),) * 3, ((1.0, 1.5),) * 3])
def test_recent_weights_need_one_valid_pair_per_scenario(weights: tuple) -> None:
    with pytest.raises(ConfigError, match="recent_weights"):
        ModelConfig(recent_weights=weights)
    with pytest.raises(ConfigError, match="recent_pool"):
        ModelConfig(recent_pool=weights)


def test_serving_gives_each_scenario_the_view_the_config_names(
    tiny_dataset: EventDataset, tiny_config: ModelConfig
) -> None:
    model = _trained_weights(InterestModel(tiny_config.with_(n_items=tiny_dataset.n_items)))
    inputs = build_inputs([h.context(len(h), None) for h in tiny_dataset.histories[:6]], tiny_dataset.index, model.cfg)
    tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        own, every = model(**tensors, own_view=torch.ones(6)), model(**tensors, own_view=torch.zeros(6))
        plain = model(**tensors)
        mixed_model = InterestModel(model.cfg.with_(own_view_scenarios=("search",)))
        mixed_model.load_state_dict(model.state_dict())
        mixed = mixed_model.eval()(**tensors)
    assert torch.allclose(plain, every, atol=1e-6)  # no own-view scenarios: the all view
    assert torch.allclose(mixed[:, 1], own[:, 1], atol=1e-5)
    assert torch.allclose(mixed[:, [0, 2]], every[:, [0, 2]], atol=1e-5)


def test_only_held_out_samples_are_drawn_into_the_own_view() -> None:
    batch = [(0, 5, -1), (1, 9, 3), (2, 4, 0), (3, 7, -1)] * 250
    draws = own_view_draws(batch, 0.5, np.random.default_rng(0))
    held = np.array([s[2] >= 0 for s in batch])
    assert not draws[~held].any()
    assert 0.4 < draws[held].mean() < 0.6
    assert not own_view_draws(batch, 0.0, np.random.default_rng(0)).any()


def test_own_view_scenarios_must_be_model_scenarios() -> None:
    with pytest.raises(ConfigError, match="own_view_scenarios"):
        ModelConfig(own_view_scenarios=("email",))


def test_an_own_view_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="own_view"):
        TrainConfig(own_view=1.5)


def test_an_ema_decay_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="ema_decay"):
        TrainConfig(ema_decay=1.0)


def test_a_popularity_prior_needs_one_weight_per_scenario_and_the_counts() -> None:
    for bad in ((0.1, 0.1), (0.1, -0.1, 0.0)):
        with pytest.raises(ConfigError, match="item_prior"):
            ModelConfig(item_prior=bad)
    with pytest.raises(ConfigError, match="item_counts"):
        ModelConfig(item_prior=(0.1, 0.0, 0.0), item_counts=False)
    assert ModelConfig(item_prior=(0.1, 0.0, 0.0)).vector_dim == ModelConfig().dim + 1 == ModelConfig().vector_dim + 1


def test_a_checkpoint_from_before_the_item_counts_loads_without_them() -> None:
    """Its config has no ``item_counts`` key, so its state has no count buffer to expect."""
    old = {k: v for k, v in ModelConfig(n_items=6).to_dict().items() if k not in ("item_counts", "item_prior")}
    cfg = ModelConfig.from_dict(old)
    assert not cfg.item_counts and not cfg.item_prior
    state = InterestModel(cfg).state_dict()
    assert "item_log_count" not in state and "item_log_count" in InterestModel(ModelConfig(n_items=6)).state_dict()
    InterestModel(cfg).load_state_dict(state)


def test_a_holdout_fraction_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ConfigError, match="holdout_fraction"):
        TrainConfig(holdout_fraction=1.5)


def test_the_learning_rate_drops_after_each_epoch_without_a_new_best(
    tmp_path: Path, tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    """``lr_decay_on_plateau`` lowers the rate for the epochs after one that found no new best."""

    def rates(decay: float | None) -> list[float]:
        scores = iter([1.0, 0.5, 0.5, 0.5, 0.5])  # epoch 0 is the best; none after it
        cfg = TrainConfig(model=tiny_config, epochs=5, min_steps=0, batch_size=32, n_negatives=64, progress=False,
                          threads=1, patience=None, lr_decay_on_plateau=decay)
        ckpt = train(cfg, tiny_dataset, policy, tmp_path / str(decay), eval_fn=lambda _: next(scores))
        return [h["lr"] for h in torch.load(ckpt, weights_only=False)["history"]]

    decayed, plain = rates(0.5), rates(None)  # the cosine schedule reaches 0 at the last epoch's end
    assert np.allclose(np.array(decayed[:4]) / np.array(plain[:4]), [1.0, 1.0, 0.5, 0.25])


def test_early_stopping_waits_for_both_patience_epochs_and_patience_steps(
    tmp_path: Path, tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    def epochs_run(patience_steps: int) -> int:
        scores = iter([1.0, 0.5, 0.5, 0.5, 0.5])  # epoch 0 is the best; none after it
        cfg = TrainConfig(model=tiny_config, epochs=5, min_steps=0, batch_size=32, n_negatives=64, progress=False,
                          threads=1, patience=1, patience_steps=patience_steps)
        ckpt = train(cfg, tiny_dataset, policy, tmp_path / str(patience_steps), eval_fn=lambda _: next(scores))
        return len(torch.load(ckpt, weights_only=False)["history"])

    assert epochs_run(0) == 2  # one epoch without a new best
    assert epochs_run(10**6) == 5  # never enough steps: every epoch runs


def test_update_ema_moves_each_weight_part_of_the_way_to_the_model() -> None:
    averaged, model = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in averaged.parameters()]
    update_ema(averaged, model, decay=0.75)
    for old, new, target in zip(before, averaged.parameters(), model.parameters(), strict=True):
        assert torch.allclose(new, 0.75 * old + 0.25 * target)


def test_training_with_ema_scores_and_saves_the_averaged_weights_not_the_last_step(
    tmp_path: Path, tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    """Each epoch's score reads the averaged model, and the best epoch's averaged weights are saved."""
    scored: list[dict[str, torch.Tensor]] = []

    def remember(model: InterestModel) -> float:
        scored.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return -float(len(scored))  # epoch 0 is the best

    def run(ema: float | None) -> dict[str, torch.Tensor]:
        scored.clear()
        cfg = TrainConfig(model=tiny_config, epochs=3, min_steps=0, batch_size=32, n_negatives=64, progress=False,
                          threads=1, patience=None, ema_decay=ema)
        return torch.load(train(cfg, tiny_dataset, policy, tmp_path / str(ema), eval_fn=remember),
                          weights_only=False)["state_dict"]

    raw, raw_scored = run(None), list(scored)
    averaged = run(0.9)
    assert all(torch.equal(averaged[k], scored[0][k]) for k in averaged)  # the saved state is what was scored
    assert all(torch.equal(raw[k], raw_scored[0][k]) for k in raw)
    assert not torch.allclose(averaged["queries"], raw["queries"])  # the same seed and steps, averaged


def test_training_with_the_popularity_in_the_loss_validates_with_the_prior_it_stands_for(
    tmp_path: Path, tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    """Validation scores the model with the served prior the loss's weight stands for (weight x
    temperature, in cosine units), and the checkpoint serves it, plus the prior it was given."""
    from encoders.train import load_checkpoint

    priors: list[tuple[tuple[float, ...], float]] = []

    def remember(model: InterestModel) -> float:
        priors.append((model.cfg.item_prior, model.temperature().item()))
        return 0.0

    given = (0.0, 0.05, 0.0)
    cfg = TrainConfig(model=tiny_config.with_(item_prior=given), epochs=2, max_epochs=2, min_steps=0, batch_size=32,
                      n_negatives=64, popularity_weight=2.0, patience=None, progress=False)
    model, _, _ = load_checkpoint(train(cfg, tiny_dataset, policy, tmp_path, eval_fn=remember))
    assert len(priors) == 2 and all(np.allclose(lam, [2.0 * tau] * 3) for lam, tau in priors)
    assert priors[0][1] != priors[1][1]  # each epoch's temperature, and the saved one is the best epoch's
    tau = model.temperature().item()
    assert tau in [t for _, t in priors]
    assert np.allclose(model.cfg.item_prior, [2.0 * tau + g for g in given])
    unweighted, _, _ = load_checkpoint(train(replace(cfg, popularity_weight=0.0), tiny_dataset, policy,
                                             tmp_path / "off", eval_fn=remember))
    assert unweighted.cfg.item_prior == given
