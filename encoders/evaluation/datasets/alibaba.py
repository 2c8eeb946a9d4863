"""Alibaba behaviour logs (Tianchi ecomm multi-behaviour, Taobao UserBehavior) as unified histories.

A stand-in mapping, said wherever results are reported: clicks / page views play the dominant
``feed``, collects and carts the middle ``search``, buys the rare, telling ``ads`` scenario.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from encoders.config import DEFAULT_ACTIONS, DEFAULT_SCENARIOS
from encoders.dataset import UserHistory
from encoders.errors import DataError

__all__ = ["BEHAVIOURS", "read_taobao", "read_tianchi"]

_S = {s: i for i, s in enumerate(DEFAULT_SCENARIOS)}
_A = {a: i for i, a in enumerate(DEFAULT_ACTIONS)}
#: behaviour -> (scenario index, action index)
BEHAVIOURS = {
    "click": (_S["feed"], _A["click"]),
    "collect": (_S["search"], _A["collect"]),
    "cart": (_S["search"], _A["click"]),
    "buy": (_S["ads"], _A["conversion"]),
}
_TIANCHI_CODES = {"1": "click", "2": "collect", "3": "cart", "4": "buy"}
_TAOBAO_CODES = {"pv": "click", "fav": "collect", "cart": "cart", "buy": "buy"}
Row = tuple[int, str | None, str | None, int, int]


def _histories(rows: dict[str, list[Row]], prefix: str) -> list[UserHistory]:
    return [UserHistory.from_events(f"{prefix}{u}", evs) for u, evs in sorted(rows.items())]


def read_tianchi(root: Path) -> list[UserHistory]:
    """``ecomm_edge_train.txt`` (user, item, behaviour 1-4, YYYYMMDD): day-level timestamps, file
    order kept within a day; exact duplicate rows are dropped (they carry no new behaviour)."""
    path = Path(root) / "ecomm_edge_train.txt"
    rows: dict[str, list[Row]] = {}
    seen: set[str] = set()
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip() or line in seen:
            continue
        seen.add(line)
        try:
            user, item, code, day = line.split("\t")
            scen, act = BEHAVIOURS[_TIANCHI_CODES[code]]
            ts_ms = int(dt.datetime.strptime(day, "%Y%m%d").replace(tzinfo=dt.UTC).timestamp() * 1000)
        except (ValueError, KeyError) as exc:
            raise DataError(f"{path}:{n}: malformed row {line!r}") from exc
        rows.setdefault(user, []).append((ts_ms, item, None, scen, act))
    return _histories(rows, "tc")


def read_taobao(root: Path) -> list[UserHistory]:
    """``UserBehavior.csv`` (user, item, category, pv/fav/cart/buy, unix seconds), no header."""
    path = Path(root) / "UserBehavior.csv"
    rows: dict[str, list[Row]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            user, item, _category, code, ts = line.split(",")
            scen, act = BEHAVIOURS[_TAOBAO_CODES[code]]
            rows.setdefault(user, []).append((int(ts) * 1000, item, None, scen, act))
        except (ValueError, KeyError) as exc:
            raise DataError(f"{path}:{n}: malformed row {line!r}") from exc
    return _histories(rows, "tb")
