"""The repeat score: which of a user's own items they come back to, computed inside the graph.

Each distinct item of a scenario's view gets features from the sequence (how recent, how often
and in which scenarios the user touched it); a linear score ``g`` of them, fit after training
on the training histories' re-touched events (``encoders.evaluation.repeat_fit``), orders the
items, and the top ``repeat_items`` join the scenario's vectors scaled by ``a + b * g``
(``ModelConfig``).
"""

from __future__ import annotations

import torch

__all__ = ["n_repeat_features", "newest_of_each_item", "repeat_features", "top_slots"]


def n_repeat_features(n_scenarios: int) -> int:
    """Width of ``repeat_features``' last axis."""
    return 4 + 2 * n_scenarios


def newest_of_each_item(later_same: torch.Tensor, seen: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``latest`` (``[B, T]``, 0/1): the events of ``seen`` that no later seen event of the same
    item follows, and each one's ``rank`` (how many of them are newer; 0: the newest item).
    ``later_same`` (``[B, T, T]``): ``[j, i]`` 1 where event i is a later event of event j's item."""
    repeated = (later_same @ seen[:, :, None]).squeeze(2) > 0
    latest = seen * (~repeated).to(seen.dtype)
    return latest, latest.sum(dim=1, keepdim=True) - latest.cumsum(dim=1)


def repeat_features(
    item_idx: torch.Tensor, scenario_idx: torch.Tensor, seen: torch.Tensor, n_scenarios: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T, F]`` features of every event, meaningful where the second output, ``latest``
    (``[B, T]``, 0/1), marks the newest event of a distinct item the view reads (``seen``: 0/1
    per event). Features, in order: log(1 + recency rank among the distinct items), log(1 +
    events after it), per scenario log(1 + the item's events there) and whether it has any,
    whether it is the newest item, and log(1 + events read). Only what the user did: a score
    of the learned vectors, fit on the training histories the model has learnt by heart,
    ranked the item a training user came back to first 78 % of the time and a validation
    user's 49 % (docs/model.md)."""
    dtype = seen.dtype
    t = item_idx.shape[1]
    equal = (item_idx[:, :, None] == item_idx[:, None, :]).to(dtype)  # [B, j, i]
    later = torch.ones(t, t, dtype=dtype, device=seen.device).triu(1)
    latest, rank = newest_of_each_item(equal * later, seen)
    same = equal * seen[:, None, :]
    after = seen.sum(dim=1, keepdim=True) - seen.cumsum(dim=1)
    onehot = (scenario_idx[:, :, None] == torch.arange(n_scenarios, device=seen.device)).to(dtype)
    counts = same @ onehot  # [B, T, S]: the item's events per scenario
    n_read = seen.sum(dim=1, keepdim=True).expand(-1, t)
    features = torch.cat([
        torch.log1p(rank)[..., None], torch.log1p(after)[..., None], torch.log1p(counts), (counts > 0).to(dtype),
        ((rank == 0).to(dtype) * latest)[..., None], torch.log1p(n_read)[..., None],
    ], dim=2)
    return features * latest[..., None], latest


def top_slots(score: torch.Tensor, valid: torch.Tensor, k: int) -> torch.Tensor:
    """``[B, K, T]`` 0/1: slot r picks the event with the r-th highest ``score`` among the
    ``valid`` ones (ties: the newer first); a slot with no such event is all zeros. Pairwise
    comparisons instead of top-k, so the exported graph takes any sequence length."""
    t = score.shape[1]
    newer = torch.ones(t, t, dtype=valid.dtype, device=valid.device).triu(1)  # [i, j]: j after i
    ahead = (score[:, None, :] > score[:, :, None]).to(valid.dtype)
    ahead = ahead + (score[:, None, :] == score[:, :, None]).to(valid.dtype) * newer
    place = (ahead * valid[:, None, :]).sum(dim=2)  # [B, T]: valid events ranked before each
    slots = torch.arange(k, dtype=valid.dtype, device=valid.device)
    return ((place[:, None, :] == slots[None, :, None]) & (valid[:, None, :] > 0)).to(score.dtype)
