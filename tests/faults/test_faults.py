"""The fault suite (``make test-faults``): each case runs the stream through real worker processes,
a real Tansu broker and redis-server while injecting faults, then compares the final Redis state
with the uninterrupted reference run. Figures go to ``.artifacts/faults/report.json``."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import psutil
import pytest
from conftest import RedisProcess
from fixtures.hostile import SCENARIO_NAMES, hostile_message
from harness import Outcome, Run, UserState, compare
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.records import Behavior
from state.sequence import event_key
from streams.devservers.servers import Server
from streams.errors import PoisonMessageError
from streams.events import EventLimits, decode_event

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

RSS_BOUND_BYTES = 1536 * 2**20


def finish(run: Run, redis_process: RedisProcess, reference: dict[str, UserState], users: list[str],
           outcome: Outcome, skip: frozenset[str] = frozenset()) -> Outcome:
    """A healthy worker finishes the stream; then stop everything and compare with the reference."""
    if not any(p.poll() is None for p, _ in run.workers):
        run.start_worker()
    run.wait_caught_up()
    outcome.worker_exits_unexpected = run.unexpected_exits() + run.stop_all()
    with redis_process.client() as client:
        compare(reference, run.snapshot(client, users), outcome, run.notifications(), skip)
    return outcome


def assert_clean(outcome: Outcome, run: Run) -> None:
    assert outcome.clean(), f"{outcome}\n--- worker log tail ---\n{run.log.read_text(errors='replace')[-4000:]}"


def test_kill_9_at_random_points_and_between_publish_flush_and_commit(
    broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
    users: list[str], reference: dict[str, UserState], workdir: Path, record: list[Outcome],
) -> None:
    rng = random.Random(11)
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, "kill-9")
    outcome = Outcome("kill -9 (7 points)", stream[1], 0)
    producing = run.produce_in_background(stream[0], over_s=40)
    # Two kills by the worker itself at exact points of a batch, five from outside at random times.
    for point in ("published:3", "flushed:3"):
        worker = run.start_worker(UNISTATE_WORKER_FAULT_KILL_AT=point)
        assert worker.wait(120) == -signal.SIGKILL, run.log.read_text(errors="replace")[-3000:]
        outcome.faults_injected += 1
    for _ in range(5):
        worker = run.start_worker()
        time.sleep(rng.uniform(4.0, 9.0))  # start-up takes ~3 s: the kill lands mid-stream
        run.kill(worker)
        outcome.faults_injected += 1
    producing.join()
    record.append(finish(run, redis_process, reference, users, outcome))
    assert_clean(outcome, run)


@pytest.mark.parametrize("resume", ["after the owner caught up", "while the owner catches up"])
def test_a_sigstopped_zombie_across_a_rebalance(
    resume: str, broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
    users: list[str], reference: dict[str, UserState], workdir: Path, record: list[Outcome],
) -> None:
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, "zombie")
    outcome = Outcome(f"zombie, resumed {resume.split()[0]}", stream[1], 1)
    half = len(stream[0]) // 2
    run.produce(stream[0][:200])
    zombie, owner = run.start_worker(), run.start_worker()
    run.wait_caught_up()
    producing = run.produce_in_background(stream[0][200:half], over_s=10)
    run.wait_committed(400)  # both workers are busy with the new events
    zombie.send_signal(signal.SIGSTOP)  # past the 6 s session timeout: its partitions move
    if resume.startswith("after"):
        producing.join()
        run.wait_caught_up()
        zombie.send_signal(signal.SIGCONT)
        run.produce(stream[0][half:])
    else:
        time.sleep(7)  # the fault: stopped past the 6 s session timeout
        rest = run.produce_in_background(stream[0][half:], over_s=5)
        zombie.send_signal(signal.SIGCONT)
        rest.join()
    producing.join()
    assert owner.poll() is None and zombie.poll() is None, "a worker exited"
    record.append(finish(run, redis_process, reference, users, outcome))
    assert_clean(outcome, run)


@pytest.mark.parametrize("fault", ["redis paused 10 s", "redis killed and restarted", "broker paused 10 s"])
def test_dependencies_away(
    fault: str, broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
    users: list[str], reference: dict[str, UserState], workdir: Path, record: list[Outcome],
) -> None:
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, fault.replace(" ", "-"))
    outcome = Outcome(fault, stream[1], 1)
    producing = run.produce_in_background(stream[0], over_s=25)
    run.start_worker()
    run.wait_committed(800)  # mid-stream
    if fault == "redis paused 10 s":
        redis_process.server.process.send_signal(signal.SIGSTOP)
        time.sleep(10)
        redis_process.server.process.send_signal(signal.SIGCONT)
    elif fault == "redis killed and restarted":
        redis_process.server.process.send_signal(signal.SIGKILL)
        redis_process.server.process.wait(10)
        time.sleep(3)
        redis_process.restart()
    else:
        producing.join()  # the producer would wait out the pause too; pause the consumer side only
        broker.process.send_signal(signal.SIGSTOP)
        time.sleep(10)
        broker.process.send_signal(signal.SIGCONT)
    producing.join()
    record.append(finish(run, redis_process, reference, users, outcome))
    assert_clean(outcome, run)


def test_a_poisoned_stored_state_is_quarantined_and_the_worker_goes_on(
    broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
    users: list[str], reference: dict[str, UserState], workdir: Path, record: list[Outcome],
) -> None:
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, "poisoned")
    half = len(stream[0]) // 2
    first, second = stream[0][:half], stream[0][half:]
    run.produce(first)
    run.start_worker()
    run.wait_caught_up()
    assert run.stop_all() == 0  # a worker's cache is authoritative: poison what the next one loads
    later = {key.decode() for _, key, _ in second if key}
    poisoned = sorted(later)[:5]
    with redis_process.client() as client:
        for user in poisoned:
            client.hset(run.keys.user(user), "seq", b"\xc1 not a state")
    outcome = Outcome("poisoned stored state", stream[1], len(poisoned))
    run.start_worker()
    run.produce(second)
    finish(run, redis_process, reference, users, outcome, skip=frozenset(poisoned))
    with redis_process.client() as client:
        quarantined = [u for u in poisoned if client.exists(run.keys.quarantine(u))]
        after = run.snapshot(client, poisoned)
    # A poisoned user restarts empty: it holds every event it received after the poisoning.
    for user in poisoned:
        got = {i for ids in after[user].ids.values() for i in ids}
        sent = {_event_id(value) for _, key, value in second if key == user.encode()}
        want = {i for ids in reference[user].ids.values() for i in ids} & sent
        outcome.events_lost += len(want - got)
    outcome.notes["quarantined"] = len(quarantined)
    record.append(outcome)
    assert quarantined == poisoned
    assert_clean(outcome, run)


def _event_id(value: bytes | None) -> str:
    """The event's name as the state reports it (``event_key``: the state keeps id digests)."""
    import msgpack

    return event_key(str(msgpack.unpackb(value)["event_id"]))


def test_10000_hostile_messages_through_decode_event(record: list[Outcome]) -> None:
    now_ms = int(time.time() * 1000)
    reasons: dict[str, int] = {}

    @settings(max_examples=10_000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def decode_one(data: st.DataObject) -> None:
        scenario = data.draw(st.sampled_from(SCENARIO_NAMES))
        key, value = data.draw(hostile_message(scenario, now_ms))
        try:
            behavior = decode_event(scenario, key, value, now_ms, EventLimits())
        except PoisonMessageError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
            return
        assert isinstance(behavior, Behavior) and key == behavior.user_id.encode()
        reasons["valid"] = reasons.get("valid", 0) + 1

    decode_one()
    outcome = Outcome("hostile → decode_event", sum(reasons.values()), sum(reasons.values()))
    outcome.notes["outcomes"] = reasons
    record.append(outcome)
    assert sum(reasons.values()) >= 10_000


def test_2000_hostile_messages_through_a_running_worker(
    broker: Server, redis_process: RedisProcess, tiny_model_dir: Path, stream: tuple[list, int],
    users: list[str], reference: dict[str, UserState], workdir: Path, record: list[Outcome],
) -> None:
    now_ms = int(time.time() * 1000)
    hostile: list[tuple[str, bytes | None, bytes | None]] = []

    @settings(max_examples=2_200, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def draw(data: st.DataObject) -> None:
        scenario = data.draw(st.sampled_from(SCENARIO_NAMES))
        hostile.append((scenario, *data.draw(hostile_message(scenario, now_ms))))

    draw()
    invalid = 0
    for scenario, key, value in hostile:
        try:
            decode_event(scenario, key, value, now_ms, EventLimits())
        except PoisonMessageError:
            invalid += 1
    rng = random.Random(3)
    mixed = list(stream[0])
    for message in hostile:
        mixed.insert(rng.randrange(len(mixed) + 1), message)
    run = Run(broker, redis_process.url, tiny_model_dir, workdir, "hostile")
    outcome = Outcome("hostile → running worker", stream[1], len(hostile))
    worker = run.start_worker()
    producing = run.produce_in_background(mixed, over_s=20)
    peak_rss = 0
    deadline = time.monotonic() + 240
    while (producing.is_alive() or not run.caught_up()) and time.monotonic() < deadline:
        if worker.poll() is None:
            peak_rss = max(peak_rss, psutil.Process(worker.pid).memory_info().rss)
        time.sleep(0.5)
    finish(run, redis_process, reference, users, outcome)
    dead_letters = run.dead_letters()
    outcome.notes.update({"hostile": len(hostile), "invalid": invalid, "dead_letters": dict(dead_letters),
                          "peak_rss_mib": round(peak_rss / 2**20)})
    record.append(outcome)
    # Every invalid message is dead-lettered with a reason (valid-by-chance ones are applied,
    # or dead-lettered too late / as a reused id).
    assert sum(dead_letters.values()) >= invalid and "?" not in dead_letters
    assert len(hostile) >= 2_000 and 0 < peak_rss < RSS_BOUND_BYTES
    assert_clean(outcome, run)


def test_the_reference_run_holds_every_event(reference: dict[str, UserState], stream: tuple[list, int]) -> None:
    """The comparison is only as good as the reference: it must hold the whole stream."""
    held = sum(len(ids) for state in reference.values() for ids in state.ids.values())
    assert held == stream[1]
