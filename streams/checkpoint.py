"""The re-embed's resume point: the SCAN cursors and counts so far, in a small JSON file replaced atomically."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streams.errors import ConfigurationError

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint"]

CHECKPOINT_FORMAT = 1


@dataclass
class Checkpoint:
    """Where a walk over ``key_prefix``'s users stands: ``cursors`` of the nodes not finished
    (``state.scan.Cursors``; empty once ``complete``) and the counts of the users handled so far."""

    key_prefix: str
    model_version: str
    cursors: dict[str, int]
    counts: dict[str, int] = field(default_factory=dict)
    complete: bool = False
    format: int = CHECKPOINT_FORMAT

    def save(self, path: Path) -> None:
        """Write to a temporary file, fsync, then rename over ``path``: a crash leaves the old or the new one."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> Checkpoint:
        """Read a checkpoint; ``ConfigurationError`` when the file is not one."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"unknown format {data.get('format')!r}")
            return cls(key_prefix=str(data["key_prefix"]), model_version=str(data["model_version"]),
                       cursors={str(k): int(v) for k, v in data["cursors"].items()},
                       counts={str(k): int(v) for k, v in data["counts"].items()}, complete=bool(data["complete"]))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigurationError(f"cannot read checkpoint {path}: {exc}") from exc
