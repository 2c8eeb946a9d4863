"""Ad-targeting reads: users' stored vectors (Redis) scored against an exported item index.

``state`` reads Redis and ``encoders.item_index`` reads the artifact and scores; they meet here.
Neither torch nor ONNX Runtime is imported: a ranking service needs numpy, redis and the artifact.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import redis

from encoders.errors import DataError
from encoders.item_index import ItemIndex
from state.keys import RedisKeys
from state.reader import EmbeddingReader
from state.scan import UserScanner

__all__ = ["AUDIENCE_BATCH_USERS", "Audience", "ItemIndex", "ItemTargeting", "TopItems", "rank_users"]

#: Users read per pipelined Redis round trip while ranking an audience.
AUDIENCE_BATCH_USERS = 1_000

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


@dataclass(frozen=True)
class Audience:
    """The users whose vectors best match one item, best first, and how the others fared.

    ``read``: users read from Redis (a SCAN walk may return a user twice: each read counts);
    ``missing``: of those, users without vectors of the scenario (absent, expired, another
    ``Q × D``); ``other_model``: users whose vectors another model computed (their space
    differs: not scored).
    """

    item_id: str
    scenario: str
    ranked: list[tuple[str, float]]
    read: int
    missing: int
    other_model: int


class ItemTargeting:
    """``top_k``: the best items for a batch of users (one pipelined Redis read, one matrix
    multiply); ``audience``: the best users for one item."""

    def __init__(self, client: redis.Redis, keys: RedisKeys, index: ItemIndex) -> None:
        self.index = index
        self._reader = EmbeddingReader(client, keys, d=index.dim)
        self._scanner = UserScanner(client, keys)

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

    def audience(
        self, item_id: str, scenario: str, user_ids: Iterable[str] | None = None, k: int = 100,
        batch_users: int = AUDIENCE_BATCH_USERS,
    ) -> Audience:
        """The ``k`` users whose ``scenario`` query vectors match ``item_id`` best
        (``max_q dot(query, item vector)``), among ``user_ids`` or, by default, every stored user
        (a SCAN walk). Users are read in pipelined batches and only the best ``k`` are kept, so
        memory does not grow with the user count. ``item_id`` may be a new item added with
        ``ItemIndex.with_items``."""
        if k < 0:
            raise DataError(f"k must be >= 0, got {k}")
        if scenario not in self.index.scenarios:
            raise DataError(f"unknown scenario {scenario!r}; the model's: {list(self.index.scenarios)}")
        item = self.index.vector(item_id)
        best: list[tuple[float, str]] = []  # a min-heap of the best k (score, user)
        in_best: set[str] = set()
        read = missing = other_model = 0
        for batch in self._user_batches(user_ids, batch_users):
            result = self._reader.get(batch, scenario)
            same = np.array([mv == self.index.model_version for mv in result.model_version], dtype=bool)
            scored = result.found & same
            read += len(batch)
            missing += int((~result.found).sum())
            other_model += int((result.found & ~same).sum())
            if not scored.any() or k == 0:
                continue
            users = [u for u, s in zip(batch, scored, strict=True) if s]
            scores = (result.vectors[scored] @ item).max(axis=1)
            if len(scores) > k:  # only the batch's best k can enter the best k
                keep = np.argpartition(-scores, k - 1)[:k]
                users, scores = [users[i] for i in keep], scores[keep]
            for user, score in zip(users, scores.tolist(), strict=True):
                if user in in_best:
                    continue
                if len(best) < k:
                    heapq.heappush(best, (score, user))
                elif (score, user) > best[0]:
                    in_best.discard(heapq.heappushpop(best, (score, user))[1])
                else:
                    continue
                in_best.add(user)
        if other_model:
            logger.warning("vectors of another model not scored users=%d model_version=%s scenario=%s",
                           other_model, self.index.model_version, scenario)
        ranked = [(user, score) for score, user in sorted(best, key=lambda p: (-p[0], p[1]))]
        return Audience(item_id, scenario, ranked, read, missing, other_model)

    def _user_batches(self, user_ids: Iterable[str] | None, size: int) -> Iterator[list[str]]:
        """``user_ids`` in lists of ``size`` (each id once), or every stored user page by page."""
        if size < 1:
            raise DataError(f"batch_users must be >= 1, got {size}")
        if user_ids is None:
            for page in self._scanner.pages(self._scanner.start()):
                for start in range(0, len(page.user_ids), size):
                    yield page.user_ids[start : start + size]
            return
        batch: list[str] = []
        for user in dict.fromkeys(user_ids):
            batch.append(user)
            if len(batch) == size:
                yield batch
                batch = []
        if batch:
            yield batch
