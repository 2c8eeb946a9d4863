"""Key names and the vector byte layout that docs/redis-format.md promises."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from state.errors import StateFormatError
from state.keys import RedisKeys
from state.layout import decode_int, decode_vectors, encode_vectors, vector_field


def test_user_key_format() -> None:
    assert RedisKeys().user("42") == "unistate:user:42"
    assert RedisKeys("t1").user("a:b") == "t1:user:a:b"
    assert RedisKeys("t1").user_pattern() == "t1:user:*"
    assert RedisKeys("t1").user_id(b"t1:user:a:b") == RedisKeys("t1").user_id("t1:user:a:b") == "a:b"
    assert RedisKeys("t1").user_id(b"t1:quarantine:a") is None
    assert RedisKeys("t1").user_id(b"t1:user:\xff") is None
    with pytest.raises(ValueError):
        RedisKeys("")


def test_vectors_are_little_endian_float32_row_major() -> None:
    vectors = np.array([[1.0, -2.5, 0.25], [3.0, 4.0, 5.5]], dtype=np.float64)
    data = encode_vectors(vectors)
    assert data == struct.pack("<6f", 1.0, -2.5, 0.25, 3.0, 4.0, 5.5)
    decoded = decode_vectors(data, 2, 3)
    assert decoded.dtype == np.float32 and decoded.flags.writeable
    np.testing.assert_array_equal(decoded, vectors.astype(np.float32))
    assert vector_field("ads") == "v:ads"


def test_wrong_sizes_and_bad_integers_raise_format_errors() -> None:
    with pytest.raises(StateFormatError):
        decode_vectors(b"\x00" * 7, 1, 2)
    with pytest.raises(StateFormatError):
        decode_int(b"12x", "ver")
    assert decode_int(None, "ver") == 0 and decode_int(b"17", "ver") == 17


def test_docs_redis_format_names_every_field_the_code_writes() -> None:
    from pathlib import Path

    from state import layout
    from state.records import SCENARIOS

    text = (Path(__file__).resolve().parents[3] / "docs" / "redis-format.md").read_text()
    fields = [getattr(layout, name) for name in layout.__all__ if name.startswith("F_")]
    fields += [layout.vector_field(s) for s in SCENARIOS]
    for field in fields:
        assert f"| `{field}` |" in text, f"docs/redis-format.md misses field {field}"
    assert f"`{layout.LAYOUT_VERSION}`" in text
