"""Model inputs from a user's state, micro-batching and version bumps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from encoders.features import SequenceInput
from state.mixing import MixingPolicy, RecentWindowPolicy
from state.records import ACTIONS, SCENARIOS, Behavior
from state.sequence import UserSequence
from streams.recompute import Recomputer, sequence_input


class ShapeEncoder:
    """A stand-in model (numpy): vectors filled with the sequence length, shape [B, S, 2, 4]."""

    model_version = "test-1"

    def __init__(self, scenarios: Sequence[str] = SCENARIOS, actions: Sequence[str] = ACTIONS) -> None:
        self.scenarios = tuple(scenarios)
        self.actions = tuple(actions)
        self.calls: list[int] = []

    def encode(self, sequences: list[SequenceInput]) -> np.ndarray:
        self.calls.append(len(sequences))
        out = np.zeros((len(sequences), len(self.scenarios), 2, 4), dtype=np.float32)
        for i, seq in enumerate(sequences):
            out[i] = len(seq)
        return out


def sequence(user: str, n: int) -> UserSequence:
    seq = UserSequence(user)
    for i in range(n):
        scenario = SCENARIOS[i % 3]
        action = {"feed": "click", "search": "query", "ads": "impression"}[scenario]
        seq.apply(Behavior(f"{user}-{i}", user, scenario, 1_700_000_000_000 + i * 1000, action,
                           item_id=None if scenario == "search" else f"i{i}",
                           text="q" if scenario == "search" else None))
    return seq


def test_sequence_input_follows_the_selector_and_the_watermark() -> None:
    seq = sequence("u", 7)
    inp = sequence_input(seq, RecentWindowPolicy(4))
    assert len(inp) == 4 and inp.now_ms == seq.watermark_ms
    assert inp.ts_ms.tolist() == sorted(inp.ts_ms.tolist())
    assert inp.scenario_idx.tolist() == [i % 3 for i in range(3, 7)]
    assert [ACTIONS[a] for a in inp.action_idx] == ["click", "query", "impression", "click"]
    assert inp.texts[1] == "q" and inp.item_ids[1] is None


def test_updates_bump_versions_and_carry_the_state() -> None:
    encoder = ShapeEncoder()
    seqs = [sequence("a", 3), sequence("b", 5)]
    updates = Recomputer(encoder, MixingPolicy(), max_batch_users=8).updates(seqs)
    assert [u.version for u in updates] == [1, 1] and [s.version for s in seqs] == [1, 1]
    assert updates[1].vectors.shape == (3, 2, 4) and updates[1].vectors[0, 0, 0] == 5
    assert UserSequence.from_bytes(updates[0].sequence_state).version == 1
    assert updates[0].model_version == "test-1" and updates[0].scenarios == SCENARIOS


def test_chunks_bound_the_model_batch() -> None:
    recomputer = Recomputer(ShapeEncoder(), MixingPolicy(), max_batch_users=2)
    assert [len(c) for c in recomputer.chunks([sequence(f"u{i}", 1) for i in range(5)])] == [2, 2, 1]


def test_chunks_put_users_of_similar_length_together() -> None:
    """A batch is padded to its longest user: a heavy user must not pad the light ones."""
    recomputer = Recomputer(ShapeEncoder(), MixingPolicy(), max_batch_users=2)
    users = [sequence("heavy", 90), sequence("a", 1), sequence("mid", 40), sequence("b", 1), sequence("c", 2)]
    chunks = recomputer.chunks(users)
    assert [[s.user_id for s in c] for c in chunks] == [["a", "b"], ["c", "mid"], ["heavy"]]


def test_items_outside_the_model_vocabulary_are_counted() -> None:
    class KnownItems(ShapeEncoder):
        item_index = {"i1": 2}

    counted: list[int] = []
    recomputer = Recomputer(KnownItems(), MixingPolicy(), on_unknown_items=counted.append)
    seq = UserSequence("u1")
    for k, item in enumerate(["i1", "i2", "i3", None]):
        seq.apply(Behavior(f"e{k}", "u1", "feed" if item else "search", 1_000 + k,
                           "click" if item else "query", item_id=item, text=None if item else "q"))
    recomputer.updates([seq])
    assert counted == [2]
