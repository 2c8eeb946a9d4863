"""Tests for the training losses of encoders.train: the uniform-negative InfoNCE, the new-item,
item-pair and popularity terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encoders.config import ModelConfig, TrainConfig
from encoders.dataset import EventDataset
from encoders.errors import ConfigError
from encoders.features import build_inputs
from encoders.model import InterestModel
from encoders.train import _targets, info_nce, item_pair_loss, make_samples, new_item_loss, sample_context


def test_uniform_negative_loss_masks_the_users_positives_and_keeps_gradients_finite(
    tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> None:
    torch.manual_seed(0)
    cfg = TrainConfig(model=tiny_config.with_(n_items=tiny_dataset.n_items), n_negatives=64)
    model = InterestModel(cfg.model)
    batch = make_samples(tiny_dataset, cfg, np.random.default_rng(0))[:16]
    rows = [tiny_dataset.item_rows(h) for h in tiny_dataset.histories]
    targets = torch.from_numpy(_targets(tiny_dataset, rows, batch, cfg))
    inputs = build_inputs([sample_context(tiny_dataset, s, policy, None) for s in batch], tiny_dataset.index, cfg.model)
    interests = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    # Every positive is also drawn as a "negative": it must be masked, not counted against itself.
    negatives = torch.cat([targets[targets > 0], torch.arange(2, 10)])
    loss = info_nce(model, interests, targets, negatives, in_batch=False)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.log_tau.grad)


def test_the_new_item_loss_teaches_the_text_path_and_leaves_the_users_alone(tiny_config: ModelConfig) -> None:
    """``new_item_loss`` ranks items by their text-only vectors against the users' vectors held
    fixed: the loss falls as the text path learns, and no gradient reaches the user tower."""
    cfg = tiny_config.with_(n_items=50, content_dim=8 + tiny_config.text_dim, content_text=True)
    torch.manual_seed(0)
    model = InterestModel(cfg, torch.randn(50, cfg.content_dim))
    interests = F.normalize(torch.randn(2, 3, cfg.n_queries, cfg.dim), dim=-1).requires_grad_()
    targets = torch.tensor([[[2, 3, 0], [4, 0, 0], [0, 0, 0]], [[5, 6, 7], [2, 0, 0], [9, 0, 0]]])
    negatives = torch.arange(2, 50)
    first = new_item_loss(model, interests, targets, negatives)
    first.backward()
    assert interests.grad is None and model.item_emb.weight.grad[2:].abs().max() == 0
    assert model.content_proj.weight.grad.abs().max() > 0 and model.item_emb.weight.grad[1].abs().max() > 0
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        opt.zero_grad()
        new_item_loss(model, interests, targets, negatives).backward()
        opt.step()
    assert new_item_loss(model, interests, targets, negatives).item() < 0.7 * first.item()
    with pytest.raises(ConfigError, match="new_item_weight"):
        TrainConfig(new_item_weight=-1.0)


def test_the_item_pair_loss_pulls_a_positive_towards_one_of_the_newest_context_items(tiny_config: ModelConfig) -> None:
    """``item_pair_loss`` pairs each positive with a known item among the context's newest
    events (the largest draw): training it makes the paired items the nearest; a positive that is
    the drawn item, or a context without a known item, adds nothing; tau's gradient stays finite
    when the negatives hold positives and anchors."""
    cfg = tiny_config.with_(n_items=40)
    torch.manual_seed(0)
    model = InterestModel(cfg)
    item_idx = torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0], [1, 0, 0, 0]])
    mask = (item_idx > 0).float()
    draw = torch.tensor([[0.9, 0.1, 0.2, 0.0], [0.3, 0.4, 0.0, 0.0], [0.5, 0.0, 0.0, 0.0]])
    # newest=2: row 0 draws 7 (6 and 7 are the newest two; 5 is older despite its larger draw), row 1 draws 9
    targets = torch.tensor([[[20, 7, 0]], [[30, 0, 0]], [[33, 0, 0]]])  # [B, S=1, K]
    negatives = torch.cat([torch.arange(2, 40), torch.tensor([7, 9, 20])])
    loss = item_pair_loss(model, item_idx, mask, targets, negatives, draw, newest=2)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(model.log_tau.grad)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        item_pair_loss(model, item_idx, mask, targets, negatives, draw, newest=2).backward()
        opt.step()
    with torch.no_grad():
        v = model.item_vectors(torch.arange(40))
        sims = v @ v.T
    others = [r for r in range(2, 40) if r not in (7, 9, 20, 30)]
    assert sims[7, 20] > sims[7, others].max() and sims[9, 30] > sims[9, others].max()
    assert sims[5, 20] < sims[7, 20]  # 5 was never drawn: not among the newest two
    alone = item_pair_loss(model, item_idx[2:], mask[2:], targets[2:], negatives, draw[2:], newest=2)
    same = item_pair_loss(model, item_idx[:1], mask[:1], torch.tensor([[[7, 0, 0]]]), negatives, draw[:1], newest=2)
    assert alone.item() == 0.0 and same.item() == 0.0
    soft = item_pair_loss(model, item_idx[:1], mask[:1], targets[:1], negatives, draw[:1], newest=2, tau=1.0)
    sharp = item_pair_loss(model, item_idx[:1], mask[:1], targets[:1], negatives, draw[:1], newest=2, tau=0.05)
    assert sharp.item() < soft.item()  # a trained pair: a lower temperature separates it further
    with pytest.raises(ConfigError, match="item_pair_weight"):
        TrainConfig(item_pair_weight=-1.0)
    with pytest.raises(ConfigError, match="item_pair_tau"):
        TrainConfig(item_pair_tau=0.0)


def test_the_popularity_in_the_loss_leaves_the_users_vectors_their_own(tiny_config: ModelConfig) -> None:
    """Users whose next items follow popularity alone: trained against uniform negatives, their
    vectors turn to the popular items' shared direction (cross-user cosine near 1); with each
    item's log popularity in its logit (``log_prior``) there is nothing left for them to learn
    and they stay apart. The prior is read in the positive's scenario only."""
    cfg = tiny_config.with_(n_items=40)
    rng = np.random.default_rng(0)
    popularity = 1.0 / np.arange(1, 39) ** 1.2
    popularity /= popularity.sum()
    counts = np.zeros((len(cfg.scenarios), 40))
    counts[0, 2:] = 1e6 * popularity
    log_prior = torch.from_numpy(np.log1p(counts)).float()

    def cross_user_cosine(prior: torch.Tensor | None) -> float:
        torch.manual_seed(0)
        model = InterestModel(cfg)
        users = torch.nn.Parameter(torch.randn(32, len(cfg.scenarios), 1, cfg.dim))
        opt = torch.optim.Adam([users], lr=3e-2)
        negatives = torch.arange(2, 40)
        for _ in range(150):
            targets = torch.zeros(32, len(cfg.scenarios), 4, dtype=torch.long)
            targets[:, 0] = torch.from_numpy(2 + rng.choice(38, size=(32, 4), p=popularity))
            opt.zero_grad()
            info_nce(model, F.normalize(users, dim=-1), targets, negatives, in_batch=False, log_prior=prior).backward()
            opt.step()
        u = F.normalize(users.detach()[:, 0, 0], dim=-1)
        sims = u @ u.T
        return float(sims[~torch.eye(32, dtype=torch.bool)].mean())

    assert cross_user_cosine(None) > 0.8 and cross_user_cosine(log_prior) < 0.5  # 0.91 and 0.33
    torch.manual_seed(0)
    model = InterestModel(cfg)
    interests = F.normalize(torch.randn(2, len(cfg.scenarios), 1, cfg.dim), dim=-1)
    targets = torch.zeros(2, len(cfg.scenarios), 2, dtype=torch.long)
    targets[:, 0] = torch.tensor([[3, 4], [5, 0]])
    other = torch.zeros_like(log_prior)
    other[1:] = 5 * torch.rand(len(cfg.scenarios) - 1, 40)  # another scenario's popularity: no effect
    plain = info_nce(model, interests, targets, torch.arange(2, 40), in_batch=False)
    assert torch.isclose(info_nce(model, interests, targets, torch.arange(2, 40), in_batch=False, log_prior=other),
                         plain)
    with pytest.raises(ValueError, match="log_prior"):
        info_nce(model, interests, targets, torch.arange(2, 40), in_batch=True, log_prior=log_prior)
    with pytest.raises(ConfigError, match="popularity_weight"):
        TrainConfig(popularity_weight=-1.0)
    with pytest.raises(ConfigError, match="popularity_weight"):
        TrainConfig(popularity_weight=1.0, in_batch_negatives=True)
