"""Training: temporal cuts, per-scenario next-event targets, multi-positive InfoNCE."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from encoders.config import ModelConfig, TrainConfig
from encoders.dataset import EventDataset
from encoders.errors import ConfigError
from encoders.features import FIRST_ITEM_ROW, MixingPolicyProtocol, SequenceInput, TextFn, build_inputs
from encoders.items import cooccurrence_table, scenario_item_counts
from encoders.model import InterestModel

__all__ = [
    "CHECKPOINT_NAME", "Sample", "info_nce", "item_pair_loss", "length_batches", "load_checkpoint", "make_samples",
    "own_view_draws", "new_item_loss", "sample_context", "train", "update_ema",
]

logger = logging.getLogger(__name__)
CHECKPOINT_NAME = "model.pt"
Sample = tuple[int, int, int]  # (user position, cut: number of context events, held-out event or -1)
EvalFn = Callable[[InterestModel], float]


def make_samples(dataset: EventDataset, cfg: TrainConfig, rng: np.random.Generator) -> list[Sample]:
    """Random cut points per user (each leaves at least one event after the cut).

    With ``cfg.holdout_fraction`` a share of them become held-out samples instead: the target is
    one random event of the history and the context is every other event, before and after it.
    """
    samples: list[Sample] = []
    for u, h in enumerate(dataset.histories):
        if len(h) < 2:
            continue
        cuts = rng.choice(np.arange(1, len(h)), size=min(cfg.cuts_per_user, len(h) - 1), replace=False)
        for p in cuts:
            if cfg.holdout_fraction and rng.random() < cfg.holdout_fraction:
                samples.append((u, len(h), int(rng.integers(len(h)))))
            else:
                samples.append((u, int(p), -1))
    rng.shuffle(samples)
    return samples


def length_batches(
    samples: list[Sample], batch_size: int, rng: np.random.Generator, pool: int = 32
) -> list[list[Sample]]:
    """Batches of samples with similar context lengths, in random order.

    ``build_inputs`` pads a batch to its longest context; on long-tailed histories a random
    batch almost always holds one long user. Each run of ``pool`` batches (samples already
    shuffled) is sorted by context length before it is cut, so batches stay random draws of
    the data but pad little.
    """
    batches: list[list[Sample]] = []
    span = batch_size * pool
    for start in range(0, len(samples), span):
        chunk = sorted(samples[start : start + span], key=lambda s: s[1])  # s[1]: context events
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def sample_context(
    dataset: EventDataset, sample: Sample, policy: MixingPolicyProtocol | None, scenarios: tuple[int, ...] | None
) -> SequenceInput:
    """The model input of one sample: events before the cut, minus the held-out one."""
    u, p, held = sample
    h = dataset.histories[u]
    if held >= 0:
        h, p = h.without([held]), p - 1
    return h.context(p, policy, scenarios)


def own_view_draws(batch: list[Sample], share: float, rng: np.random.Generator) -> np.ndarray:
    """``[B]`` 1.0 for the held-out samples that train in the own view (each with probability
    ``share``), 0.0 for the rest; a plain cut has targets in every scenario, so it stays whole."""
    held = np.array([s[2] >= 0 for s in batch])
    return (held & (rng.random(len(batch)) < share)).astype(np.float32)


def _targets(dataset: EventDataset, rows: list[np.ndarray], batch: list[Sample], cfg: TrainConfig) -> np.ndarray:
    """``[B, S, K]`` vocabulary rows of each scenario's next events inside the window (0: none);
    a held-out sample has one target, its held-out event."""
    n_scen, k = len(cfg.model.scenarios), cfg.targets_per_scenario
    out = np.zeros((len(batch), n_scen, k), np.int64)
    for b, (u, p, held) in enumerate(batch):
        h = dataset.histories[u]
        if held >= 0:
            s = int(h.scenario_idx[held])
            if (cfg.scenario_mask is None or cfg.scenario_mask[s]) and rows[u][held] > 1:
                out[b, s, 0] = rows[u][held]
            continue
        horizon = np.iinfo(np.int64).max if cfg.target_window_ms is None else h.ts_ms[p - 1] + cfg.target_window_ms
        for s in range(n_scen):
            if cfg.scenario_mask is not None and not cfg.scenario_mask[s]:
                continue
            pos = np.flatnonzero((h.scenario_idx[p:] == s) & (rows[u][p:] > 1) & (h.ts_ms[p:] <= horizon))
            found = rows[u][p:][pos[:k]]
            out[b, s, : len(found)] = found
    return out


def _users_positives(candidates: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: which ``candidates`` are among each user's positives (``targets``, ``[B, S, K]``),
    to be masked as false negatives."""
    return (candidates[None, None, :] == targets.flatten(1)[:, :, None]).any(1)


def info_nce(
    model: InterestModel, interests: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
    in_batch: bool = True, log_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-positive InfoNCE: each positive is matched to its scenario's best query (argmax)
    and scored against sampled negatives (and, with ``in_batch``, the batch's other targets),
    with the user's other positives masked out (false negatives).

    In-batch candidates are drawn from the target distribution, so they teach the model to
    score popular items *down*; with uniform negatives alone the scores estimate
    log p(item | user) up to a constant, popularity included, unless ``log_prior``
    (``[scenarios, n_items]``, uniform negatives only) adds each item's log popularity in the
    target's scenario to its logit: then the vectors' part is what the user adds to it."""
    cand = torch.unique(torch.cat([targets[targets > 0], negatives]))
    if not in_batch:
        return _uniform_nce(model, interests, targets, negatives, log_prior=log_prior)
    if log_prior is not None:
        raise ValueError("log_prior needs uniform negatives alone (in_batch=False)")
    vecs = model.item_vectors(cand)  # [C, D]
    sims = torch.einsum("bsqd,cd->bsqc", interests, vecs)
    b_idx, s_idx, k_idx = torch.nonzero(targets > 0, as_tuple=True)
    pos_c = torch.searchsorted(cand, targets[b_idx, s_idx, k_idx])
    per_q = sims[b_idx, s_idx, :, pos_c]  # [P, Q]
    best_q = per_q.detach().argmax(dim=1)
    logits = sims[b_idx, s_idx, best_q, :] / model.temperature()  # [P, C]
    user_pos = _users_positives(cand, targets)  # [B, C]
    false_neg = user_pos[b_idx]
    false_neg[torch.arange(len(pos_c)), pos_c] = False
    logits = logits.masked_fill(false_neg, float("-inf"))
    return F.cross_entropy(logits, pos_c)


def _uniform_nce(
    model: InterestModel, interests: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
    item_vectors: Callable[[torch.Tensor], torch.Tensor] | None = None, log_prior: torch.Tensor | None = None,
) -> torch.Tensor:
    item_vectors = item_vectors or model.item_vectors
    b_idx, s_idx, k_idx = torch.nonzero(targets > 0, as_tuple=True)
    pos = targets[b_idx, s_idx, k_idx]
    u = interests[b_idx, s_idx]  # [P, Q, D]
    pos_sim = torch.einsum("pqd,pd->pq", u, item_vectors(pos))
    best_q = pos_sim.detach().argmax(dim=1)
    u_best = u[torch.arange(len(pos)), best_q]  # [P, D]
    neg_sim = u_best @ item_vectors(negatives).T  # [P, N]
    # a user's positives among the negatives, found per user ([B, N]) and then per positive
    user_pos = _users_positives(negatives, targets)[b_idx]  # [P, N]
    logits = torch.cat([pos_sim.gather(1, best_q[:, None]), neg_sim], dim=1) / model.temperature()
    if log_prior is not None:  # [P, 1 + N]: each candidate's log popularity in the positive's scenario
        logits = logits + torch.cat([log_prior[s_idx, pos][:, None], log_prior[:, negatives][s_idx]], dim=1)
    logits[:, 1:] = logits[:, 1:].masked_fill(user_pos, float("-inf"))  # after scaling: finite tau grads
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device))


def new_item_loss(
    model: InterestModel, interests: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """The InfoNCE of uniform negatives again, every item (positives and negatives) by its vector
    from its text alone (``text_item_vectors``: what a new item gets), against the users' vectors
    held fixed: the text path learns to rank in the users' space without pulling the users towards
    the texts' shared directions (scoring a share of the main loss's items by text did: MovieLens
    users shared their top item)."""
    return _uniform_nce(model, interests.detach(), targets, negatives, item_vectors=model.item_vectors_from_text)


def item_pair_loss(
    model: InterestModel, item_idx: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor,
    draw: torch.Tensor, newest: int = 5, tau: float | None = None,
) -> torch.Tensor:
    """The InfoNCE of uniform negatives with an item in the user's place: each positive against
    one known item of its context's ``newest`` latest events (``item_idx`` left-aligned; the one
    with the largest ``draw``, ``[B, T]`` uniform), so that items a user touches one after the
    other lie close. The recent items, the pool and the repeat items score a candidate by its
    cosine to the user's own items (``InterestModel``), which the user-to-item loss never
    trains; a positive that is the drawn item itself is left out (it scores 1 against itself).
    ``tau``: its own temperature (None: the model's learned one). Off in the recipe
    (``TrainConfig.item_pair_weight``; docs/model.md)."""
    known = (mask > 0) & (item_idx >= FIRST_ITEM_ROW)
    later = known.flip(1).cumsum(1).flip(1)  # known events at or after each one: 1 = the newest
    pick = torch.where(known & (later <= newest), draw, torch.full_like(draw, -1.0)).argmax(dim=1)
    anchor = torch.where(known.any(dim=1), item_idx.gather(1, pick[:, None]).squeeze(1), torch.zeros_like(pick))
    b_idx, s_idx, k_idx = torch.nonzero(targets > 0, as_tuple=True)
    pos = targets[b_idx, s_idx, k_idx]
    keep = (anchor[b_idx] > 0) & (anchor[b_idx] != pos)
    if not keep.any():
        return item_idx.new_zeros((), dtype=torch.float32)
    b_idx, pos = b_idx[keep], pos[keep]
    a = model.item_vectors(anchor[b_idx])  # [P, D]
    neg_sim = a @ model.item_vectors(negatives).T  # [P, N]
    logits = torch.cat([(a * model.item_vectors(pos)).sum(dim=1, keepdim=True), neg_sim], dim=1)
    logits = logits / (model.temperature() if tau is None else tau)
    user_pos = _users_positives(negatives, targets)[b_idx]
    # after scaling: finite tau grads
    logits[:, 1:] = logits[:, 1:].masked_fill(user_pos | (negatives[None, :] == anchor[b_idx, None]), float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=logits.device))


@torch.no_grad()
def update_ema(averaged: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """``averaged <- decay * averaged + (1 - decay) * model``, parameter by parameter (buffers are
    left as copied: the model keeps no running statistics)."""
    for avg, current in zip(averaged.parameters(), model.parameters(), strict=True):
        avg.lerp_(current, 1.0 - decay)


def trained_prior(model: InterestModel, config: TrainConfig) -> tuple[float, ...]:
    """Per scenario the popularity prior that ``popularity_weight`` stands for in cosine units
    (weight x temperature; the served prior reads the items' counts over every scenario); empty
    without it."""
    if config.popularity_weight == 0:
        return ()
    return (config.popularity_weight * model.temperature().item(),) * len(model.cfg.scenarios)


def _as_scored(model: InterestModel, config: TrainConfig) -> InterestModel:
    """The model as validation scores it: with the prior its training stands for."""
    prior = trained_prior(model, config)
    return model.with_item_prior(prior) if prior else model


def _with_prior(cfg: ModelConfig, trained: tuple[float, ...]) -> ModelConfig:
    """``cfg`` serving ``trained`` plus the prior it was given (``item_prior``, per scenario)."""
    if not trained:
        return cfg
    given = cfg.item_prior or (0.0,) * len(trained)
    return cfg.with_(item_prior=tuple(t + g for t, g in zip(trained, given, strict=True)))


def _to_device(inputs: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}


def train(
    config: TrainConfig,
    dataset: EventDataset,
    policy: MixingPolicyProtocol | None,
    out_dir: Path,
    text_fn: TextFn | None = None,
    eval_fn: EvalFn | None = None,
    mixing_policy: dict[str, Any] | None = None,
) -> Path:
    """Train the interest model and save ``out_dir/model.pt``; returns the checkpoint path.

    ``eval_fn`` (higher is better) selects the best epoch; without it the last epoch is kept.
    ``mixing_policy`` (JSON-able) describes the policy; it travels into the checkpoint and
    the export manifest so serving can refuse a different one.
    """
    if dataset.content is None and config.model.content_dim:  # derived from the training events alone
        dataset.content = cooccurrence_table(dataset.histories, dataset, config.model.content_dim, config.seed)
    cfg = config.model.with_(n_items=dataset.n_items)
    if dataset.content is not None and cfg.content_dim != dataset.content.shape[1]:
        cfg = cfg.with_(content_dim=int(dataset.content.shape[1]))
    if cfg.use_text and text_fn is None:
        raise ConfigError("use_text=True needs a text encoder (text_fn)")
    if cfg.content_text and cfg.content_dim < cfg.text_dim:
        raise ConfigError(f"content_text=True needs the item texts' {cfg.text_dim} columns in the content "
                          f"table, which has {cfg.content_dim}")
    config = replace(config, model=cfg)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    content = None if dataset.content is None else torch.from_numpy(dataset.content)
    # one pass over the events for both the prior's counts and the loss's per-scenario ones
    per_scenario = scenario_item_counts(dataset.histories, dataset, len(cfg.scenarios)) \
        if cfg.item_counts or config.popularity_weight > 0 else None
    counts = torch.from_numpy(per_scenario.sum(axis=0)) if cfg.item_counts else None
    log_prior = None if config.popularity_weight == 0 else \
        (config.popularity_weight * torch.from_numpy(np.log1p(per_scenario)).float()).to(device)
    # training scores the learned queries alone; the checkpoint keeps the recent-item weights, pool and prior
    model = InterestModel(cfg.with_(recent_weights=(), recent_pool=(), item_prior=()), content, counts).to(device)
    with torch.no_grad():
        model.log_tau.fill_(float(np.log(config.init_tau)))
    averaged = copy.deepcopy(model) if config.ema_decay is not None else model  # what is scored and saved
    new_items = cfg.content_text and config.new_item_weight > 0
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    rows = [dataset.item_rows(h) for h in dataset.histories]
    cached_text_fn = _cached(text_fn) if text_fn is not None else None
    best, best_epoch, best_state, history = -np.inf, 0, None, []
    n_samples = len(make_samples(dataset, config, np.random.default_rng(0)))
    steps_per_epoch = max(1, -(-n_samples // config.batch_size))
    epochs = max(config.epochs, min(config.max_epochs, -(-config.min_steps // steps_per_epoch)))
    total_steps = epochs * steps_per_epoch
    logger.info("epochs=%d steps_per_epoch=%d total_steps=%d", epochs, steps_per_epoch, total_steps)
    warmup = max(1, total_steps // 20)
    plateau = [1.0]  # the learning-rate factor that ``lr_decay_on_plateau`` lowers
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: plateau[0] * min(1.0, (s + 1) / warmup)
        * 0.5 * (1 + np.cos(np.pi * min(s, total_steps) / max(total_steps, 1))),
    )
    step = 0
    for epoch in range(epochs):
        model.train()
        samples = make_samples(dataset, config, rng)
        losses = []
        t0 = time.perf_counter()
        bar = tqdm(
            length_batches(samples, config.batch_size, rng), disable=not config.progress, desc=f"epoch {epoch}",
            leave=False,
        )
        for batch in bar:
            targets = _targets(dataset, rows, batch, config)
            if not targets.any():
                continue
            seqs = [sample_context(dataset, sample, policy, config.input_scenarios) for sample in batch]
            inputs = _to_device(build_inputs(seqs, dataset.index, cfg, cached_text_fn), device)
            if config.own_view > 0:  # else every row is in the all view: the cheaper key-only mask
                inputs["own_view"] = torch.from_numpy(own_view_draws(batch, config.own_view, rng)).to(device)
            negatives = torch.from_numpy(rng.integers(2, dataset.n_items, config.n_negatives)).to(device)
            interests, target_rows = model(**inputs), torch.from_numpy(targets).to(device)
            loss = info_nce(model, interests, target_rows, negatives, in_batch=config.in_batch_negatives,
                            log_prior=log_prior)
            if new_items:
                loss = loss + config.new_item_weight * new_item_loss(model, interests, target_rows, negatives)
            if config.item_pair_weight > 0:
                loss = loss + config.item_pair_weight * item_pair_loss(
                    model, inputs["item_idx"], inputs["mask"], target_rows, negatives,
                    torch.from_numpy(rng.random(inputs["item_idx"].shape)).to(device), tau=config.item_pair_tau)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if step < total_steps:
                sched.step()
            step += 1
            if averaged is not model:
                update_ema(averaged, model, min(config.ema_decay, (1 + step) / (10 + step)))
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        score = eval_fn(_as_scored(averaged.eval(), config)) if eval_fn is not None \
            else -float(np.mean(losses or [0.0]))
        history.append({"epoch": epoch, "loss": float(np.mean(losses or [0.0])), "score": float(score),
                        "lr": float(opt.param_groups[0]["lr"])})
        logger.info(
            "epoch=%d loss=%.4f score=%.4f tau=%.3f seconds=%.1f",
            epoch,
            history[-1]["loss"],
            score,
            model.temperature().item(),
            time.perf_counter() - t0,
        )
        if eval_fn is None or score > best:
            best, best_epoch = score, epoch
            best_state = {k: v.detach().cpu().clone() for k, v in averaged.state_dict().items()}
        elif (
            config.patience is not None
            and epoch - best_epoch >= config.patience
            and (epoch - best_epoch) * steps_per_epoch >= config.patience_steps
        ):
            logger.info("early stop epoch=%d best_epoch=%d", epoch, best_epoch)
            break
        elif config.lr_decay_on_plateau is not None:
            plateau[0] *= config.lr_decay_on_plateau
            logger.info("no new best: learning rate factor %.3g", plateau[0])
    if best_state is not None:  # the saved weights' temperature sets the prior they serve
        averaged.load_state_dict(best_state)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / CHECKPOINT_NAME
    torch.save(
        {
            "model_config": _with_prior(cfg, trained_prior(averaged, config)).to_dict(),
            "train_config": config.to_dict(),
            "state_dict": best_state,
            "items": dataset.items,
            "item_scenarios": dataset.item_scenario_bits().tolist(),
            "history": history,
            "mixing_policy": mixing_policy,
        },
        path,
    )
    logger.info("saved checkpoint=%s best_score=%.4f", path, best)
    return path


def load_checkpoint(path: Path) -> tuple[InterestModel, list[str], dict]:
    """Model (eval mode, CPU), item vocabulary and the raw checkpoint dict."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = InterestModel(ModelConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), list(ckpt["items"]), ckpt


def _cached(fn: TextFn) -> TextFn:
    memo: dict[str, np.ndarray] = {}

    def wrapped(texts: list[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in memo})
        if missing:
            memo.update(zip(missing, fn(missing), strict=True))
        return np.stack([memo[t] for t in texts]).astype(np.float32)

    return wrapped
