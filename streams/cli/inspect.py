"""A readable report of one user's state in Redis: the mixed sequence and the stored vectors."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import numpy as np
import redis

from state.keys import RedisKeys
from state.mixing import MixedSlot, MixingPolicy
from state.reader import EmbeddingReader, UserEmbedding
from state.records import SCENARIOS
from state.store import SequenceStore

__all__ = ["format_report", "inspect_user"]


def _when(ts_ms: int) -> str:
    if ts_ms <= 0:
        return "-"
    return dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _bucket_label(policy: MixingPolicy, bucket: int) -> str:
    bounds_h = [b / 3_600_000 for b in policy.config.bucket_bounds_ms]
    lower = 0.0 if bucket == 0 else bounds_h[bucket - 1]
    upper = f"{bounds_h[bucket]:g}h" if bucket < len(bounds_h) else "older"
    return f"bucket {bucket} (age {lower:g}h .. {upper})"


def _slot_line(slot: MixedSlot) -> str:
    b = slot.behavior
    parts = [_when(b.ts_ms), f"{b.action:<10}"]
    if b.item_id:
        parts.append(f"item={b.item_id}")
    if b.text:
        parts.append(f"text={b.text!r}")
    if b.dwell_ms:
        parts.append(f"dwell_ms={b.dwell_ms}")
    return "      " + "  ".join(parts)


def _sequence_lines(slots: list[MixedSlot], policy: MixingPolicy, counts: dict[str, int]) -> list[str]:
    grouped: dict[str, dict[int, list[MixedSlot]]] = defaultdict(lambda: defaultdict(list))
    for slot in slots:
        grouped[slot.scenario][slot.bucket].append(slot)
    lines = [f"mixed sequence: {len(slots)} of {sum(counts.values())} buffered events"]
    for scenario in SCENARIOS:
        chosen = sum(len(v) for v in grouped[scenario].values())
        lines.append(f"  {scenario}: {chosen} chosen of {counts.get(scenario, 0)} buffered "
                     f"(budget {policy.config.slots(scenario)})")
        for bucket in sorted(grouped[scenario]):
            lines.append(f"    {_bucket_label(policy, bucket)}: {len(grouped[scenario][bucket])}")
            lines += [_slot_line(s) for s in grouped[scenario][bucket]]
    return lines


def _vector_lines(emb: UserEmbedding, first_values: int) -> list[str]:
    lines = [
        f"vectors: version={emb.version} watermark={_when(emb.watermark_ms)} "
        f"(watermark_ms={emb.watermark_ms}) computed_at={_when(emb.computed_at_ms)} "
        f"model_version={emb.model_version} ttl_s={emb.ttl_s}",
    ]
    for scenario, vectors in emb.vectors.items():
        norms = np.linalg.norm(vectors, axis=-1)
        lines.append(f"  {scenario}: shape={list(vectors.shape)} norms={np.round(norms, 4).tolist()}")
        for q, row in enumerate(vectors):
            lines.append(f"    q{q}: {np.round(row[:first_values], 4).tolist()} ...")
    return lines


def inspect_user(
    client: redis.Redis, keys: RedisKeys, policy: MixingPolicy, user_id: str, first_values: int = 6
) -> list[str] | None:
    """Report lines for ``user_id``, or ``None`` when Redis holds nothing for them."""
    emb = EmbeddingReader(client, keys).get_user(user_id)
    sequences = SequenceStore(client, keys).load_many([user_id])
    if emb is None and user_id not in sequences:
        return None
    lines = [f"user {user_id}"]
    seq = sequences.get(user_id)
    if seq is not None:
        lines.append(f"sequence: version={seq.version} watermark_ms={seq.watermark_ms} "
                     f"counts={seq.counts()}")
        lines += _sequence_lines(policy.mix(seq), policy, seq.counts())
    if emb is not None:
        lines += _vector_lines(emb, first_values)
    return lines


def format_report(lines: list[str]) -> str:
    """The report as one string."""
    return "\n".join(lines)
