"""Hostile messages through ``decode_event``: a ``Behavior`` or a ``PoisonMessageError``, nothing else.
The fault suite runs the same property with 10,000 examples (``make test-faults``)."""

from __future__ import annotations

import time

from fixtures.hostile import SCENARIO_NAMES, hostile_message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.records import Behavior
from streams.errors import PoisonMessageError
from streams.events import EventLimits, decode_event

NOW_MS = int(time.time() * 1000)


def check_decode(scenario: str, message: tuple[bytes | None, bytes | None]) -> str:
    """Decode one message; return ``"ok"`` or the dead-letter reason. Anything else raised fails."""
    key, value = message
    try:
        behavior = decode_event(scenario, key, value, NOW_MS, EventLimits())
    except PoisonMessageError as exc:
        assert exc.reason in {"decode_error", "validation_error", "key_mismatch", "message_too_large"}
        assert str(exc)  # a clear reason text
        return exc.reason
    assert isinstance(behavior, Behavior) and behavior.scenario == scenario
    assert key == behavior.user_id.encode()
    return "ok"


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_hostile_messages_decode_or_dead_letter(data: st.DataObject) -> None:
    scenario = data.draw(st.sampled_from(SCENARIO_NAMES))
    check_decode(scenario, data.draw(hostile_message(scenario, NOW_MS)))
