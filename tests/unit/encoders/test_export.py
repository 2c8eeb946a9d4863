"""Tests for export and ONNX Runtime serving: parity with torch, manifest checks, edge cases."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.dataset import EventDataset
from encoders.errors import ManifestMismatchError
from encoders.features import SequenceInput, build_inputs
from encoders.serving import InterestEncoder
from encoders.train import load_checkpoint


def torch_reference(root: Path, seqs: list[SequenceInput], index: dict[str, int]) -> np.ndarray:
    model, _, _ = load_checkpoint(root / "model.pt")
    with torch.no_grad():
        inputs = build_inputs(seqs, index, model.cfg)
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()


def random_sequence(rng: np.random.Generator, n: int, items: list[str]) -> SequenceInput:
    return SequenceInput(
        item_ids=[
            str(rng.choice(items)) if rng.random() < 0.8 else ("never-seen" if rng.random() < 0.5 else None)
            for _ in range(n)
        ],
        texts=[None] * n,
        scenario_idx=rng.integers(0, 3, n),
        action_idx=rng.integers(0, 10, n),
        ts_ms=np.sort(rng.integers(0, 10**10, n)),
        now_ms=10**10,
    )


def test_onnx_matches_torch_on_real_and_random_sequences(
    tiny_artifact: Path, tiny_dataset: EventDataset, policy: object
) -> None:
    encoder = InterestEncoder.load(tiny_artifact / "artifact")
    rng = np.random.default_rng(0)
    real = [h.context(len(h), policy) for h in tiny_dataset.histories[:9]]
    rand = [random_sequence(rng, int(n), tiny_dataset.items) for n in rng.integers(0, 40, 7)]
    for seqs in (real, rand, real[:1]):
        out = encoder.encode(seqs)
        ref = torch_reference(tiny_artifact, seqs, encoder.item_index)
        assert out.shape == (len(seqs), 3, encoder.n_queries, encoder.dim)
        assert np.abs(out - ref).max() <= 1e-3


def test_onnx_serves_own_view_scenarios_like_torch(
    tiny_artifact: Path, tiny_dataset: EventDataset, policy: object, tmp_path: Path
) -> None:
    """A model whose search queries read the own view exports both views into one graph."""
    from encoders.export import export

    ckpt = torch.load(tiny_artifact / "model.pt", weights_only=False)
    ckpt["model_config"]["own_view_scenarios"] = ["search"]
    torch.save(ckpt, tmp_path / "model.pt")
    export(tmp_path / "model.pt", tmp_path / "artifact")
    encoder = InterestEncoder.load(tmp_path / "artifact")
    plain = InterestEncoder.load(tiny_artifact / "artifact")
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:9]]
    out = encoder.encode(seqs)
    assert np.abs(out - torch_reference(tmp_path, seqs, encoder.item_index)).max() <= 1e-3
    before = plain.encode(seqs)
    assert np.abs(out[:, [0, 2]] - before[:, [0, 2]]).max() <= 1e-3  # feed and ads: the all view
    assert np.abs(out[:, 1] - before[:, 1]).max() > 1e-2


def test_onnx_serves_recent_items_like_torch(
    tiny_artifact: Path, tiny_dataset: EventDataset, policy: object, tmp_path: Path
) -> None:
    """Recent items join the exported graph: the output grows by ``recent_items`` vectors per
    scenario, equal to torch's, and the manifest says so; the recent pool changes the learned
    vectors of the scenarios it is on only."""
    from encoders.export import export

    ckpt = torch.load(tiny_artifact / "model.pt", weights_only=False)
    ckpt["model_config"]["recent_weights"] = [[1.0, 0.9], [0.0, 1.0], [0.6, 0.8]]
    ckpt["model_config"]["recent_pool"] = [[0.0, 1.0], [0.0, 1.0], [0.2, 0.7]]
    torch.save(ckpt, tmp_path / "model.pt")
    export(tmp_path / "model.pt", tmp_path / "artifact")
    encoder = InterestEncoder.load(tmp_path / "artifact")
    plain = InterestEncoder.load(tiny_artifact / "artifact")
    rng = np.random.default_rng(1)
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:9]]
    seqs += [random_sequence(rng, int(n), tiny_dataset.items) for n in rng.integers(0, 40, 7)]
    out = encoder.encode(seqs)
    assert out.shape == (len(seqs), 3, plain.n_queries + 5, plain.dim) == (len(seqs), 3, encoder.n_queries, encoder.dim)
    assert np.abs(out - torch_reference(tmp_path, seqs, encoder.item_index)).max() <= 1e-3
    learned = out[:, :, : plain.n_queries] - plain.encode(seqs)
    assert np.abs(learned[:, :2]).max() <= 1e-3 < np.abs(learned[:, 2]).max()
    assert encoder.encode([]).shape == (0, 3, encoder.n_queries, encoder.dim)


def test_onnx_serves_repeat_items_like_torch(
    tiny_artifact: Path, tiny_dataset: EventDataset, policy: object, tmp_path: Path
) -> None:
    """The repeat score runs inside the exported graph: each scenario with weights gains
    ``repeat_items`` vectors, equal to torch's for real and random sequences of any length."""
    from encoders.export import export
    from encoders.repeat import n_repeat_features

    ckpt = torch.load(tiny_artifact / "model.pt", weights_only=False)
    rng = np.random.default_rng(2)
    ckpt["model_config"]["repeat_items"] = 4
    ckpt["model_config"]["repeat_coef"] = [rng.normal(size=n_repeat_features(3) + 1).tolist(), [],
                                           rng.normal(size=n_repeat_features(3) + 1).tolist()]
    ckpt["model_config"]["repeat_weights"] = [[0.5, 0.2], [0.0, 0.0], [1.0, 0.1]]
    torch.save(ckpt, tmp_path / "model.pt")
    export(tmp_path / "model.pt", tmp_path / "artifact")
    encoder = InterestEncoder.load(tmp_path / "artifact")
    plain = InterestEncoder.load(tiny_artifact / "artifact")
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:9]]
    seqs += [random_sequence(rng, int(n), tiny_dataset.items) for n in rng.integers(0, 40, 7)]
    out = encoder.encode(seqs)
    assert out.shape == (len(seqs), 3, plain.n_queries + 4, plain.dim)
    assert np.abs(out - torch_reference(tmp_path, seqs, encoder.item_index)).max() <= 1e-3
    assert np.abs(out[:, :, : plain.n_queries] - plain.encode(seqs)).max() <= 1e-3


def test_empty_sequences_and_empty_batch_give_normalised_vectors(tiny_artifact: Path) -> None:
    encoder = InterestEncoder.load(tiny_artifact / "artifact")
    empty = SequenceInput([], [], np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)
    out = encoder.encode([empty, empty])
    assert np.allclose(np.linalg.norm(out, axis=-1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 3, encoder.n_queries, encoder.dim)


def test_manifest_exposes_version_vocabularies_and_shapes(tiny_artifact: Path) -> None:
    encoder = InterestEncoder.load(tiny_artifact / "artifact", providers=["CPUExecutionProvider"])
    manifest = json.loads((tiny_artifact / "artifact" / "manifest.json").read_text())
    assert encoder.model_version == manifest["model_version"] and len(encoder.model_version) == 12
    assert encoder.scenarios == ("feed", "search", "ads")
    assert encoder.actions[8] == "query" and encoder.providers == ["CPUExecutionProvider"]
    assert encoder.max_len == 24 and [i["name"] for i in manifest["inputs"]][0] == "item_idx"


def test_tampered_onnx_or_manifest_fails_fast(tiny_artifact: Path, tmp_path: Path) -> None:
    art = tmp_path / "art"
    shutil.copytree(tiny_artifact / "artifact", art)
    with (art / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(ManifestMismatchError):
        InterestEncoder.load(art)
    shutil.copy(tiny_artifact / "artifact" / "model.onnx", art / "model.onnx")
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["inputs"][0]["name"] = "renamed"
    (art / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatchError):
        InterestEncoder.load(art)


def test_onnx_serves_the_popularity_prior_as_one_more_coordinate(
    tiny_artifact: Path, tiny_dataset: EventDataset, policy: object, tmp_path: Path
) -> None:
    """With ``item_prior`` every vector of a scenario ends in its weight and every exported item
    vector in the item's log count of training events, so the dot product scores an item its
    learned score plus weight × log count; the learned coordinates are the model's without it."""
    from encoders.export import export
    from encoders.item_index import ItemIndex
    from encoders.items import item_event_counts

    ckpt = torch.load(tiny_artifact / "model.pt", weights_only=False)
    log_count = ckpt["state_dict"]["item_log_count"].numpy()
    np.testing.assert_allclose(log_count, np.log1p(item_event_counts(tiny_dataset.histories, tiny_dataset)), rtol=1e-6)
    ckpt["model_config"]["item_prior"] = [0.1, 0.0, 0.05]
    torch.save(ckpt, tmp_path / "model.pt")
    export(tmp_path / "model.pt", tmp_path / "artifact")
    encoder = InterestEncoder.load(tmp_path / "artifact")
    plain = InterestEncoder.load(tiny_artifact / "artifact")
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:9]] + [
        random_sequence(np.random.default_rng(2), 12, tiny_dataset.items)]
    out = encoder.encode(seqs)
    assert encoder.dim == plain.dim + 1 and out.shape == (len(seqs), 3, plain.n_queries, encoder.dim)
    assert np.abs(out[..., :-1] - plain.encode(seqs)).max() <= 1e-5
    np.testing.assert_array_equal(out[..., -1], np.broadcast_to(np.array([0.1, 0.0, 0.05], np.float32)[:, None],
                                                                out.shape[1:3])[None].repeat(len(seqs), 0))
    items, plain_items = ItemIndex.load(tmp_path / "artifact"), ItemIndex.load(tiny_artifact / "artifact")
    np.testing.assert_allclose(items.vectors[:, -1], log_count[[tiny_dataset.index[i] for i in items.ids]])
    assert log_count.max() > 0 and log_count[:2].max() == 0  # padding and unknown rows count nothing
    scores = np.einsum("nqd,cd->nqc", out[:, 0], items.vectors).max(axis=1)
    expected = np.einsum("nqd,cd->nqc", out[:, 0, :, :-1], plain_items.vectors).max(axis=1) + 0.1 * items.vectors[:, -1]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    assert encoder.encode([]).shape == (0, 3, encoder.n_queries, encoder.dim)
