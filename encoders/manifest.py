"""The artifact manifest: what ``export`` wrote and what serving checks before it loads."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from encoders.config import ModelConfig
from encoders.errors import ArtifactError, ManifestMismatchError

__all__ = ["MANIFEST_NAME", "Manifest", "TensorSpec", "sha256_file"]

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class TensorSpec:
    """Name, dtype and shape (symbolic axes as strings) of one graph input or output."""

    name: str
    dtype: str
    shape: list[int | str]


@dataclass(frozen=True)
class Manifest:
    """Everything serving needs to know about an exported artifact directory."""

    config: ModelConfig
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    files: dict[str, str]  # role -> file name inside the artifact dir
    sha256: dict[str, str]  # file name -> sha256
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def model_version(self) -> str:
        """Short content hash of the ONNX model (changes whenever the weights change)."""
        return self.sha256[self.files["model"]][:12]

    def to_json(self) -> str:
        return json.dumps(
            {
                "format_version": self.format_version,
                "model_version": self.model_version,
                "config": self.config.to_dict(),
                "scenarios": list(self.config.scenarios),
                "actions": list(self.config.actions),
                "inputs": [s.__dict__ for s in self.inputs],
                "outputs": [s.__dict__ for s in self.outputs],
                "files": self.files,
                "sha256": self.sha256,
                "extra": self.extra,
            },
            indent=2,
        )

    def write(self, artifact_dir: Path) -> Path:
        path = artifact_dir / MANIFEST_NAME
        path.write_text(self.to_json())
        return path

    @classmethod
    def read(cls, artifact_dir: Path) -> Manifest:
        """Parse ``manifest.json``; raises :class:`ArtifactError` when missing or malformed."""
        path = Path(artifact_dir) / MANIFEST_NAME
        try:
            raw = json.loads(path.read_text())
            manifest = cls(
                config=ModelConfig.from_dict(raw["config"]),
                inputs=[TensorSpec(**s) for s in raw["inputs"]],
                outputs=[TensorSpec(**s) for s in raw["outputs"]],
                files=dict(raw["files"]),
                sha256=dict(raw["sha256"]),
                extra=dict(raw.get("extra", {})),
                format_version=int(raw["format_version"]),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(f"cannot read manifest {path}: {exc}") from exc
        if manifest.format_version != FORMAT_VERSION:
            raise ManifestMismatchError(f"manifest format {manifest.format_version} != {FORMAT_VERSION}")
        if raw.get("model_version") != manifest.model_version:
            raise ManifestMismatchError("manifest model_version does not match its model hash")
        return manifest

    def verify_files(self, artifact_dir: Path, roles: Iterable[str] | None = None) -> None:
        """Fail fast when a listed file (of ``roles`` only, when given) is missing or its hash differs."""
        names = None if roles is None else {self.files[r] for r in roles}
        for name, expected in self.sha256.items():
            if names is not None and name not in names:
                continue
            path = Path(artifact_dir) / name
            if not path.is_file():
                raise ManifestMismatchError(f"artifact file missing: {path}")
            actual = sha256_file(path)
            if actual != expected:
                raise ManifestMismatchError(
                    f"sha256 mismatch for {name}: manifest {expected[:12]} file {actual[:12]}"
                )
