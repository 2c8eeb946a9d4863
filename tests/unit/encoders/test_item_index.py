"""The exported item index: ids ↔ rows, the scenarios each item was seen in, old artifacts, ranking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import encoders.item_index
from encoders.dataset import EventDataset
from encoders.errors import DataError, ManifestMismatchError
from encoders.item_index import ItemIndex


def test_export_writes_ids_rows_and_the_scenarios_each_item_was_seen_in(
    tiny_artifact: Path, tiny_dataset: EventDataset
) -> None:
    art = tiny_artifact / "artifact"
    doc = json.loads((art / "item_index.json").read_text())
    assert doc["ids"] == json.loads((art / "items.json").read_text()) == tiny_dataset.items
    assert doc["rows"] == [tiny_dataset.index[i] for i in doc["ids"]]
    assert doc["scenario_bits"] == tiny_dataset.item_scenario_bits().tolist()
    index = ItemIndex.load(art)
    table = np.load(art / "item_vectors.npy")
    np.testing.assert_array_equal(index.vectors, table[doc["rows"]])
    for item in index.ids:  # synthetic data: ads only in ``ads``, feed/search items never there
        scenarios = index.item_scenarios(item)
        assert scenarios == ("ads",) if item.startswith("ad_") else "ads" not in scenarios


def test_an_artifact_without_the_item_index_loads_with_every_item_in_every_scenario(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    art = tmp_path / "old"
    shutil.copytree(tiny_artifact / "artifact", art)
    manifest = json.loads((art / "manifest.json").read_text())
    del manifest["sha256"][manifest["files"].pop("item_index")]
    (art / "manifest.json").write_text(json.dumps(manifest))
    (art / "item_index.json").unlink()
    index = ItemIndex.load(art)
    assert not index.knows_scenarios and index.ids == json.loads((art / "items.json").read_text())
    assert index.item_scenarios(index.ids[0]) == ("feed", "search", "ads")
    ranked = index.rank(index.vectors[None, :1], "ads", k=len(index)).items[0]
    assert sorted(i for i, _ in ranked) == sorted(index.ids)


def test_tampered_item_vectors_fail_fast(tiny_artifact: Path, tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact / "artifact", art)
    np.save(art / "item_vectors.npy", np.load(art / "item_vectors.npy") * 2)
    with pytest.raises(ManifestMismatchError):
        ItemIndex.load(art)


def small_index() -> ItemIndex:
    """Four items in 3-D: ``a``/``b`` seen in feed, ``c``/``d`` in ads (bit 2)."""
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0]], np.float32)
    return ItemIndex(["a", "b", "c", "d"], vectors, ("feed", "search", "ads"), np.array([1, 1, 4, 4]), "m1")


def test_rank_scores_the_best_query_vector_of_each_user(monkeypatch: pytest.MonkeyPatch) -> None:
    index = small_index()
    queries = np.array([[[0, 0, 1], [1, 0, 0]],  # c by q0, d (0.6) by q1
                        [[0, 1, 0], [0, 0, -1]]], np.float32)  # d (0.8) by q0, c (0) by q0
    expected = [[("c", 1.0), ("d", pytest.approx(0.6))], [("d", pytest.approx(0.8)), ("c", 0.0)]]
    assert index.rank(queries, "ads", k=5).items == expected
    assert index.rank(queries, "feed", k=1).items == [[("a", 1.0)], [("b", 1.0)]]
    monkeypatch.setattr(encoders.item_index, "MAX_SCORES_PER_MULTIPLY", 1)  # one user per multiply
    assert index.rank(queries, "ads", k=5).items == expected
    assert index.rank(queries[:0], "ads").items == [] and index.rank(queries, "ads", k=0).items == [[], []]


def test_explicit_candidates_replace_the_scenarios_items() -> None:
    ranking = small_index().rank(np.array([[[1, 0, 0]]], np.float32), "ads", ["b", "zz", "a", "a"], k=3)
    assert ranking.items == [[("a", 1.0), ("b", 0.0)]] and ranking.unknown_candidates == ["zz"]


def test_new_items_join_the_index_in_their_scenarios_and_are_ranked() -> None:
    index = small_index().with_items(["new_ad"], np.array([[0, 0.6, 0.8]], np.float32), "m1", scenarios=["ads"])
    assert len(index) == 5 and "new_ad" in index and index.item_scenarios("new_ad") == ("ads",)
    ranked = index.rank(np.array([[[0, 0, 1]]], np.float32), "ads", k=3).items
    assert ranked == [[("c", 1.0), ("new_ad", pytest.approx(0.8)), ("d", 0.0)]]
    assert "new_ad" not in {i for i, _ in index.rank(np.array([[[0, 0, 1]]], np.float32), "feed", k=5).items[0]}
    assert index.with_items(["x"], np.zeros((1, 3), np.float32), "m1").item_scenarios("x") == ("feed", "search", "ads")


def test_new_items_are_refused_when_known_repeated_misshaped_or_of_another_model() -> None:
    index, one = small_index(), np.zeros((1, 3), np.float32)
    with pytest.raises(DataError, match="already in the index"):
        index.with_items(["a"], one, "m1")
    with pytest.raises(DataError, match="repeat"):
        index.with_items(["x", "x"], np.zeros((2, 3), np.float32), "m1")
    with pytest.raises(DataError, match="shape"):
        index.with_items(["x"], np.zeros((1, 4), np.float32), "m1")
    with pytest.raises(ManifestMismatchError, match="m2"):
        index.with_items(["x"], one, "m2")
    with pytest.raises(DataError, match="unknown scenario"):
        index.with_items(["x"], one, "m1", scenarios=["mail"])
    assert len(index) == 4  # the original index is unchanged
