"""The merge job every peer app runs, its command line, and the one JSON result line each prints.

The job, identical for every contestant: consume N msgpack events from the three input topics
(keyed by user id, co-partitioned), decode and validate each against the event schema
(``streams.fast_decode.decode_event_fast``: the worker's own msgspec decoder, same verdicts as the
pydantic schema in ``streams.events``), merge each valid event into its user's in-memory
``state.sequence.UserSequence`` (per scenario, newest kept, bounded by ``StateConfig``'s defaults,
exact redelivery dedupe by source partition and offset) and track which users changed (the
"stub encoder": no model, no Redis). The clock runs from the first consumed message to the moment
the N-th event has been merged.

The peers (``faust_app.py``, ``quix_app.py``) call ``MergeJob.handle`` once per message; the
unistate contestant (``unistate_app.py``) runs the worker's own decode and apply instead and uses
only the command line, ``Meter`` and ``result_line`` from here.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from state.config import StateConfig
from state.sequence import ApplyResult, UserSequence
from streams.errors import PoisonMessageError
from streams.events import EventLimits
from streams.fast_decode import decode_event_fast
from streams.topics import TopicNames

__all__ = ["ISOLATION", "MergeJob", "Meter", "base_parser", "input_topics", "peak_rss_mib", "require", "result_line"]

#: Every contestant reads with the same isolation (aiokafka's default; the input topics have no
#: transactional producers). On Tansu the worker's shipped ``read_committed`` cut its batch
#: consume to ~37k events/s (89k with this) in the same job; see docs/benchmarks.md section 3.
ISOLATION = "read_uncommitted"

_ADDED = ApplyResult.ADDED


def base_parser(description: str) -> argparse.ArgumentParser:
    """The options every contestant takes (the driver passes them all)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers, e.g. 127.0.0.1:9092")
    parser.add_argument("--topic-prefix", help="input topics are PREFIX + feed/search/ads (streams.topics)")
    parser.add_argument("--events", type=int, help="stop once this many events were merged (N)")
    parser.add_argument("--group", help="consumer group id (and app id), fresh for each run")
    parser.add_argument("--fetch-wait-max-ms", type=int, default=20,
                        help="longest a fetch may wait at the broker (default 20: Tansu holds every fetch this long)")
    parser.add_argument("--probe", action="store_true",
                        help="import everything, print the framework's version as JSON and exit")
    return parser


def require(args: argparse.Namespace, *names: str) -> None:
    """Exit with a usage error unless every option in ``names`` was given (they are optional for --probe)."""
    missing = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n) is None]
    if missing:
        sys.exit(f"missing options: {' '.join(missing)}")


def input_topics(prefix: str) -> dict[str, str]:
    """Input topic name → scenario, as the worker derives them from the prefix."""
    return TopicNames.from_prefix(prefix).scenario_of()


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB: ``VmHWM`` of ``/proc/self/status``.

    Not ``ru_maxrss``: Linux carries it across ``execve``, so a contestant started from the driver
    would report at least the driver's own peak at the fork."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration, ValueError):
        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # other systems: the best there is
    return kib / 1024


@dataclass
class Meter:
    """Counts merged events; holds ``time.perf_counter()`` at the first message and at the N-th event."""

    target: int
    started_at: float = field(default_factory=time.perf_counter)  # process ready to consume
    first_at: float | None = None
    done_at: float | None = None
    #: ``time.process_time()`` (CPU of every thread of the process) at the same two moments.
    first_cpu: float = 0.0
    done_cpu: float = 0.0
    events: int = 0
    #: Events merged when the clock stopped: the target, or a little more when a whole batch is merged at once.
    done_events: int = 0

    def first(self, at: float | None = None) -> None:
        """Called when a message is handed to the app; the first call starts the clock."""
        if self.first_at is None:
            self.first_at = time.perf_counter() if at is None else at
            self.first_cpu = time.process_time()

    def count(self, n: int = 1, at: float | None = None) -> bool:
        """``n`` more events merged; True once the target is reached (the clock then stops)."""
        self.events += n
        if self.done_at is None and self.events >= self.target:
            self.done_at = time.perf_counter() if at is None else at
            self.done_events = self.events
            self.done_cpu = time.process_time()
        return self.done_at is not None

    @property
    def seconds(self) -> float | None:
        """First message to the N-th merged event, or None when the target was not reached."""
        if self.first_at is None or self.done_at is None:
            return None
        return self.done_at - self.first_at


@dataclass
class MergeJob:
    """Decode, validate and merge one message at a time into plain in-memory per-user sequences."""

    scenario_of: dict[str, str]
    limits: EventLimits = field(default_factory=EventLimits)
    config: StateConfig = field(default_factory=StateConfig)
    sequences: dict[str, UserSequence] = field(default_factory=dict)
    #: The users whose sequence gained an event: what the stub encoder would recompute.
    changed: set[str] = field(default_factory=set)
    invalid: int = 0
    added: int = 0
    not_added: Counter[str] = field(default_factory=Counter)

    def handle(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        """One consumed message: an invalid one is counted (no DLQ), a valid one merged."""
        scenario = self.scenario_of[topic]
        try:
            behavior = decode_event_fast(scenario, key, value, int(time.time() * 1000), self.limits)
        except PoisonMessageError:
            self.invalid += 1
            return
        user_id = behavior.user_id
        seq = self.sequences.get(user_id)
        if seq is None:
            seq = self.sequences[user_id] = UserSequence(user_id, self.config)
        outcome = seq.apply(behavior, f"{scenario}/{partition}", offset)
        if outcome is _ADDED:
            self.added += 1
            self.changed.add(user_id)
        else:
            self.not_added[outcome.value] += 1

    def outcomes(self) -> dict[str, Any]:
        """What the job did, for the result line."""
        return {"added": self.added, "invalid": self.invalid, "not_added": dict(self.not_added),
                "users_changed": len(self.changed)}


def result_line(contestant: str, version: str, meter: Meter, outcomes: dict[str, Any], **extra: Any) -> str:
    """The one JSON line a contestant prints on stdout when it is done."""
    first_after_s = None if meter.first_at is None else round(meter.first_at - meter.started_at, 3)
    return json.dumps({
        "contestant": contestant, "version": version, "events": meter.events, "target": meter.target,
        "seconds": meter.seconds, "events_per_s": meter.done_events / meter.seconds if meter.seconds else None,
        "cpu_s": meter.done_cpu - meter.first_cpu if meter.seconds else None,
        "first_message_after_s": first_after_s, "peak_rss_mib": round(peak_rss_mib(), 1),
        **outcomes, **extra,
    })
