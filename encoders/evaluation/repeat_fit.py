"""Fit the repeat score's coefficients (``encoders.repeat``) on the training histories.

Each sample is an event of the target scenario whose item the user had already touched
(the view's distinct items are the candidates, the one touched again is the answer); a linear
score of ``repeat_features`` is fit by a softmax over each sample's candidates. Validation and
test targets are not in the training histories, so nothing here sees them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch

from encoders.dataset import EventDataset, UserHistory
from encoders.features import FIRST_ITEM_ROW, MixingPolicyProtocol, build_inputs
from encoders.model import InterestModel

__all__ = ["MIN_SAMPLES", "fit_repeat_coef"]

logger = logging.getLogger(__name__)

MIN_SAMPLES = 200  # fewer re-touched events than this: no repeat score for the scenario
_PER_USER = 3  # each user's latest re-touched events of the scenario
_MAX_SAMPLES = 4000
_STEPS = 300


def _samples(histories: Sequence[UserHistory], dataset: EventDataset, scenario: int,
             rng: np.random.Generator) -> list[tuple[UserHistory, int]]:
    """``(context, target row)`` of each user's latest re-touched events of ``scenario``."""
    out = []
    for h in histories:
        rows, touched, hits = dataset.item_rows(h), set(), []
        for t, row in enumerate(rows.tolist()):
            if h.scenario_idx[t] == scenario and row >= FIRST_ITEM_ROW and row in touched:
                hits.append(t)
            touched.add(row)
        out.extend((h.prefix(t), int(rows[t])) for t in hits[-_PER_USER:])
    if len(out) > _MAX_SAMPLES:
        out = [out[i] for i in np.sort(rng.choice(len(out), _MAX_SAMPLES, replace=False))]
    return out


def fit_repeat_coef(model: InterestModel, histories: Sequence[UserHistory], dataset: EventDataset,
                    policy: MixingPolicyProtocol | None, scenario: int, seed: int = 0,
                    input_scenarios: Sequence[int] | None = None) -> tuple[float, ...]:
    """The coefficients (feature weights, then a constant) of ``scenario``'s repeat score, in
    the model's served view of it (``input_scenarios``: the model reads only these); empty when
    the histories hold under ``MIN_SAMPLES`` re-touched events of it that the mixed context
    still shows."""
    rng = np.random.default_rng([seed, scenario])
    samples = _samples(histories, dataset, scenario, rng)
    features, candidates, answers = [], [], []
    with torch.no_grad():
        for start in range(0, len(samples), 256):
            part = samples[start : start + 256]
            seqs = [h.context(len(h), policy, input_scenarios) for h, _ in part]
            inputs = {k: torch.from_numpy(v) for k, v in build_inputs(seqs, dataset.index, model.cfg).items()}
            feats, latest = model.repeat_inputs(inputs["item_idx"], inputs["scenario_idx"], inputs["mask"], scenario)
            target = torch.tensor([row for _, row in part])[:, None]
            hit = (inputs["item_idx"] == target) & (latest > 0)
            keep = hit.any(dim=1)  # the mixing policy may have dropped the touched item
            pad = model.cfg.max_len - feats.shape[1]
            features.append(torch.nn.functional.pad(feats[keep], (0, 0, 0, pad)))
            candidates.append(torch.nn.functional.pad(latest[keep], (0, pad)))
            answers.append(hit[keep].float().argmax(dim=1))
    if not features or sum(len(a) for a in answers) < MIN_SAMPLES:
        logger.info("repeat score scenario=%d: %d re-touched samples, under %d: none", scenario,
                    sum(len(a) for a in answers), MIN_SAMPLES)
        return ()
    x, valid, y = torch.cat(features), torch.cat(candidates) > 0, torch.cat(answers)
    flat = x[valid]
    mean, std = flat.mean(dim=0), flat.std(dim=0).clamp(min=1e-3)
    z = (x - mean) / std
    weights = torch.zeros(x.shape[2], requires_grad=True)
    opt = torch.optim.Adam([weights], lr=0.05)
    for _ in range(_STEPS):
        logits = (z @ weights).masked_fill(~valid, -1e4)
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        scale = weights / std
        coef = (*scale.tolist(), float(-(mean * scale).sum()))
        top1 = float(((z @ weights).masked_fill(~valid, -1e4).argmax(dim=1) == y).float().mean())
    logger.info("repeat score scenario=%d: %d samples, loss %.4f, answer first %.3f", scenario, len(y), loss.item(),
                top1)
    return coef
