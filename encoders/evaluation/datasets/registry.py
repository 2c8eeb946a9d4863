"""Every dataset ``unistate evaluate --dataset NAME`` knows, read into unified histories."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = ["DATASETS", "SHARED_DATA", "load_dataset", "load_item_texts"]

#: ``../shared/data`` beside the checkout (never committed: each dataset keeps its own terms).
SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


def _amazon(root: Path) -> list[UserHistory]:
    from encoders.evaluation.datasets.amazon import read_users

    if not (root / "test_new.txt").is_file():
        raise DataError(f"amazon-food-kitchen files not found under {root}")
    return read_users(root / "val_new.txt") + read_users(root / "test_new.txt")


def _tianchi(root: Path) -> list[UserHistory]:
    from encoders.evaluation.datasets.alibaba import read_tianchi

    return read_tianchi(root)


def _taobao(root: Path) -> list[UserHistory]:
    from encoders.evaluation.datasets.alibaba import read_taobao

    return read_taobao(root)


def _movielens(root: Path) -> list[UserHistory]:
    from encoders.evaluation.datasets.movielens import read_movielens, recbole_wheel

    return read_movielens(recbole_wheel(root))


def _synthetic(root: Path) -> list[UserHistory]:
    from encoders.data.synthetic import synthetic_dataset

    return synthetic_dataset(300, seed=0).histories


#: name -> (reader, default location: a folder under SHARED_DATA, or the recbole wheel cache)
DATASETS: dict[str, tuple[Callable[[Path], list[UserHistory]], str | None]] = {
    "amazon-food-kitchen": (_amazon, "amazon-food-kitchen"),
    "tianchi-ecomm": (_tianchi, "tianchi-ecomm-multibehavior"),
    "taobao": (_taobao, "taobao-userbehavior-slice"),
    "movielens": (_movielens, None),
    "synthetic": (_synthetic, None),
}


def _location(name: str, root: Path | None) -> Path:
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: one of {sorted(DATASETS)}")
    if root is not None:
        return Path(root)
    from encoders.evaluation.datasets.movielens import default_cache_dir

    folder = DATASETS[name][1]
    return SHARED_DATA / folder if folder is not None else default_cache_dir()


def load_dataset(name: str, root: Path | None = None) -> list[UserHistory]:
    """Histories of dataset ``name``; ``root`` overrides its default location."""
    location = _location(name, root)
    return DATASETS[name][0](location)


def load_item_texts(name: str, root: Path | None = None) -> dict[str, str] | None:
    """Item id -> text (titles) where the dataset has them (MovieLens); ``None`` where it has none."""
    location = _location(name, root)
    if name != "movielens":
        return None
    from encoders.evaluation.datasets.movielens import read_titles, recbole_wheel

    return read_titles(recbole_wheel(location))
