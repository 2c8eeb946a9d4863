"""Ad-targeting reads: users' stored vectors (Redis) scored against an exported item index.

``state`` reads Redis and ``encoders.item_index`` reads the artifact and scores; they meet here.
Neither torch nor ONNX Runtime is imported: a ranking service needs numpy, redis and the artifact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.reader import EmbeddingReader

__all__ = ["ItemIndex", "ItemTargeting", "TopItems", "rank_users"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopItems:
    """The best items of each scored user, and the users that could not be scored.

    ``ranked`` maps a user id to ``(item_id, score)`` pairs, best first. ``missing``: no vectors
    of the scenario in Redis (absent, expired, another ``Q × D``). ``other_model``: vectors
    computed by another model than the item index's (their spaces differ), not scored.
    ``unknown_candidates``: explicit candidates outside the model's vocabulary, not scored.
    """

    scenario: str
    ranked: dict[str, list[tuple[str, float]]]
    missing: list[str]
    other_model: list[str]
    unknown_candidates: list[str]


def rank_users(
    index: ItemIndex, scenario: str, user_ids: Sequence[str], vectors: np.ndarray,
    model_versions: Sequence[str | None], candidates: Sequence[str] | None = None, k: int = 10,
    found: np.ndarray | None = None,
) -> TopItems:
    """Score users' ``[N, Q, D]`` vectors of ``scenario`` (``found`` false: missing) in one batch.

    Vectors of another model (``model_versions``, or another ``D``) are reported, not scored."""
    vectors = np.asarray(vectors, dtype=np.float32)
    found = np.ones(len(user_ids), dtype=bool) if found is None else np.asarray(found, dtype=bool)
    same = np.array([mv == index.model_version for mv in model_versions], dtype=bool).reshape(found.shape)
    same &= vectors.ndim == 3 and vectors.shape[-1] == index.dim
    scored = found & same
    missing = [u for u, f in zip(user_ids, found, strict=True) if not f]
    other_model = [u for u, f, s in zip(user_ids, found, same, strict=True) if f and not s]
    if other_model:
        logger.warning("vectors of another model not scored users=%d model_version=%s scenario=%s",
                       len(other_model), index.model_version, scenario)
    queries = vectors[scored] if scored.any() else np.zeros((0, 1, index.dim), np.float32)
    ranking = index.rank(queries, scenario, candidates, k)
    kept = [u for u, s in zip(user_ids, scored, strict=True) if s]
    return TopItems(scenario, dict(zip(kept, ranking.items, strict=True)), missing, other_model,
                    ranking.unknown_candidates)


class ItemTargeting:
    """``top_k``: one pipelined Redis read and one matrix multiply for a batch of users."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, index: ItemIndex) -> None:
        self.index = index
        self._reader = EmbeddingReader(client, keys, d=index.dim)

    @classmethod
    def load(cls, client: redis.Redis, keys: RedisKeys, artifact_dir: Path | str) -> ItemTargeting:
        """Targeting with the item index of the exported model in ``artifact_dir``."""
        return cls(client, keys, ItemIndex.load(artifact_dir))

    def top_k(
        self, user_ids: Sequence[str], scenario: str, candidates: Sequence[str] | None = None, k: int = 10
    ) -> TopItems:
        """Per user, the ``k`` items with the highest max over the user's ``scenario`` query vectors
        of ``dot(query, item vector)``; candidates default to the items seen in ``scenario``.
        A user id given twice is read and reported once."""
        user_ids = list(dict.fromkeys(user_ids))
        result = self._reader.get(user_ids, scenario)
        return rank_users(self.index, scenario, user_ids, result.vectors, result.model_version,
                          candidates, k, found=result.found)
