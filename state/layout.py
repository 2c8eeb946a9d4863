"""The byte layout of a user's Redis hash: field names and vector encoding."""

from __future__ import annotations

import numpy as np

from state.errors import StateFormatError

__all__ = [
    "F_AT",
    "F_D",
    "F_FMT",
    "F_MV",
    "F_NV",
    "F_Q",
    "F_SEQ",
    "F_VER",
    "F_WID",
    "F_WM",
    "LAYOUT_VERSION",
    "VECTOR_DTYPE",
    "decode_int",
    "decode_vectors",
    "encode_vectors",
    "vector_field",
]

#: Layout version stored in the ``fmt`` field; bumped on any incompatible change.
LAYOUT_VERSION = 1

F_FMT = "fmt"  # layout version, decimal
F_VER = "ver"  # monotonic version, decimal
F_WM = "wm"  # event-time watermark (ms since epoch), decimal
F_AT = "at"  # computed-at wall clock (ms since epoch), decimal
F_MV = "mv"  # model version, UTF-8
F_Q = "q"  # query tokens per scenario, decimal
F_D = "d"  # embedding dimension, decimal
F_SEQ = "seq"  # msgpack UserSequence state
F_WID = "wid"  # id of the write that stored this version (recognises a retried write as its own)
F_NV = "nv"  # the version whose update notification the broker acknowledged, decimal

#: Vectors are little-endian float32, row-major ``[Q, D]``.
VECTOR_DTYPE = np.dtype("<f4")


def vector_field(scenario: str) -> str:
    """The field holding one scenario's ``[Q, D]`` vectors."""
    return f"v:{scenario}"


def encode_vectors(vectors: np.ndarray) -> bytes:
    """``[Q, D]`` floats → ``Q × D × 4`` bytes, little-endian float32, row-major."""
    return np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE).tobytes()


def decode_vectors(data: bytes, q: int, d: int) -> np.ndarray:
    """``Q × D × 4`` bytes → a native-endian float32 ``[Q, D]`` array."""
    if len(data) != q * d * VECTOR_DTYPE.itemsize:
        raise StateFormatError(f"vector field has {len(data)} bytes, expected {q}x{d}x4")
    return np.frombuffer(data, dtype=VECTOR_DTYPE).reshape(q, d).astype(np.float32)


def decode_int(data: bytes | None, field: str, default: int = 0) -> int:
    """A decimal metadata field, ``default`` when absent."""
    if data is None:
        return default
    try:
        return int(data)
    except ValueError as exc:
        raise StateFormatError(f"field {field!r} is not a decimal integer: {data!r}") from exc
