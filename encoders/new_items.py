"""Vectors for items the model never saw (a new ad, a new listing), from their text alone.

A model whose content table holds item texts (``ModelConfig.content_text``: trained with
``--use-text`` on data with titles) exports ``new_items.onnx``; this reads it with the artifact's
MiniLM encoder. The vectors live in the same space as ``item_vectors.npy``, so
``ItemIndex.with_items`` can rank users for the new items at once.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from encoders.errors import ArtifactError
from encoders.manifest import Manifest
from encoders.serving import default_providers
from encoders.text_serving import TextEncoder

__all__ = ["NewItemEncoder"]

logger = logging.getLogger(__name__)


class NewItemEncoder:
    """``encode(texts)``: ``[N, D]`` L2-normalised item vectors of an exported model."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession, text_encoder: TextEncoder) -> None:
        self.manifest = manifest
        self._session = session
        self._text = text_encoder

    @classmethod
    def load(cls, artifact_dir: Path | str, providers: list[str] | None = None) -> NewItemEncoder:
        """Open ``new_items.onnx`` and the text encoder, checking them against the manifest's hashes."""
        artifact_dir = Path(artifact_dir)
        manifest = Manifest.read(artifact_dir)
        if "new_items" not in manifest.files:
            raise ArtifactError(f"artifact {artifact_dir} has no new-item graph: its model has no item texts "
                                "in its content table (train with --use-text on data with item titles)")
        manifest.verify_files(artifact_dir, ["new_items", "text_encoder", "tokenizer"])
        try:
            session = ort.InferenceSession(str(artifact_dir / manifest.files["new_items"]),
                                           providers=providers or default_providers())
        except ort.capi.onnxruntime_pybind11_state.Fail as exc:
            raise ArtifactError(f"cannot load the new-item graph of {artifact_dir}: {exc}") from exc
        logger.info("loaded new-item graph model_version=%s", manifest.model_version)
        return cls(manifest, session, TextEncoder.load(artifact_dir, providers=providers))

    @property
    def model_version(self) -> str:
        """The model whose item space the vectors are in (``ItemIndex.with_items`` checks it)."""
        return self.manifest.model_version

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One vector per text (a title, an ad's copy), ``[len(texts), D]`` float32."""
        if not len(texts):
            return np.zeros((0, self.manifest.config.vector_dim), np.float32)
        (vectors,) = self._session.run(None, {"text_vec": self._text.encode(list(texts))})
        return np.asarray(vectors, np.float32)
