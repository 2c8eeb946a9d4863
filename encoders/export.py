"""Export a checkpoint to an artifact directory: ONNX graph, item tables and the manifest."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from encoders.errors import ArtifactError
from encoders.features import input_names
from encoders.item_index import ITEM_INDEX_NAME, write_item_index
from encoders.manifest import Manifest, TensorSpec, sha256_file
from encoders.train import load_checkpoint

__all__ = ["ITEMS_NAME", "ITEM_INDEX_NAME", "ITEM_VECTORS_NAME", "MODEL_NAME", "NEW_ITEMS_NAME", "export"]

logger = logging.getLogger(__name__)
MODEL_NAME = "model.onnx"
ITEMS_NAME = "items.json"
ITEM_VECTORS_NAME = "item_vectors.npy"
NEW_ITEMS_NAME = "new_items.onnx"
_DTYPES = {"item_idx": "int64", "scenario_idx": "int64", "action_idx": "int64", "gap_bucket": "int64",
           "hour": "int64", "mask": "float32", "text_vec": "float32", "has_text": "float32"}


def export(checkpoint_path: Path, out_dir: Path, opset: int = 17) -> Manifest:
    """Write ``model.onnx`` (dynamic batch and sequence axes), ``items.json``,
    ``item_vectors.npy`` (items in the interest space, row = vocabulary row), ``item_index.json``
    (ids ↔ rows and the scenarios each item was seen in during training), the MiniLM text
    encoder when the model uses text, ``new_items.onnx`` (vectors of items the model never saw,
    from their text) when its content table holds item texts, and ``manifest.json``; returns
    the manifest."""
    if not Path(checkpoint_path).is_file():
        raise ArtifactError(f"checkpoint not found: {checkpoint_path}")
    model, items, ckpt = load_checkpoint(Path(checkpoint_path))
    cfg = model.cfg
    out_dir.mkdir(parents=True, exist_ok=True)
    names = input_names(cfg)
    example = _example_inputs(cfg, batch=2, length=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, tuple(example[n] for n in names), str(out_dir / MODEL_NAME),
            input_names=names, output_names=["interests"], opset_version=opset, dynamo=False,
            dynamic_axes={**{n: {0: "batch", 1: "seq"} for n in names}, "interests": {0: "batch"}},
        )
    (out_dir / ITEMS_NAME).write_text(json.dumps(items))
    with torch.no_grad():
        vectors = model.served_item_vectors(torch.arange(cfg.n_items)).numpy().astype(np.float32)
    np.save(out_dir / ITEM_VECTORS_NAME, vectors)
    write_item_index(out_dir, items, cfg.scenarios, ckpt.get("item_scenarios"))  # None: an older checkpoint
    files = {"model": MODEL_NAME, "items": ITEMS_NAME, "item_vectors": ITEM_VECTORS_NAME,
             "item_index": ITEM_INDEX_NAME}
    if cfg.content_text:
        _export_new_items(model, out_dir / NEW_ITEMS_NAME, opset)
        files["new_items"] = NEW_ITEMS_NAME
    if cfg.use_text or cfg.content_text:
        from encoders.text_export import TEXT_MODEL_NAME, TOKENIZER_NAME, export_text_encoder

        export_text_encoder(out_dir)
        files |= {"text_encoder": TEXT_MODEL_NAME, "tokenizer": TOKENIZER_NAME}
    inputs = [
        TensorSpec(n, _DTYPES[n], ["batch", "seq"] + ([cfg.text_dim] if n == "text_vec" else []))
        for n in names
    ]
    outputs = [TensorSpec("interests", "float32", ["batch", len(cfg.scenarios), cfg.n_vectors, cfg.vector_dim])]
    manifest = Manifest(
        config=cfg, inputs=inputs, outputs=outputs, files=files,
        sha256={f: sha256_file(out_dir / f) for f in files.values()},
        extra={"train_config": ckpt.get("train_config", {}), "history": ckpt.get("history", []),
               "mixing_policy": ckpt.get("mixing_policy", ckpt.get("selector_config"))},
    )
    manifest.write(out_dir)
    logger.info("exported dir=%s model_version=%s", out_dir, manifest.model_version)
    return manifest


class _NewItems(torch.nn.Module):
    """``text_vec [N, text_dim]`` -> ``item_vectors [N, D]`` (``InterestModel.served_text_item_vectors``)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text_vec: torch.Tensor) -> torch.Tensor:
        return self.model.served_text_item_vectors(text_vec)


def _export_new_items(model: torch.nn.Module, path: Path, opset: int) -> None:
    """The item side for items the model never saw: their vectors from their texts' MiniLM vectors."""
    example = torch.randn(2, model.cfg.text_dim, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_NewItems(model).eval(), (example,), str(path), input_names=["text_vec"],
                          output_names=["item_vectors"], opset_version=opset, dynamo=False,
                          dynamic_axes={"text_vec": {0: "items"}, "item_vectors": {0: "items"}})


def _example_inputs(cfg, batch: int, length: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    out = {
        "item_idx": torch.randint(0, cfg.n_items, (batch, length), generator=gen),
        "scenario_idx": torch.randint(0, len(cfg.scenarios), (batch, length), generator=gen),
        "action_idx": torch.randint(0, len(cfg.actions), (batch, length), generator=gen),
        "gap_bucket": torch.randint(0, cfg.n_gap_buckets, (batch, length), generator=gen),
        "hour": torch.randint(0, 24, (batch, length), generator=gen),
        "mask": torch.ones(batch, length),
    }
    if cfg.use_text:
        out["text_vec"] = torch.randn(batch, length, cfg.text_dim, generator=gen)
        out["has_text"] = torch.ones(batch, length)
    return out
