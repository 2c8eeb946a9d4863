"""The exported item index: item ids ↔ item-vector rows, each item's scenarios, and top-k scoring.

``item_index.json`` (written by ``encoders.export``, read here; numpy and json only, no torch)::

    {"format_version": 1, "scenarios": ["feed", "search", "ads"],
     "ids": ["it_a", ...], "rows": [2, ...], "scenario_bits": [1, ...]}

``ids[k]`` is the item whose vector is row ``rows[k]`` of ``item_vectors.npy``; bit ``s`` of
``scenario_bits[k]`` is set when the item occurred in scenario ``scenarios[s]`` during training.
``scenario_bits`` is ``null`` when the checkpoint did not record it; artifacts exported before
this file existed load from ``items.json`` (row = position + 2). In both cases the scenarios are
unknown and every item counts as an item of every scenario.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from encoders.errors import ArtifactError, DataError, ManifestMismatchError
from encoders.features import FIRST_ITEM_ROW
from encoders.manifest import Manifest

__all__ = ["ITEM_INDEX_NAME", "ItemIndex", "Ranking", "write_item_index"]

logger = logging.getLogger(__name__)
ITEM_INDEX_NAME = "item_index.json"
INDEX_FORMAT_VERSION = 1
#: Score-matrix entries per matrix multiply (128 MiB of float32); larger batches are split by user.
MAX_SCORES_PER_MULTIPLY = 1 << 25


def write_item_index(
    out_dir: Path, items: Sequence[str], scenarios: Sequence[str], scenario_bits: Sequence[int] | None
) -> Path:
    """Write ``item_index.json`` for the vocabulary ``items`` (row = position + 2)."""
    if scenario_bits is not None and len(scenario_bits) != len(items):
        raise DataError(f"scenario_bits has {len(scenario_bits)} entries for {len(items)} items")
    doc = {
        "format_version": INDEX_FORMAT_VERSION,
        "scenarios": list(scenarios),
        "ids": list(items),
        "rows": [FIRST_ITEM_ROW + k for k in range(len(items))],
        "scenario_bits": None if scenario_bits is None else [int(b) for b in scenario_bits],
    }
    path = Path(out_dir) / ITEM_INDEX_NAME
    path.write_text(json.dumps(doc))
    return path


@dataclass(frozen=True)
class Ranking:
    """Per user (query order) the best items, best first, and explicit candidates not scored."""

    items: list[list[tuple[str, float]]]
    unknown_candidates: list[str]


class ItemIndex:
    """Item vectors of one exported model with their ids and scenarios; ``rank`` scores users."""

    def __init__(
        self, ids: Sequence[str], vectors: np.ndarray, scenarios: Sequence[str],
        scenario_bits: np.ndarray | None, model_version: str,
    ) -> None:
        """``vectors`` is ``[len(ids), D]``: row ``k`` belongs to ``ids[k]``."""
        self.ids = list(ids)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.scenarios = tuple(scenarios)
        self.scenario_bits = scenario_bits
        self.model_version = model_version
        self._position = {item: k for k, item in enumerate(self.ids)}
        if len(self._position) != len(self.ids) or self.vectors.shape[0] != len(self.ids):
            raise ArtifactError(f"item index: {len(self.ids)} ids ({len(self._position)} distinct) "
                                f"for {self.vectors.shape[0]} vectors")
        if scenario_bits is not None and scenario_bits.shape != (len(self.ids),):
            raise ArtifactError(f"item index: scenario_bits shape {scenario_bits.shape} != ({len(self.ids)},)")
        self._by_scenario: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def load(cls, artifact_dir: Path | str) -> ItemIndex:
        """Read an artifact's item vectors and index, checking them against the manifest's hashes."""
        artifact_dir = Path(artifact_dir)
        manifest = Manifest.read(artifact_dir)
        roles = ["item_vectors", "item_index" if "item_index" in manifest.files else "items"]
        missing = [r for r in roles if r not in manifest.files]
        if missing:
            raise ArtifactError(f"artifact {artifact_dir} lists no {missing} file")
        manifest.verify_files(artifact_dir, roles)
        try:
            table = np.load(artifact_dir / manifest.files["item_vectors"], allow_pickle=False)
            if "item_index" in manifest.files:
                doc = json.loads((artifact_dir / manifest.files["item_index"]).read_text())
            else:  # exported before item_index.json existed: row = position + 2, scenarios unknown
                items = json.loads((artifact_dir / manifest.files["items"]).read_text())
                doc = {"format_version": INDEX_FORMAT_VERSION, "scenarios": list(manifest.config.scenarios),
                       "ids": items, "rows": [FIRST_ITEM_ROW + k for k in range(len(items))],
                       "scenario_bits": None}
            index = cls._from_doc(doc, table, manifest)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ArtifactError(f"cannot read the item index of {artifact_dir}: {exc}") from exc
        if index.scenario_bits is None:
            logger.info("item index without scenarios model_version=%s: every item counts for every "
                        "scenario", manifest.model_version)
        return index

    @classmethod
    def _from_doc(cls, doc: dict[str, Any], table: np.ndarray, manifest: Manifest) -> ItemIndex:
        if doc["format_version"] != INDEX_FORMAT_VERSION:
            raise ManifestMismatchError(f"item index format {doc['format_version']} != {INDEX_FORMAT_VERSION}")
        if tuple(doc["scenarios"]) != manifest.config.scenarios:
            raise ManifestMismatchError(f"item index scenarios {doc['scenarios']} != model's "
                                        f"{list(manifest.config.scenarios)}")
        if table.shape != (manifest.config.n_items, manifest.config.vector_dim):
            raise ManifestMismatchError(f"item vectors {table.shape} != model's "
                                        f"({manifest.config.n_items}, {manifest.config.vector_dim})")
        rows = np.asarray(doc["rows"], np.int64)
        if len(rows) != len(doc["ids"]) or (len(rows) and (rows.min() < FIRST_ITEM_ROW or rows.max() >= len(table))):
            raise ManifestMismatchError("item index rows do not fit the item vectors")
        bits = doc.get("scenario_bits")
        return cls(doc["ids"], table[rows], doc["scenarios"],
                   None if bits is None else np.asarray(bits, np.int64), manifest.model_version)

    def with_items(
        self, ids: Sequence[str], vectors: np.ndarray, model_version: str, scenarios: Sequence[str] | None = None
    ) -> ItemIndex:
        """A new index that also holds items the model never saw (``NewItemEncoder`` vectors of
        the same ``model_version``), as items of ``scenarios`` (default: every scenario; an index
        that does not know its items' scenarios counts every item in every one)."""
        if model_version != self.model_version:
            raise ManifestMismatchError(f"new item vectors of model {model_version} for an index of "
                                        f"model {self.model_version}")
        vectors = np.asarray(vectors, np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise DataError(f"vectors shape {vectors.shape} != ({len(ids)}, {self.dim})")
        if len(set(ids)) != len(ids):
            raise DataError("new item ids repeat")
        known = [i for i in ids if i in self._position]
        if known:
            raise DataError(f"{len(known)} items already in the index (first {known[0]!r}): their trained "
                            "vectors stay")
        bits = None
        if self.scenario_bits is not None:
            new_bits = sum(1 << self._scenario_index(s) for s in (self.scenarios if scenarios is None else scenarios))
            bits = np.concatenate([self.scenario_bits, np.full(len(ids), new_bits, np.int64)])
        return ItemIndex([*self.ids, *ids], np.vstack([self.vectors, vectors]), self.scenarios, bits,
                         self.model_version)

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._position

    @property
    def dim(self) -> int:
        """``D``: the width of the item (and user) vectors."""
        return int(self.vectors.shape[1])

    @property
    def knows_scenarios(self) -> bool:
        """Whether the artifact recorded each item's scenarios (else every item is in every one)."""
        return self.scenario_bits is not None

    def vector(self, item_id: str) -> np.ndarray:
        """``item_id``'s ``[D]`` vector (``DataError`` when the index does not hold it)."""
        try:
            return self.vectors[self._position[item_id]]
        except KeyError:
            raise DataError(f"item {item_id!r} is not in the model's vocabulary") from None

    def item_scenarios(self, item_id: str) -> tuple[str, ...]:
        """The scenarios ``item_id`` was seen in during training (all when unknown)."""
        if self.scenario_bits is None:
            return self.scenarios
        bits = int(self.scenario_bits[self._position[item_id]])
        return tuple(s for i, s in enumerate(self.scenarios) if bits >> i & 1)

    def _scenario_index(self, scenario: str) -> int:
        try:
            return self.scenarios.index(scenario)
        except ValueError:
            raise DataError(f"unknown scenario {scenario!r}; the model's: {list(self.scenarios)}") from None

    def _candidates(self, scenario: str, candidates: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Positions into ``ids``, their vectors, and explicit candidates not in the vocabulary."""
        s = self._scenario_index(scenario)
        if candidates is not None:
            unknown = [c for c in candidates if c not in self._position]
            positions = np.fromiter(dict.fromkeys(self._position[c] for c in candidates if c in self._position),
                                    np.int64)
            return positions, self.vectors[positions], unknown
        if scenario not in self._by_scenario:
            if self.scenario_bits is None:
                positions = np.arange(len(self.ids), dtype=np.int64)
            else:
                positions = np.flatnonzero(self.scenario_bits >> s & 1).astype(np.int64)
            self._by_scenario[scenario] = positions, self.vectors[positions]
        return (*self._by_scenario[scenario], [])

    def rank(
        self, queries: np.ndarray, scenario: str, candidates: Sequence[str] | None = None, k: int = 10
    ) -> Ranking:
        """The ``k`` best candidates per user by ``max_q dot(queries[n, q], item vector)``, best first.

        ``queries`` is ``[N, Q, D]`` (the users' vectors of ``scenario``). Candidates default to the
        items seen in ``scenario``; an explicit id list replaces them (ids outside the vocabulary
        are returned in ``unknown_candidates``, not scored). All users' queries go through one
        matrix multiply (split by user past ``MAX_SCORES_PER_MULTIPLY`` scores).
        """
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim != 3 or queries.shape[2] != self.dim:
            raise DataError(f"queries must be [N, Q, {self.dim}], got shape {queries.shape}")
        if k < 0:
            raise DataError(f"k must be >= 0, got {k}")
        positions, table, unknown = self._candidates(scenario, candidates)
        n, q, _ = queries.shape
        k = min(k, len(positions))
        if n == 0 or k == 0 or q == 0:
            return Ranking([[] for _ in range(n)], unknown)
        step = max(1, MAX_SCORES_PER_MULTIPLY // (q * len(positions)))
        out: list[list[tuple[str, float]]] = []
        for start in range(0, n, step):
            chunk = queries[start : start + step]
            scores = (chunk.reshape(-1, self.dim) @ table.T).reshape(len(chunk), q, -1).max(axis=1)
            out += self._top(scores, positions, k)
        return Ranking(out, unknown)

    def _top(self, scores: np.ndarray, positions: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Each row's ``k`` best columns, best first (ties: the earlier candidate first)."""
        if k < scores.shape[1]:
            best = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        else:
            best = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        picked = np.take_along_axis(scores, best, axis=1)
        order = np.lexsort((best, -picked))
        best, picked = np.take_along_axis(best, order, axis=1), np.take_along_axis(picked, order, axis=1)
        return [[(self.ids[p], float(v)) for p, v in zip(positions[row].tolist(), vals.tolist(), strict=True)]
                for row, vals in zip(best, picked, strict=True)]
