"""MovieLens-100K reader and the seen-item mask, on a hand-made wheel-like zip (never the real data)."""

from __future__ import annotations

import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from encoders.config import DEFAULT_ACTIONS
from encoders.dataset import EventDataset
from encoders.errors import DataError
from encoders.evaluation.datasets import movielens
from encoders.evaluation.datasets.movielens import (
    INTER_MEMBER,
    WHEEL_NAME,
    read_movielens,
    recbole_wheel,
)
from encoders.evaluation.run import SeenMasked

HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
# user 7: out of order in the file; user 3: a tie at t=20 (file order breaks it); user 9: too short
ROWS = [
    ("7", "50", 4, 300), ("3", "10", 5, 20), ("7", "51", 3, 100), ("9", "50", 1, 5),
    ("3", "11", 2, 10), ("7", "52", 5, 200), ("3", "12", 1, 20), ("7", "53", 2, 400),
    ("3", "13", 4, 30), ("9", "10", 3, 1),
]


def _wheel(tmp_path: Path, rows: list[tuple[str, str, int, int]] = ROWS) -> Path:
    path = tmp_path / WHEEL_NAME
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("recbole/__init__.py", "")
        zf.writestr(INTER_MEMBER, "\n".join([HEADER, *(f"{u}\t{i}\t{r}\t{t}" for u, i, r, t in rows)]) + "\n")
    return path


def _by_user(tmp_path: Path) -> dict:
    return {h.user_id: h for h in read_movielens(_wheel(tmp_path))}


def test_read_sorts_each_users_events_by_time(tmp_path: Path) -> None:
    users = _by_user(tmp_path)
    assert sorted(users) == ["ml3", "ml7", "ml9"]
    assert users["ml7"].item_ids == ["51", "52", "50", "53"]
    assert users["ml7"].ts_ms.tolist() == [100_000, 200_000, 300_000, 400_000]
    assert users["ml3"].item_ids == ["11", "10", "12", "13"]  # 10 before 12: same second, file order
    assert users["ml9"].item_ids == ["10", "50"]


def test_every_event_is_a_feed_click(tmp_path: Path) -> None:
    for h in _by_user(tmp_path).values():
        assert (h.scenario_idx == 0).all()
        assert (h.action_idx == DEFAULT_ACTIONS.index("click")).all()
        assert h.texts == [None] * len(h)


def test_seen_items_are_masked(tmp_path: Path) -> None:
    histories = read_movielens(_wheel(tmp_path))
    dataset = EventDataset.build(histories)

    class Ones:
        def scores(self, contexts, columns, scenario=0):
            return np.ones((len(contexts), len(columns)))

    columns = np.array(sorted(dataset.index.values()))
    contexts = [h.prefix(len(h) - 1) for h in histories]
    s = SeenMasked(Ones(), dataset).scores(contexts, columns)
    seen = [{dataset.items[c - 2] for c, v in zip(columns, row, strict=True) if v == -np.inf} for row in s]
    assert seen == [set(h.item_ids) for h in contexts]


def test_bad_files_raise_data_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataError):
        read_movielens(bad)
    with pytest.raises(DataError, match="malformed"):
        read_movielens(_wheel(tmp_path, [("1", "2", 3, "x")]))  # type: ignore[list-item]


def test_wheel_in_cache_is_used_without_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wheel = _wheel(tmp_path)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    assert recbole_wheel(tmp_path) == wheel


def test_failed_download_raises_data_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(DataError, match="offline"):
        recbole_wheel(tmp_path / "cache")
    assert calls[0][1:] == ["-m", "pip", "download", "--no-deps", "--only-binary=:all:", "recbole==1.2.1",
                            "-d", str(tmp_path / "cache")]


def test_default_cache_dir_respects_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert movielens.default_cache_dir() == tmp_path / "unistate" / "recbole"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert movielens.default_cache_dir() == Path.home() / ".cache" / "unistate" / "recbole"


def test_titles_carry_title_year_and_genres(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr(movielens.ITEM_MEMBER, "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                    "10\tToy Story\t1995\tAnimation Comedy\n11\tNo Year\t\tDrama\n12\t\t1990\tNone\n")
    assert movielens.read_titles(wheel) == {"10": "Toy Story (1995) Animation Comedy", "11": "No Year Drama"}


def test_a_wheel_without_the_item_file_has_no_titles(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="ml-100k.item"):
        movielens.read_titles(_wheel(tmp_path))


def test_only_datasets_with_titles_have_item_texts(tmp_path: Path) -> None:
    from encoders.evaluation.datasets.registry import load_item_texts

    assert load_item_texts("synthetic") is None
    with pytest.raises(DataError, match="unknown dataset"):
        load_item_texts("nope")
