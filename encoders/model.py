"""The interest model: event tokens, a small transformer, and per-scenario query tokens."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from encoders.config import ModelConfig
from encoders.errors import ConfigError
from encoders.features import UNKNOWN_ITEM
from encoders.repeat import newest_of_each_item, repeat_features, top_slots

__all__ = ["InterestModel"]


class Block(nn.Module):
    """Pre-norm transformer block with a key-padding mask (fused attention, ONNX exportable)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(), nn.Linear(4 * cfg.d_model, cfg.d_model)
        )
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, attn_bias: torch.Tensor) -> torch.Tensor:
        """``attn_bias``: ``[B, 1, 1 or T, T]`` additive attention bias (0 or -1e4)."""
        b, t, c = x.shape
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q = q.reshape(b, t, h, c // h).transpose(1, 2)
        k = k.reshape(b, t, h, c // h).transpose(1, 2)
        v = v.reshape(b, t, h, c // h).transpose(1, 2)
        # Fused attention (no dropout on the attention weights: on CPU it cost 5x the attention
        # itself); dropout stays on the residual branches.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias.to(q.dtype))
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(b, t, c)))
        return x + self.drop(self.mlp(self.ln2(x)))


class InterestModel(nn.Module):
    """Maps a mixed event sequence to ``[B, S, Q, D]`` L2-normalised interest vectors, and with
    ``cfg.recent_weights`` the scaled vectors of the user's most recent items after them
    (``cfg.recent_pool``: their decayed sum added to the learned ones, which are then not unit length).

    Items live in the same space: ``item_vectors(idx)`` passes the item token content through
    the shared projection head used for the query outputs.

    Two views of a sequence: in the *all* view every token attends to every event; in the *own*
    view each event and each scenario's queries attend only to events of their own scenario
    (recency ranks counted within it), as if the sequence held that scenario alone. Training
    passes ``own_view`` per row; serving gives the scenarios in ``cfg.own_view_scenarios`` the
    own view and the others the all view, both in one graph.
    """

    def __init__(self, cfg: ModelConfig, content: torch.Tensor | None = None,
                 item_counts: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        n_scen = len(cfg.scenarios)
        self.item_emb = nn.Embedding(cfg.n_items if cfg.id_embedding else 2, d, padding_idx=0)
        if cfg.content_dim:
            table = content if content is not None else torch.zeros(cfg.n_items, cfg.content_dim)
            self.register_buffer("content", table.float().clone())
            self.content_proj = nn.Linear(cfg.content_dim, d)
        if cfg.item_counts:  # the item side of ``cfg.item_prior``: log(1 + training events) per row
            counts = item_counts if item_counts is not None else torch.zeros(cfg.n_items)
            self.register_buffer("item_log_count", torch.log1p(counts.double()).float())
        if cfg.use_text:
            self.text_proj = nn.Linear(cfg.text_dim, d)
        self.scen_emb = nn.Embedding(n_scen, d)
        self.action_emb = nn.Embedding(len(cfg.actions), d)
        self.gap_emb = nn.Embedding(cfg.n_gap_buckets, d) if cfg.use_time_gap else None
        self.hour_emb = nn.Embedding(24, d) if cfg.use_hour else None
        self.rank_emb = nn.Embedding(cfg.max_len, d) if cfg.use_recency_rank else None
        self.queries = nn.Parameter(torch.randn(n_scen * cfg.n_queries, d) * cfg.embedding_init_std)
        for emb in (self.item_emb, self.scen_emb, self.action_emb, self.gap_emb, self.hour_emb, self.rank_emb):
            if emb is not None:
                nn.init.normal_(emb.weight, std=cfg.embedding_init_std)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()  # padding row
        self.pool_q = nn.Linear(d, d) if cfg.item_pool else None
        # per query, a learned bias of the pool's attention by recency rank (starts neutral)
        self.pool_rank = (
            nn.Embedding(cfg.max_len, n_scen * cfg.n_queries) if cfg.item_pool and cfg.use_recency_rank else None
        )
        if self.pool_rank is not None:
            nn.init.zeros_(self.pool_rank.weight)
        self.register_buffer(
            "query_scen", torch.arange(n_scen).repeat_interleave(cfg.n_queries), persistent=False
        )
        self.ln_in = nn.LayerNorm(d)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.dim)
        self.log_tau = nn.Parameter(torch.tensor(0.0))
        self.drop = nn.Dropout(cfg.dropout)
        own = torch.tensor([s in cfg.own_view_scenarios for s in cfg.scenarios])
        self.register_buffer("own_scenarios", own, persistent=False)

    def with_own_views(self, scenarios: tuple[str, ...]) -> InterestModel:
        """The same weights, serving ``scenarios`` in the own view (a new model, eval mode)."""
        return self._served_as(own_view_scenarios=scenarios)

    def with_recent_weights(self, weights: tuple[tuple[float, float], ...],
                            pool: tuple[tuple[float, float], ...] = ()) -> InterestModel:
        """The same weights, appending the recent items scaled by ``weights`` (per scenario
        ``(alpha, beta)``) to each scenario's vectors and adding their sum decayed by ``pool``
        (per scenario ``(gamma, delta)``) to its learned ones; empty: none (a new model, eval mode)."""
        return self._served_as(recent_weights=tuple(weights), recent_pool=tuple(pool))

    def with_repeat(self, coef: tuple[tuple[float, ...], ...],
                    weights: tuple[tuple[float, float], ...]) -> InterestModel:
        """The same weights, appending each scenario's repeat items (``coef``: the repeat score's
        coefficients, ``weights``: per scenario ``(a, b)``; empty: none; a new model, eval mode)."""
        return self._served_as(repeat_coef=tuple(coef), repeat_weights=tuple(weights))

    def with_item_prior(self, weights: tuple[float, ...]) -> InterestModel:
        """The same weights, serving each scenario's popularity prior ``weights`` (per scenario
        ``lam``; empty: none): the vectors gain one coordinate (a new model, eval mode)."""
        return self._served_as(item_prior=tuple(weights))

    def _served_as(self, **changes: object) -> InterestModel:
        model = InterestModel(self.cfg.with_(**changes))
        model.load_state_dict(self.state_dict())
        return model.to(self.log_tau.device).eval()

    def item_content(self, item_idx: torch.Tensor) -> torch.Tensor:
        """Token content of items: learned id row plus projected content row."""
        x = self.item_emb(item_idx if self.cfg.id_embedding else item_idx.clamp(max=1))
        if self.cfg.content_dim:
            x = x + self.content_proj(self.content[item_idx]) * (item_idx > 0).unsqueeze(-1).to(x.dtype)
        return x

    def item_vectors(self, item_idx: torch.Tensor) -> torch.Tensor:
        """L2-normalised item vectors in the interest space (shared head)."""
        return F.normalize(self.head(self.ln_f(self.item_content(item_idx))), dim=-1)

    def served_item_vectors(self, item_idx: torch.Tensor, from_text: bool = False) -> torch.Tensor:
        """``item_vectors`` as served (``cfg.vector_dim`` wide): with ``cfg.item_prior`` each
        ends in the item's log count, which the user vectors' last coordinate weighs.
        ``from_text``: what the items would get as new items (``item_vectors_from_text``, count 0)."""
        vectors = self.item_vectors_from_text(item_idx) if from_text else self.item_vectors(item_idx)
        if not self.cfg.item_prior:
            return vectors
        counts = torch.zeros_like(vectors[..., :1]) if from_text else self.item_log_count[item_idx].unsqueeze(-1)
        return torch.cat([vectors, counts.to(vectors.dtype)], dim=-1)

    def served_text_item_vectors(self, text_vec: torch.Tensor) -> torch.Tensor:
        """``text_item_vectors`` as served: a new item has no training events, so its log count is 0."""
        vectors = self.text_item_vectors(text_vec)
        return F.pad(vectors, (0, 1)) if self.cfg.item_prior else vectors

    def text_item_vectors(self, text_vec: torch.Tensor) -> torch.Tensor:
        """Item vectors for items the model never saw, from ``[N, text_dim]`` MiniLM vectors of
        their texts: the unknown item's id row plus the projected content row, whose text columns
        hold the vector and whose other (co-occurrence) columns are zero, as a new item has none."""
        cfg = self.cfg
        if not cfg.content_text or cfg.content_dim < cfg.text_dim:
            raise ConfigError("this model has no item text in its content table (train with --use-text)")
        content = F.pad(text_vec, (cfg.content_dim - cfg.text_dim, 0))
        x = self.item_emb.weight[UNKNOWN_ITEM] + self.content_proj(content)
        return F.normalize(self.head(self.ln_f(x)), dim=-1)

    def item_vectors_from_text(self, item_idx: torch.Tensor) -> torch.Tensor:
        """What vocabulary items would get as new items: ``text_item_vectors`` of the text columns
        of their content rows (training's new-item loss and the evaluation score these)."""
        return self.text_item_vectors(self.content[item_idx, -self.cfg.text_dim :])

    def forward(
        self,
        item_idx: torch.Tensor,
        scenario_idx: torch.Tensor,
        action_idx: torch.Tensor,
        gap_bucket: torch.Tensor,
        hour: torch.Tensor,
        mask: torch.Tensor,
        text_vec: torch.Tensor | None = None,
        has_text: torch.Tensor | None = None,
        own_view: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, S, V, D]`` interest vectors (``V = cfg.n_vectors``: the learned queries, then the
        recent items when ``cfg.recent_weights`` is set, then the repeat items when
        ``cfg.repeat_weights`` is; ``D = cfg.vector_dim``: with
        ``cfg.item_prior`` each scenario's vectors end in its weight). ``own_view`` (``[B]``, 1: the
        own view for every scenario of that row); None: each scenario in the view
        ``cfg.own_view_scenarios`` says."""
        inputs = (item_idx, scenario_idx, action_idx, gap_bucket, hour, mask, text_vec, has_text)
        if own_view is not None:
            learned = self._encode(*inputs, own_view=own_view)
            own = (own_view[:, None] > 0).expand(-1, len(self.cfg.scenarios))
        elif not self.cfg.own_view_scenarios:
            learned, own = self._encode(*inputs, own_view=None), self.own_scenarios[None, :]
        else:
            b = item_idx.shape[0]
            doubled = [None if t is None else torch.cat([t, t]) for t in inputs]
            views = torch.cat([torch.zeros(b, dtype=mask.dtype, device=mask.device), torch.ones_like(mask[:, 0])])
            both = self._encode(*doubled, own_view=views)
            learned = torch.where(self.own_scenarios[None, :, None, None], both[b:], both[:b])
            own = self.own_scenarios[None, :]
        out = learned
        if self.cfg.recent_weights or self.cfg.recent_pool:
            out = self._with_recent_items(learned, item_idx, scenario_idx, mask, own)
        if self.cfg.repeat_weights:
            out = self._with_repeat_items(out, *self._repeat_slots(item_idx, scenario_idx, mask, own))
        if not self.cfg.item_prior:
            return out
        prior = torch.tensor(self.cfg.item_prior, dtype=out.dtype, device=out.device)
        return torch.cat([out, prior[None, :, None, None] * torch.ones_like(out[..., :1])], dim=-1)

    @torch.no_grad()
    def repeat_slots(self, item_idx: torch.Tensor, scenario_idx: torch.Tensor, action_idx: torch.Tensor,
                     gap_bucket: torch.Tensor, hour: torch.Tensor, mask: torch.Tensor,
                     text_vec: torch.Tensor | None = None,
                     has_text: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """For ``forward``'s inputs (served views): per scenario the vectors of the
        ``repeat_items`` context items with the highest repeat score (``[B, S, R, D]``) and their
        scores (``[B, S, R]``, -1e4 for a free slot), before ``repeat_weights`` scale them."""
        return self._repeat_slots(item_idx, scenario_idx, mask, self.own_scenarios[None, :])

    def repeat_inputs(self, item_idx: torch.Tensor, scenario_idx: torch.Tensor, mask: torch.Tensor,
                      scenario: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``encoders.repeat.repeat_features`` of scenario ``scenario`` in its served view:
        what the repeat score's coefficients are fit on."""
        seen = self._view_events(item_idx, scenario_idx, mask, self.own_scenarios[None, :], scenario)
        return repeat_features(item_idx, scenario_idx, seen, len(self.cfg.scenarios))

    @staticmethod
    def _view_events(item_idx: torch.Tensor, scenario_idx: torch.Tensor, mask: torch.Tensor, own: torch.Tensor,
                     s: int) -> torch.Tensor:
        """``[B, T]`` 0/1: the events of known items that scenario ``s``'s view reads."""
        known = mask * (item_idx > UNKNOWN_ITEM).to(mask.dtype)
        own_s = own[:, s : s + 1].to(mask.dtype)
        return known * (own_s * (scenario_idx == s).to(mask.dtype) + 1.0 - own_s)

    def _repeat_slots(self, item_idx: torch.Tensor, scenario_idx: torch.Tensor, mask: torch.Tensor,
                      own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``repeat_slots`` for the views ``own`` (``[B or 1, S]``); a scenario without a repeat
        score gets free slots only."""
        cfg = self.cfg
        n_scen, k = len(cfg.scenarios), cfg.repeat_items
        vectors = self.item_vectors(item_idx)  # [B, T, D]
        slots, scores = [], []
        for s in range(n_scen):
            coef = cfg.repeat_coef[s] if cfg.repeat_coef else ()
            if not coef:
                slots.append(vectors.new_zeros(vectors.shape[0], k, vectors.shape[2]))
                scores.append(vectors.new_full((vectors.shape[0], k), -1e4))
                continue
            features, latest = repeat_features(item_idx, scenario_idx,
                                               self._view_events(item_idx, scenario_idx, mask, own, s), n_scen)
            c = torch.tensor(coef, dtype=vectors.dtype, device=vectors.device)
            g = features @ c[:-1] + c[-1]
            pick = top_slots(g, latest, k)  # [B, K, T]
            slots.append(pick @ vectors)
            scores.append(torch.where(pick.sum(dim=2) > 0, (pick @ g[:, :, None]).squeeze(2),
                                      torch.full_like(pick[:, :, 0], -1e4)))
        return torch.stack(slots, dim=1), torch.stack(scores, dim=1)

    def _with_repeat_items(self, out: torch.Tensor, slots: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """``out`` (``[B, S, V, D]``) with the repeat items appended, each scaled by ``a + b * g``;
        an item scored <= 0, or a free slot, copies the scenario's first vector."""
        ab = torch.tensor(self.cfg.repeat_weights, dtype=out.dtype, device=out.device)  # [S, 2]
        weight = ab[None, :, :1] + ab[None, :, 1:] * scores
        weight = torch.where(scores > -1e3, weight, torch.zeros_like(weight))
        fallback = out[:, :, :1, :].expand(-1, -1, slots.shape[2], -1)
        return torch.cat([out, torch.where((weight > 0)[..., None], slots * weight[..., None], fallback)], dim=2)

    def _encode(self, *inputs: torch.Tensor | None, own_view: torch.Tensor | None) -> torch.Tensor:
        """``forward``'s inputs, in its order, with every row's view given (None: the all view)."""
        item_idx, scenario_idx, action_idx, gap_bucket, hour, mask, text_vec, has_text = inputs
        cfg = self.cfg
        x = self.item_content(item_idx) + self.scen_emb(scenario_idx) + self.action_emb(action_idx)
        if self.gap_emb is not None:
            x = x + self.gap_emb(gap_bucket)
        if self.hour_emb is not None:
            x = x + self.hour_emb(hour)
        rank = self._recency_rank(mask)
        if own_view is not None:
            rank = torch.where(own_view[:, None] > 0, self._scenario_rank(scenario_idx, mask), rank)
        if self.rank_emb is not None:
            x = x + self.rank_emb(rank)
        if cfg.use_text and text_vec is not None and has_text is not None:
            x = x + self.text_proj(text_vec) * has_text.unsqueeze(-1)
        b = x.shape[0]
        q = (self.queries + self.scen_emb(self.query_scen)).unsqueeze(0).expand(b, -1, -1)
        x = self.drop(self.ln_in(torch.cat([x, q], dim=1)))
        keep = torch.cat([mask, torch.ones(b, q.shape[1], dtype=mask.dtype, device=mask.device)], 1)
        if own_view is None:
            allowed = keep[:, None, None, :]  # [B, 1, 1, L]
        else:
            tok_scen = torch.cat([scenario_idx, self.query_scen.unsqueeze(0).expand(b, -1)], 1)
            allowed = keep[:, None, :] * self._view_mask(tok_scen, tok_scen, own_view)
            allowed = allowed[:, None]  # [B, 1, L, L]
        for block in self.blocks:
            x = block(x, (1.0 - allowed) * -1e4)
        h = self.ln_f(x[:, -q.shape[1]:, :])
        if self.pool_q is not None:
            h = h + self._pool_items(h, item_idx, scenario_idx, mask, rank, own_view)
        out = F.normalize(self.head(h), dim=-1)
        return out.reshape(b, len(cfg.scenarios), cfg.n_queries, cfg.dim)

    @staticmethod
    def _view_mask(rows: torch.Tensor, cols: torch.Tensor, own_view: torch.Tensor) -> torch.Tensor:
        """``[B, R, C]`` 1 where row token may see column token: always in the all view, only
        within the same scenario in the own view (``rows``/``cols``: scenario of each token)."""
        same = (rows[:, :, None] == cols[:, None, :]).to(own_view.dtype)
        own = own_view[:, None, None]
        return own * same + (1.0 - own)

    def _scenario_rank(self, scenario_idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` how many events of the same scenario are newer than each one (the recency
        rank the own view sees)."""
        n_scen = len(self.cfg.scenarios)
        onehot = (scenario_idx[:, :, None] == torch.arange(n_scen, device=mask.device)).to(mask.dtype)
        onehot = onehot * mask[:, :, None]
        upto = onehot.cumsum(dim=1)
        newer = (upto[:, -1:, :] - upto).gather(2, scenario_idx[:, :, None]).squeeze(2)
        return newer.to(torch.int64).clamp(0, self.cfg.max_len - 1)

    def _recency_rank(self, mask: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` how many events of the sequence are newer than each one (0: the newest),
        from the left-aligned mask; timestamps cannot say it when many events share a second or
        a day, and order is what recency-weighted co-occurrence lives on."""
        n = mask.sum(dim=1, keepdim=True).to(torch.int64)
        pos = torch.arange(mask.shape[1], device=mask.device, dtype=torch.int64).unsqueeze(0)
        return (n - 1 - pos).clamp(0, self.cfg.max_len - 1)

    def _pool_items(
        self, h: torch.Tensor, item_idx: torch.Tensor, scenario_idx: torch.Tensor, mask: torch.Tensor,
        rank: torch.Tensor, own_view: torch.Tensor | None,
    ) -> torch.Tensor:
        """``[B, S*Q, d]``: per query, an attention-weighted mean of the context items' pre-head
        representations ``ln_f(item_content)`` (the ones ``item_vectors`` sends through the head)
        it may see; zero for a query that sees no item."""
        z = self.ln_f(self.item_content(item_idx))  # [B, T, d]
        has_item = (mask * (item_idx > 0).to(mask.dtype))[:, None, :]  # [B, 1, T]
        if own_view is not None:
            query_scen = self.query_scen.unsqueeze(0).expand(h.shape[0], -1)
            has_item = has_item * self._view_mask(query_scen, scenario_idx, own_view)  # [B, S*Q, T]
        att = (self.pool_q(h) @ z.transpose(1, 2)) * (1.0 / math.sqrt(z.shape[-1]))
        att = att + (1.0 - has_item) * -1e4
        if self.pool_rank is not None:
            att = att + self.pool_rank(rank).transpose(1, 2)
        any_item = (has_item.sum(dim=2, keepdim=True) > 0).to(h.dtype)  # [B, 1 or S*Q, 1]
        return (att.softmax(dim=-1) @ z) * any_item

    def _with_recent_items(
        self, learned: torch.Tensor, item_idx: torch.Tensor, scenario_idx: torch.Tensor, mask: torch.Tensor,
        own: torch.Tensor,
    ) -> torch.Tensor:
        """``learned`` (``[B, S, Q, D]``) with each scenario's recent items: ``cfg.recent_pool``
        adds their decayed sum to every learned vector, then ``cfg.recent_weights`` appends them
        (``[B, S, Q + K, D]``), the k-th newest scaled by ``alpha * beta**k``. An appended slot
        with no item (short history), or ``alpha`` 0, repeats the scenario's first vector, which
        leaves ``max_q`` as it was."""
        cfg, k = self.cfg, self.cfg.recent_items
        n_scen = len(cfg.scenarios)
        weights = cfg.recent_weights or ((0.0, 1.0),) * n_scen
        pools = cfg.recent_pool or ((0.0, 1.0),) * n_scen
        vectors = self.item_vectors(item_idx)  # [B, T, D]
        t = item_idx.shape[1]
        newer = torch.ones(t, t, dtype=mask.dtype, device=mask.device).triu(1)  # [j, i]: i after j
        later_same = (item_idx[:, :, None] == item_idx[:, None, :]).to(mask.dtype) * newer  # [B, T, T]
        scenarios, appended = [], []
        for s in range(n_scen):
            (alpha, beta), (gamma, delta) = weights[s], pools[s]
            vecs = learned[:, s]  # [B, Q, D]
            if alpha > 0 or gamma > 0:
                seen = self._view_events(item_idx, scenario_idx, mask, own, s)
                recent, found = self._recent_items(vectors, seen, later_same)
                if gamma > 0:
                    decay = torch.tensor([gamma * delta**j for j in range(k)], dtype=vectors.dtype,
                                         device=mask.device)
                    vecs = vecs + (recent * found * decay[None, :, None]).sum(dim=1, keepdim=True)
            fallback = vecs[:, :1, :].expand(-1, k, -1)
            if alpha > 0:
                scale = torch.tensor([alpha * beta**j for j in range(k)], dtype=vectors.dtype, device=mask.device)
                appended.append(torch.where(found > 0, recent * scale[None, :, None], fallback))
            else:
                appended.append(fallback)
            scenarios.append(vecs)
        out = torch.stack(scenarios, dim=1)
        if not cfg.recent_weights:
            return out
        return torch.cat([out, torch.stack(appended, dim=1)], dim=2)

    def _recent_items(
        self, vectors: torch.Tensor, seen: torch.Tensor, later_same: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``K = cfg.recent_items`` most recent distinct items of the events ``seen`` (``[B, T]``,
        0/1: a scenario's view, ``_view_events``): their vectors (``[B, K, D]``, from ``vectors``:
        ``[B, T, D]``) and whether each slot holds one (``[B, K, 1]``, 0 or 1). ``later_same``
        (``[B, T, T]``): ``[j, i]`` 1 where event i is a later event of event j's item."""
        dtype = seen.dtype
        slots = torch.arange(self.cfg.recent_items, dtype=dtype, device=seen.device)
        latest, rank = newest_of_each_item(later_same, seen)
        pick = ((rank[:, None, :] == slots[None, :, None]) & (latest[:, None, :] > 0)).to(vectors.dtype)
        found = (pick.sum(dim=2, keepdim=True) > 0).to(vectors.dtype)
        return pick @ vectors, found

    def temperature(self) -> torch.Tensor:
        """Learnable softmax temperature, kept inside [0.01, 1]."""
        return self.log_tau.exp().clamp(0.01, 1.0)
