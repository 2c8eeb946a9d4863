"""``inspect --plot``: a PNG timeline of a user's buffered events by scenario and mixing time bucket.

matplotlib is optional (the ``plot`` extra); ``require_matplotlib`` says how to install it.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from state.records import SCENARIOS

__all__ = ["PLOT_HINT", "plot_timeline", "require_matplotlib"]

PLOT_HINT = "inspect --plot needs matplotlib: pip install 'unistate[plot]'"
_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def require_matplotlib() -> None:
    """Raise ``ModuleNotFoundError`` (with the install hint) when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(PLOT_HINT, name=exc.name) from exc


def _time(ts_ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC)


def plot_timeline(report: dict[str, Any], path: Path) -> Path:
    """Draw ``report["sequence"]`` (from ``build_report``) to ``path``: one row per scenario, one
    colour per time bucket, filled markers for the events the mixing policy chose, crosses over
    items unknown to the model, dashed lines at the bucket boundaries before the watermark."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    seq = report["sequence"] or {"events": [], "buckets": [], "watermark_ms": 0}
    fig = Figure(figsize=(11, 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for bucket in seq["buckets"]:
        events = [e for e in seq["events"] if e["bucket"] == bucket["bucket"]]
        color = _COLORS[bucket["bucket"] % len(_COLORS)]
        label = f"bucket {bucket['bucket']}" + (f" (age ≤ {bucket['max_age_ms'] / 3_600_000:g}h)"
                                                if bucket["max_age_ms"] is not None else " (older)")
        for chosen in (True, False):
            part = [e for e in events if e["chosen"] is chosen]
            ax.scatter([_time(e["ts_ms"]) for e in part], [SCENARIOS.index(e["scenario"]) for e in part],
                       s=40, marker="o", edgecolors=color, facecolors=color if chosen else "none",
                       label=f"{label}, {'chosen' if chosen else 'not chosen'}" if part else None)
        if bucket["max_age_ms"] is not None and seq["watermark_ms"]:
            ax.axvline(_time(seq["watermark_ms"] - bucket["max_age_ms"]), color=color, linestyle="--", linewidth=1)
    unknown = [e for e in seq["events"] if e["unknown_item"]]
    if unknown:
        ax.scatter([_time(e["ts_ms"]) for e in unknown], [SCENARIOS.index(e["scenario"]) for e in unknown],
                   s=60, marker="x", color="black", label="item unknown to the model")
    if seq["watermark_ms"]:
        ax.axvline(_time(seq["watermark_ms"]), color="black", linewidth=1, label="watermark")
    ax.set_yticks(range(len(SCENARIOS)), SCENARIOS)
    ax.set_ylim(-0.5, len(SCENARIOS) - 0.5)
    ax.set_xlabel("event time (UTC)")
    ax.set_title(f"user {report['user_id']}: buffered events by scenario and mixing time bucket")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    fig.autofmt_xdate()
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
