"""Frozen hyperparameter dataclasses for the interest model and its training run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from encoders.errors import ConfigError

__all__ = ["DEFAULT_ACTIONS", "DEFAULT_SCENARIOS", "ModelConfig", "TrainConfig"]

#: Our own copy of the shared vocabularies (``encoders`` never imports ``state``); the worker
#: checks at start-up that these match ``state.records``.
DEFAULT_SCENARIOS: tuple[str, ...] = ("feed", "search", "ads")
DEFAULT_ACTIONS: tuple[str, ...] = (
    "impression", "click", "like", "collect", "comment",
    "share", "follow", "hide", "query", "conversion",
)

#: Values that reproduce checkpoints saved before a key existed (new runs get the field default).
_LEGACY_MODEL_KEYS: dict[str, Any] = {"item_pool": False, "embedding_init_std": 1.0, "use_recency_rank": False,
                                       "item_counts": False}


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the user tower and item side; saved in the checkpoint and manifest."""

    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    actions: tuple[str, ...] = DEFAULT_ACTIONS
    n_queries: int = 3
    dim: int = 64
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    max_len: int = 128
    n_items: int = 2  # item vocabulary size including row 0 (padding) and row 1 (unknown)
    content_dim: int = 0  # width of the fixed item content table (0: id embeddings only)
    id_embedding: bool = True  # learned per-item rows (False: content table + 2 fallback rows)
    use_text: bool = False  # event texts (search queries, titles) through MiniLM vectors
    text_dim: int = 384
    use_time_gap: bool = True
    n_gap_buckets: int = 24
    use_hour: bool = True
    #: a learned embedding of each event's recency rank (0: the newest), and a per-query bias of
    #: the item pool by it. Day- or second-stamped histories (Amazon, Tianchi, MovieLens bursts)
    #: put many events in one time-gap bucket, and a transformer without it cannot tell their order.
    use_recency_rank: bool = True
    dropout: float = 0.1
    #: std of every embedding table and of the query tokens. Equal scales keep the item row a
    #: real share of each event token (torch's N(0, 1) default for the side embeddings drowned
    #: the 0.02 item rows: a token was ~99% "which scenario/action/when").
    embedding_init_std: float = 0.02
    #: direct path from the context's items into each user vector: every query output adds an
    #: attention-pooled mix of the context items' (pre-head) item representations, so a user
    #: vector cannot ignore which items the user touched. On validation users it lifted Tianchi
    #: next-buy NDCG@10 from 0.56 to 0.86 (users re-buy what they clicked), tied on synthetic
    #: data and was mixed on Amazon (docs/model.md).
    item_pool: bool = True
    #: scenarios whose query vectors read only that scenario's events (the *own view*); the
    #: others read every scenario. Chosen per scenario on validation users by ``evaluate``
    #: (on Amazon, Kitchen items in the context made the Food vectors memorise training users).
    own_view_scenarios: tuple[str, ...] = ()
    #: the content table's last ``text_dim`` columns are the MiniLM vector of each item's text
    #: (its title): an item the model never saw then gets a vector from its text alone
    #: (``InterestModel.text_item_vectors``; exported as ``new_items.onnx``)
    content_text: bool = False
    #: how many of the user's most recent distinct items join each scenario's vectors (see
    #: ``recent_weights``): the items the user just touched, which users come back to
    recent_items: int = 5
    #: per scenario ``(alpha, beta)``: after the ``n_queries`` learned vectors come the vectors of
    #: the ``recent_items`` most recent distinct context items (the scenario's own events in the
    #: own view), the k-th newest scaled by ``alpha * beta**k``; ``alpha`` 0 appends copies of the
    #: first learned vector instead (no effect on ``max_q``). Empty: learned vectors only (what
    #: training scores). ``evaluate`` chooses them on validation users (docs/model.md).
    recent_weights: tuple[tuple[float, float], ...] = ()
    #: per scenario ``(gamma, delta)``: each learned vector gets ``gamma * sum_k delta**k * v_k``
    #: added, ``v_k`` the k-th newest of the same recent items, so every item scores a little for
    #: its likeness to what the user just touched (the co-occurrence kNN's signal, in the model's
    #: space). Empty, or ``gamma`` 0: nothing added. ``evaluate`` chooses them on validation users.
    recent_pool: tuple[tuple[float, float], ...] = ()
    #: the model keeps each item's ``log(1 + its count of training events)`` (a buffer): the item
    #: side of ``item_prior``
    item_counts: bool = True
    #: per scenario ``lam``: every vector gains a last coordinate ``lam`` and every item vector
    #: one holding its log count, so an item scores ``lam * log(1 + count)`` more (its popularity
    #: prior; items the model never saw, 0). The learned vectors are unit length and cannot say
    #: "popular" by themselves. Empty: no coordinate. A checkpoint trained with
    #: ``TrainConfig.popularity_weight`` serves the prior that weight stands for plus the one it
    #: was given; ``evaluate`` chooses what to add on validation users (docs/model.md).
    item_prior: tuple[float, ...] = ()
    #: how many of the user's own items the repeat score appends to each scenario's vectors
    repeat_items: int = 10
    #: per scenario the repeat score's coefficients over ``encoders.repeat.repeat_features``
    #: (``n_repeat_features`` weights, then a constant; empty for a scenario without one), fit
    #: after training on the training histories' re-touched events (docs/model.md)
    repeat_coef: tuple[tuple[float, ...], ...] = ()
    #: per scenario ``(a, b)``: after the other vectors come the ``repeat_items`` context items
    #: of the view with the highest repeat score ``g``, each scaled by ``a + b * g`` (an item
    #: scored <= 0, or a free slot, copies the first vector: no effect on ``max_q``). Empty: none.
    #: ``evaluate`` chooses them on validation users, last (docs/model.md).
    repeat_weights: tuple[tuple[float, float], ...] = ()

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ConfigError(f"d_model={self.d_model} not divisible by n_heads={self.n_heads}")
        if min(self.n_queries, self.dim, self.max_len, len(self.scenarios)) < 1:
            raise ConfigError("n_queries, dim, max_len and scenarios must be positive")
        if self.n_items < 2:
            raise ConfigError("n_items counts the padding and unknown rows, so it is >= 2")
        unknown = sorted(set(self.own_view_scenarios) - set(self.scenarios))
        if unknown:
            raise ConfigError(f"own_view_scenarios {unknown} are not among the scenarios {list(self.scenarios)}")
        if self.recent_weights and len(self.recent_weights) != len(self.scenarios):
            raise ConfigError(f"recent_weights needs one (alpha, beta) per scenario ({len(self.scenarios)}), "
                              f"got {len(self.recent_weights)}")
        if any(a < 0 or not 0 < b <= 1 for a, b in self.recent_weights):
            raise ConfigError(f"recent_weights: alpha must be >= 0 and beta in (0, 1], got {self.recent_weights}")
        if self.recent_pool and len(self.recent_pool) != len(self.scenarios):
            raise ConfigError(f"recent_pool needs one (gamma, delta) per scenario ({len(self.scenarios)}), "
                              f"got {len(self.recent_pool)}")
        if any(g < 0 or not 0 < d <= 1 for g, d in self.recent_pool):
            raise ConfigError(f"recent_pool: gamma must be >= 0 and delta in (0, 1], got {self.recent_pool}")
        if self.recent_items < 0:
            raise ConfigError(f"recent_items={self.recent_items} must be >= 0")
        if self.item_prior and (len(self.item_prior) != len(self.scenarios) or min(self.item_prior) < 0):
            raise ConfigError(f"item_prior needs one weight >= 0 per scenario ({len(self.scenarios)}), "
                              f"got {self.item_prior}")
        if self.item_prior and not self.item_counts:
            raise ConfigError("item_prior needs the item counts (item_counts=True)")
        if self.repeat_items < 0:
            raise ConfigError(f"repeat_items={self.repeat_items} must be >= 0")
        if self.repeat_weights and (len(self.repeat_weights) != len(self.scenarios)
                                    or len(self.repeat_coef) != len(self.scenarios)):
            raise ConfigError(f"repeat_weights and repeat_coef need one entry per scenario ({len(self.scenarios)}), "
                              f"got {len(self.repeat_weights)} and {len(self.repeat_coef)}")
        width = 5 + 2 * len(self.scenarios)  # encoders.repeat.n_repeat_features + a constant
        if any(c and len(c) != width for c in self.repeat_coef):
            raise ConfigError(f"repeat_coef: each scenario's needs {width} numbers or none")

    @property
    def n_vectors(self) -> int:
        """Vectors per scenario in the model's output: the learned queries, then the recent items,
        then the repeat items."""
        return (self.n_queries + (self.recent_items if self.recent_weights else 0)
                + (self.repeat_items if self.repeat_weights else 0))

    @property
    def vector_dim(self) -> int:
        """Width of the served user and item vectors: ``dim``, plus the prior's coordinate."""
        return self.dim + (1 if self.item_prior else 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown ModelConfig keys: {sorted(unknown)}")
        data = {**_LEGACY_MODEL_KEYS, **data}  # checkpoints written before these keys existed
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        for key in ("recent_weights", "recent_pool", "repeat_coef", "repeat_weights"):
            values[key] = tuple(tuple(w) for w in values.get(key, ()))
        return cls(**values)

    def with_(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the model, the optimisation and the temporal-split sampling."""

    model: ModelConfig = field(default_factory=ModelConfig)
    seed: int = 0
    #: epochs = max(epochs, min(max_epochs, ceil(min_steps / steps_per_epoch))): at least ``epochs``
    #: passes and at least ``min_steps`` optimizer steps (small data otherwise trains ~40 steps and
    #: collapses to popularity; Tianchi next-buy NDCG@10 still rose from 600 to 1,800 steps); with
    #: validation users the best epoch is kept (``patience``).
    epochs: int = 8
    min_steps: int = 1800
    max_epochs: int = 200
    batch_size: int = 256
    lr: float = 3e-3
    weight_decay: float = 1e-4
    cuts_per_user: int = 8  # context/target cut points sampled per user and epoch
    targets_per_scenario: int = 6  # next events of each scenario used as positives
    #: positives are the next events after the cut at most this far away (None: at any distance,
    #: like the evaluation's last event). A 7-day window found no next event on day-stamped
    #: histories spread over years (Amazon), where only held-out samples then taught.
    target_window_ms: int | None = None
    holdout_fraction: float = 0.5  # share of samples whose target is a random event, context = the rest
    n_negatives: int = 4096  # sampled (uniform over the vocabulary) besides in-batch ones
    #: share of held-out samples trained in the own view (the model attends only to the held-out
    #: event's scenario; see ``InterestModel``): the other scenarios' events let the model
    #: memorise its training users (on Amazon the Food validation curve peaked at epoch 2 with
    #: them, and was still rising at epoch 7 without), and serving may give a scenario that view
    own_view: float = 0.5
    #: with item texts in the content table (``ModelConfig.content_text``): weight of the loss that
    #: ranks every item by its text-only vector against the users' vectors held fixed, so a new
    #: item's vector from its text ranks as the item would (``train.new_item_loss``; docs/model.md)
    new_item_weight: float = 1.0
    #: weight of the loss that ranks each positive by its likeness to one of the context's newest
    #: items (``train.item_pair_loss``): the recent items, pool and repeat items score candidates
    #: by item-to-item cosine, which the user-to-item loss alone never trains
    item_pair_weight: float = 0.0
    #: the item-pair loss's own temperature (None: the learned one of the user-to-item loss)
    item_pair_tau: float | None = None
    in_batch_negatives: bool = False  # True adds the batch's targets, which penalises popular items
    #: weight of each item's log(1 + its training events in the target's scenario), added to its
    #: logit in the uniform InfoNCE: the popularity the served prior (``item_prior``) adds back,
    #: which the users' vectors then need not carry in a direction they all share (docs/model.md)
    popularity_weight: float = 0.0
    #: with an eval_fn: stop after this many epochs, and at least ``patience_steps`` optimizer
    #: steps, without a new best (on small data an epoch is a few dozen steps of a noisy curve)
    patience: int | None = 3
    patience_steps: int = 240
    #: with an eval_fn: multiply the learning rate by this after each epoch without a new best
    #: (None: the cosine schedule alone)
    lr_decay_on_plateau: float | None = None
    init_tau: float = 0.1
    #: score and save an exponential moving average of the weights (decay per step, ~200 steps
    #: wide; None: the raw weights at each epoch's end). The best epoch comes mid-schedule, while
    #: the rate is still high, and 94 MovieLens validation users' NDCG@10 jumped 0.06-0.16
    #: between epochs; the average lifted development MovieLens and Amazon on two seeds each
    ema_decay: float | None = 0.995
    scenario_mask: tuple[bool, ...] | None = None  # train on these target scenarios only
    input_scenarios: tuple[int, ...] | None = None  # keep only these scenarios in the input
    threads: int = 2
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.holdout_fraction <= 1.0:
            raise ConfigError(f"holdout_fraction={self.holdout_fraction} is not within [0, 1]")
        if not 0.0 <= self.own_view <= 1.0:
            raise ConfigError(f"own_view={self.own_view} is not within [0, 1]")
        if self.new_item_weight < 0:
            raise ConfigError(f"new_item_weight={self.new_item_weight} is negative")
        if self.item_pair_weight < 0:
            raise ConfigError(f"item_pair_weight={self.item_pair_weight} is negative")
        if self.popularity_weight < 0:
            raise ConfigError(f"popularity_weight={self.popularity_weight} is negative")
        if self.popularity_weight > 0 and (self.in_batch_negatives or not self.model.item_counts):
            raise ConfigError("popularity_weight > 0 needs uniform negatives alone (in_batch_negatives=False) and "
                              "the item counts the served prior reads (ModelConfig.item_counts=True)")
        if self.item_pair_tau is not None and self.item_pair_tau <= 0:
            raise ConfigError(f"item_pair_tau={self.item_pair_tau} must be positive")
        if self.ema_decay is not None and not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay={self.ema_decay} is not within [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, the model config nested."""
        out = {k: v for k, v in asdict(self).items() if k != "model"}
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
        out["model"] = self.model.to_dict()
        return out
