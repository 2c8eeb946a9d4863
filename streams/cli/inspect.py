"""The ``inspect`` report of one user's stored state: a JSON-able dict and its text rendering.

Built from one read of the user's key (``EmbeddingReader.get_user``: vectors, metadata and the
sequence state); the item index of the exported model, when given, adds each scenario's top items
and flags the sequence's items that are outside the model's vocabulary.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np

from encoders.item_index import ItemIndex
from state.config import StateConfig
from state.errors import StateFormatError
from state.mixing import MixingPolicy
from state.reader import UserEmbedding
from state.records import SCENARIOS
from state.sequence import UserSequence
from streams.integrations.targeting import rank_users

__all__ = ["build_report", "format_report"]

Report = dict[str, Any]


def _when(ts_ms: int | None) -> str:
    if not ts_ms or ts_ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _sequence(emb: UserEmbedding, policy: MixingPolicy, config: StateConfig, index: ItemIndex | None) -> Report:
    """Every buffered event with its time bucket, whether the policy chose it, and whether the
    model knows its item; per-scenario counts and the bucket bounds."""
    seq = UserSequence.from_bytes(emb.sequence_state, config) if emb.sequence_state else None
    if seq is None:
        seq = UserSequence(emb.user_id, config)
    behaviors, scenario_idx, ts_ms = seq.arrays()
    now_ms = seq.watermark_ms
    chosen = np.zeros(len(behaviors), dtype=bool)
    chosen[policy.select(scenario_idx, ts_ms, now_ms)] = True
    buckets = policy.buckets(ts_ms, now_ms).tolist()
    events = [
        {"event_id": b.event_id, "ts_ms": b.ts_ms, "time": _when(b.ts_ms), "scenario": b.scenario,
         "action": b.action, "item_id": b.item_id, "text": b.text, "dwell_ms": b.dwell_ms,
         "bucket": buckets[i], "chosen": bool(chosen[i]),
         "unknown_item": None if index is None or b.item_id is None else b.item_id not in index}
        for i, b in enumerate(behaviors)
    ]
    bounds = list(policy.config.bucket_bounds_ms)
    return {
        "user_id": seq.user_id, "version": seq.version, "watermark_ms": now_ms, "watermark": _when(now_ms),
        "buffered": seq.counts(),
        "chosen": {s: sum(e["chosen"] for e in events if e["scenario"] == s) for s in SCENARIOS},
        "budget": {s: policy.config.slots(s) for s in SCENARIOS},
        "buckets": [{"bucket": i, "max_age_ms": b} for i, b in enumerate([*bounds, None])],
        "events": events,
    }


def _unknown_items(events: list[Report]) -> Report:
    unknown = [e["item_id"] for e in events if e["unknown_item"]]
    return {"count": len(unknown), "events_with_item": sum(e["item_id"] is not None for e in events),
            "distinct": sorted(set(unknown))}


def _vectors(emb: UserEmbedding, precision: int) -> Report:
    q, d = next((v.shape for v in emb.vectors.values()), (0, 0))
    return {
        "version": emb.version, "watermark_ms": emb.watermark_ms, "computed_at_ms": emb.computed_at_ms,
        "model_version": emb.model_version, "ttl_s": emb.ttl_s, "layout_version": emb.layout_version,
        "q": int(q), "d": int(d),
        "scenarios": {s: {"norms": np.round(np.linalg.norm(v.astype(np.float64), axis=-1), precision).tolist(),
                          "values": np.round(v.astype(np.float64), precision).tolist()}
                      for s, v in emb.vectors.items()},
    }


def _top_items(emb: UserEmbedding, index: ItemIndex, top: int, precision: int) -> Report:
    out: Report = {}
    for scenario, vectors in emb.vectors.items():
        if scenario not in index.scenarios or vectors.shape[-1] != index.dim:
            continue
        ranked = rank_users(index, scenario, [emb.user_id], vectors[None], [emb.model_version], k=top)
        out[scenario] = [{"item_id": item, "score": round(score, precision)}
                         for item, score in ranked.ranked.get(emb.user_id, [])]
    return out


def build_report(
    emb: UserEmbedding, policy: MixingPolicy, config: StateConfig, index: ItemIndex | None = None,
    top: int = 5, precision: int = 4,
) -> Report:
    """The whole report of one user (``index``: the exported model's items, or ``None``)."""
    report: Report = {"user_id": emb.user_id, "notes": [], "sequence": None, "unknown_items": None,
                      "vectors": _vectors(emb, precision), "model": None, "top_items": None}
    try:
        report["sequence"] = _sequence(emb, policy, config, index)
    except StateFormatError as exc:
        report["notes"].append(f"sequence state undecodable: {exc}")
    else:
        if report["sequence"]["user_id"] != emb.user_id:
            report["notes"].append(f"the stored sequence belongs to {report['sequence']['user_id']!r}")
    if index is None:
        report["notes"].append("no model: top items and unknown items need --model-dir")
        return report
    same = emb.model_version == index.model_version
    report["model"] = {"model_version": index.model_version, "items": len(index),
                       "scenarios_known": index.knows_scenarios, "same_model": same}
    if report["sequence"] is not None:
        report["unknown_items"] = _unknown_items(report["sequence"]["events"])
    if same:
        report["top_items"] = _top_items(emb, index, top, precision)
    else:
        report["notes"].append(f"vectors are from model {emb.model_version}, the item index from "
                               f"{index.model_version}: top items not scored")
    return report


def _bucket_label(buckets: list[Report], bucket: int) -> str:
    hours = [b["max_age_ms"] / 3_600_000 for b in buckets if b["max_age_ms"] is not None]
    lower = 0.0 if bucket == 0 else hours[bucket - 1]
    upper = f"{hours[bucket]:g}h" if bucket < len(hours) else "older"
    return f"bucket {bucket} (age {lower:g}h .. {upper})"


def _event_line(e: Report) -> str:
    parts = [e["time"], f"{e['action']:<10}"]
    if e["item_id"]:
        parts.append(f"item={e['item_id']}" + (" [unknown item]" if e["unknown_item"] else ""))
    if e["text"]:
        parts.append(f"text={e['text']!r}")
    if e["dwell_ms"]:
        parts.append(f"dwell_ms={e['dwell_ms']}")
    return "      " + "  ".join(parts)


def _sequence_lines(seq: Report) -> list[str]:
    chosen = [e for e in seq["events"] if e["chosen"]]
    lines = [f"sequence: version={seq['version']} watermark={seq['watermark']} (watermark_ms={seq['watermark_ms']})",
             f"mixed sequence: {len(chosen)} of {len(seq['events'])} buffered events"]
    for scenario in SCENARIOS:
        lines.append(f"  {scenario}: {seq['chosen'][scenario]} chosen of {seq['buffered'][scenario]} buffered "
                     f"(budget {seq['budget'][scenario]})")
        for bucket in sorted({e["bucket"] for e in chosen if e["scenario"] == scenario}):
            picked = [e for e in chosen if e["scenario"] == scenario and e["bucket"] == bucket]
            lines.append(f"    {_bucket_label(seq['buckets'], bucket)}: {len(picked)}")
            lines += [_event_line(e) for e in picked]
    return lines


def _vector_lines(vec: Report, first_values: int) -> list[str]:
    lines = [f"vectors: version={vec['version']} watermark={_when(vec['watermark_ms'])} "
             f"(watermark_ms={vec['watermark_ms']}) computed_at={_when(vec['computed_at_ms'])} "
             f"model_version={vec['model_version']} ttl_s={vec['ttl_s']}"]
    for scenario, v in vec["scenarios"].items():
        lines.append(f"  {scenario}: shape={[vec['q'], vec['d']]} norms={v['norms']}")
        for q, row in enumerate(v["values"]):
            more = " ..." if first_values < len(row) else ""
            lines.append(f"    q{q}: {row[:first_values]}{more}")
    return lines


def format_report(report: Report, first_values: int = 6) -> str:
    """The report as text (``first_values`` vector values shown per query vector)."""
    lines = [f"user {report['user_id']}"]
    if report["sequence"] is not None:
        lines += _sequence_lines(report["sequence"])
    unknown = report["unknown_items"]
    if unknown is not None:
        lines.append(f"unknown items: {unknown['count']} of {unknown['events_with_item']} events with an item "
                     f"are not in the model's vocabulary" + (f": {', '.join(unknown['distinct'])}"
                                                            if unknown["distinct"] else ""))
    lines += _vector_lines(report["vectors"], first_values)
    if report["top_items"] is not None:
        lines.append(f"top items (model {report['model']['model_version']}, max over the query vectors of the "
                     "dot product):")
        for scenario, ranked in report["top_items"].items():
            lines.append(f"  {scenario}: " + ", ".join(f"{r['item_id']} {r['score']}" for r in ranked))
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
