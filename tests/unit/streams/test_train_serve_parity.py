"""Train/serve parity: the same events reach the model as the same inputs on both paths.

Serving: wire bytes → ``decode_event`` → ``UserSequence`` → ``sequence_input``. Training: wire
dicts → ``histories_from_wire`` → ``UserHistory.context``. Both then go through ``build_inputs``.
"""

from __future__ import annotations

import numpy as np
import pytest

from encoders.config import ModelConfig
from encoders.data.synthetic import generate_events
from encoders.data.wire import histories_from_wire
from encoders.dataset import EventDataset
from encoders.features import build_inputs
from state.config import MixingConfig
from state.mixing import MixingPolicy
from state.sequence import ApplyResult, UserSequence
from streams.events import EventLimits, decode_event, encode_event
from streams.recompute import sequence_input

FAR_FUTURE_MS = 2_000_000_000_000


def served_sequences(events: list[tuple[str, dict]]) -> dict[str, UserSequence]:
    """Every event through the wire path the worker takes."""
    sequences: dict[str, UserSequence] = {}
    for scenario, wire in events:
        behavior = decode_event(scenario, wire["user_id"].encode(), encode_event(wire), FAR_FUTURE_MS,
                                EventLimits())
        seq = sequences.setdefault(behavior.user_id, UserSequence(behavior.user_id))
        assert seq.apply(behavior) is ApplyResult.ADDED
    return sequences


@pytest.mark.parametrize("slots", [None, {"feed": 6, "search": 3, "ads": 2}])
def test_wire_and_training_paths_give_identical_model_inputs(slots: dict[str, int] | None) -> None:
    events = list(generate_events(6, seed=3, mean_events=40))
    policy = MixingPolicy(MixingConfig() if slots is None else MixingConfig(scenario_slots=slots))
    histories = histories_from_wire(events)
    dataset = EventDataset.build(histories)
    config = ModelConfig()
    served = served_sequences(events)
    trained = [h.context(len(h), policy) for h in histories]
    serving = [sequence_input(served[h.user_id], policy) for h in histories]
    train_inputs = build_inputs(trained, dataset.index, config)
    serve_inputs = build_inputs(serving, dataset.index, config)
    assert train_inputs.keys() == serve_inputs.keys()
    for name in train_inputs:
        np.testing.assert_array_equal(train_inputs[name], serve_inputs[name], err_msg=name)
    assert [s.texts for s in trained] == [s.texts for s in serving]
    assert train_inputs["mask"].sum() > 0
