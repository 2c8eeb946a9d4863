"""ONNX Runtime serving of an exported artifact: sequences in, interest vectors out."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from encoders.errors import ArtifactError, ManifestMismatchError
from encoders.features import FIRST_ITEM_ROW, SequenceInput, build_inputs, vocabulary_index
from encoders.manifest import Manifest

__all__ = ["InterestEncoder", "default_providers"]

logger = logging.getLogger(__name__)
_ORT_TYPES = {"tensor(int64)": "int64", "tensor(float)": "float32"}


def default_providers() -> list[str]:
    """CUDA EP when this onnxruntime build has it, then CPU."""
    available = ort.get_available_providers()
    preferred = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return preferred + ["CPUExecutionProvider"]


class InterestEncoder:
    """Loaded artifact; ``encode`` returns ``[B, S, Q, D]`` float32, L2-normalised over D."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession, items: list[str], text_encoder: Any) -> None:
        self.manifest = manifest
        self._session = session
        self._index = vocabulary_index(items)
        self._text = text_encoder

    @classmethod
    def load(cls, artifact_dir: Path, providers: list[str] | None = None) -> InterestEncoder:
        """Verify the manifest against the files and the ONNX graph, then open a session."""
        artifact_dir = Path(artifact_dir)
        manifest = Manifest.read(artifact_dir)
        manifest.verify_files(artifact_dir)
        try:
            session = ort.InferenceSession(
                str(artifact_dir / manifest.files["model"]), providers=providers or default_providers()
            )
            items = json.loads((artifact_dir / manifest.files["items"]).read_text())
        except (OSError, ValueError, ort.capi.onnxruntime_pybind11_state.Fail) as exc:
            raise ArtifactError(f"cannot load artifact {artifact_dir}: {exc}") from exc
        _check_graph(manifest, session)
        if len(items) + FIRST_ITEM_ROW != manifest.config.n_items:
            raise ManifestMismatchError(f"items.json has {len(items)} ids, config n_items={manifest.config.n_items}")
        text_encoder = None
        if manifest.config.use_text:
            from encoders.text_serving import TextEncoder

            text_encoder = TextEncoder.load(artifact_dir, providers=providers)
        logger.info("loaded model_version=%s providers=%s", manifest.model_version, session.get_providers())
        return cls(manifest, session, items, text_encoder)

    @property
    def model_version(self) -> str:
        return self.manifest.model_version

    @property
    def scenarios(self) -> tuple[str, ...]:
        return self.manifest.config.scenarios

    @property
    def actions(self) -> tuple[str, ...]:
        return self.manifest.config.actions

    @property
    def n_queries(self) -> int:
        """Vectors per scenario: the learned queries, then the recent items (if the model has them)."""
        return self.manifest.config.n_vectors

    @property
    def dim(self) -> int:
        """Width of the interest vectors (and of the artifact's item vectors)."""
        return self.manifest.config.vector_dim

    @property
    def max_len(self) -> int:
        return self.manifest.config.max_len

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def item_index(self) -> dict[str, int]:
        """Item id -> vocabulary row (rows 0/1 are padding/unknown)."""
        return self._index

    def encode(self, batch: Sequence[SequenceInput]) -> np.ndarray:
        """Interest vectors for each user in ``batch`` (any size, empty sequences allowed)."""
        cfg = self.manifest.config
        if not batch:
            return np.zeros((0, len(cfg.scenarios), cfg.n_vectors, cfg.vector_dim), np.float32)
        text_fn = self._text.encode if self._text is not None else None
        inputs = build_inputs(batch, self._index, cfg, text_fn)
        (out,) = self._session.run(["interests"], inputs)
        return np.asarray(out, dtype=np.float32)


def _check_graph(manifest: Manifest, session: ort.InferenceSession) -> None:
    graph = {i.name: _ORT_TYPES.get(i.type, i.type) for i in session.get_inputs()}
    expected = {s.name: s.dtype for s in manifest.inputs}
    if graph != expected:
        raise ManifestMismatchError(f"ONNX inputs {graph} != manifest inputs {expected}")
    shape = session.get_outputs()[0].shape
    if [d for d in shape[1:]] != manifest.outputs[0].shape[1:]:
        raise ManifestMismatchError(f"ONNX output shape {shape} != manifest {manifest.outputs[0].shape}")
