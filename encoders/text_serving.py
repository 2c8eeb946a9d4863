"""MiniLM text vectors through ONNX Runtime and ``tokenizers`` (no torch), LRU-cached."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from encoders.errors import ArtifactError

__all__ = ["TEXT_MODEL_NAME", "TOKENIZER_NAME", "TextEncoder"]

TEXT_MODEL_NAME = "text_encoder.onnx"
TOKENIZER_NAME = "tokenizer.json"


class TextEncoder:
    """Sentence vectors (384-d, L2-normalised) for short texts such as queries and titles."""

    def __init__(
        self, session: ort.InferenceSession, tokenizer: Tokenizer, cache_size: int = 100_000, max_tokens: int = 64
    ) -> None:
        self._session = session
        self._tok = tokenizer
        self._tok.enable_truncation(max_length=max_tokens)
        self._tok.no_padding()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def load(cls, artifact_dir: Path, providers: list[str] | None = None, cache_size: int = 100_000) -> TextEncoder:
        artifact_dir = Path(artifact_dir)
        try:
            session = ort.InferenceSession(
                str(artifact_dir / TEXT_MODEL_NAME), providers=providers or ["CPUExecutionProvider"]
            )
            tokenizer = Tokenizer.from_file(str(artifact_dir / TOKENIZER_NAME))
        except Exception as exc:  # onnxruntime and tokenizers raise plain Exception subclasses
            raise ArtifactError(f"cannot load text encoder from {artifact_dir}: {exc}") from exc
        return cls(session, tokenizer, cache_size)

    @property
    def dim(self) -> int:
        return int(self._session.get_outputs()[0].shape[-1] or 384)

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """``[N, 384]`` float32 vectors; repeated texts come from the LRU cache."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for start in range(0, len(missing), batch_size):
            chunk = missing[start : start + batch_size]
            for text, vec in zip(chunk, self._run(chunk), strict=True):
                self._cache[text] = vec
        out = np.empty((len(texts), self.dim), np.float32)
        for row, text in enumerate(texts):
            self._cache.move_to_end(text)
            out[row] = self._cache[text]
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return out

    def _run(self, texts: list[str]) -> np.ndarray:
        encs = self._tok.encode_batch(texts)
        width = max(len(e.ids) for e in encs)
        ids = np.zeros((len(encs), width), np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for row, e in enumerate(encs):
            n = len(e.ids)
            ids[row, :n], mask[row, :n], types[row, :n] = e.ids, e.attention_mask, e.type_ids
        (emb,) = self._session.run(["embedding"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
        return np.asarray(emb, np.float32)
