"""The exception tree of the encoders package: one root, a few documented leaves.

::

    EncoderError
    ├── ConfigError                 invalid model or training configuration
    ├── DataError                   malformed or missing events, item tables, dataset files
    └── ArtifactError               checkpoint or export artifact missing or unreadable
        └── ManifestMismatchError   manifest and ONNX file (or its inputs) disagree
"""

from __future__ import annotations

__all__ = ["ArtifactError", "ConfigError", "DataError", "EncoderError", "ManifestMismatchError"]


class EncoderError(Exception):
    """Root of every error raised by ``encoders``."""


class ConfigError(EncoderError):
    """A model or training configuration is invalid."""


class DataError(EncoderError):
    """Input data (events, item tables, dataset files) is malformed or missing."""


class ArtifactError(EncoderError):
    """A checkpoint or export artifact is missing or unreadable."""


class ManifestMismatchError(ArtifactError):
    """The manifest and the ONNX file (or the inputs given to it) disagree."""
