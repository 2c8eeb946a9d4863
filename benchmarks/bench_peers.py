"""Peer baseline: the same merge job through a real Tansu broker in unistate, faust-streaming and Quix Streams.

The job (``benchmarks/peers/merge_job.py``): consume N msgpack events from the three input topics
(keyed by user id, co-partitioned), decode and validate each against the event schema, merge each
valid event into its user's in-memory sequence and track which users changed (stub encoder: no
model, no Redis write). events/s run from the first consumed message to the N-th merged event.

The driver starts its own Tansu broker and redis-server (``streams.devservers.servers``), creates
the topics once (with ``retention.ms``, which Quix Streams reads), produces the synthetic events
once (``encoders.data.synthetic.generate_events`` + ``streams.events.encode_event``, via
``bench_worker.split_stream`` and ``streams.cli.produce.produce_events``), then runs each contestant
as its own process with a fresh consumer group on those topics, interleaved repeat by repeat:

- ``unistate``: ``peers/unistate_app.py``, the worker's own run loop with a stub encoder;
- ``faust``: ``peers/faust_app.py``, a faust-streaming app, one agent per topic;
- ``quix``: ``peers/quix_app.py``, a Quix Streams app, one StreamingDataFrame per topic, run with
  ``--quix-python`` (Quix pins older confluent-kafka and pydantic: keep it in its own venv).

Each contestant prints one JSON line (events/s, peak RSS); the driver prints a markdown table with
the median over repeats and the unistate / peer ratios.

    .venv/bin/python benchmarks/bench_peers.py --quix-python /path/to/quix-venv/bin/python
    .venv/bin/python benchmarks/bench_peers.py --help
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

PEERS = Path(__file__).resolve().parent / "peers"
REPO = Path(__file__).resolve().parents[1]
CONTESTANTS = {"unistate": "unistate_app.py", "faust": "faust_app.py", "quix": "quix_app.py"}
#: Topic retention: Quix Streams reads ``retention.ms`` of its input topics at start.
RETENTION_MS = 7 * 86_400_000


@dataclass
class Run:
    """One contestant's run: its result line, or why there is none."""

    contestant: str
    repeat: int
    result: dict[str, Any] | None
    error: str | None
    wall_s: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="N: events each contestant merges (default 100k)")
    parser.add_argument("--users", type=int, default=1000, help="synthetic users (default 1000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per input topic (default 4)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each contestant, interleaved; the median is reported (default 3)")
    parser.add_argument("--contestants", nargs="+", choices=list(CONTESTANTS), default=list(CONTESTANTS),
                        help="which to run (default all three); ratios need unistate")
    parser.add_argument("--quix-python", default=sys.executable,
                        help="interpreter with quixstreams installed (default: this one); Quix is skipped "
                             "with a message when it cannot import it")
    parser.add_argument("--fetch-wait-max-ms", type=int, default=20,
                        help="longest a fetch waits at the broker, every contestant (default 20)")
    parser.add_argument("--faust-stock-fetch-wait", action="store_true",
                        help="leave Faust's hard-coded aiokafka fetch_max_wait_ms=1500 (default: as the others)")
    parser.add_argument("--faust-take", type=int, default=0,
                        help="Faust agents take events in lists of up to this many (stream.take_events); "
                             "default 0: one at a time (stream.events())")
    parser.add_argument("--log-dir", type=Path, default=None,
                        help="keep each run's stderr log here (default: a temp dir, removed; tails shown on failure)")
    parser.add_argument("--run-timeout-s", type=float, default=300.0,
                        help="give up on one run after this long (default 300)")
    parser.add_argument("--seed", type=int, default=3)
    return parser.parse_args(argv)


def synthetic_events(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """The first N events of a synthetic stream of ``--users`` users (time order, ending a minute ago)."""
    from bench_worker import split_stream

    mean_events = max(1, -(-args.events * 5 // (4 * args.users)))  # 25% spare: user lengths vary
    backlog, _ = split_stream(argparse.Namespace(users=args.users, seed=args.seed, mean_events=mean_events,
                                                 live_events=0))
    if len(backlog) < args.events:
        raise SystemExit(f"the synthetic stream has only {len(backlog)} events; lower --events or raise --users")
    return backlog[: args.events]


def child_env() -> dict[str, str]:
    """This environment with the repository (``streams``, ``state``) on ``PYTHONPATH``."""
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path}


def probe(python: str, contestant: str) -> tuple[str | None, str]:
    """``(version, "")`` when ``python`` can import the contestant's app, else ``(None, why)``."""
    argv = [python, str(PEERS / CONTESTANTS[contestant]), "--probe"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, env=child_env(), timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
    return json.loads(done.stdout.strip().splitlines()[-1])["version"], ""


def run_one(contestant: str, python: str, argv: list[str], repeat: int, timeout_s: float, log_dir: Path) -> Run:
    """Spawn one contestant, wait for its JSON line; its stderr goes to a log file (tail shown on failure)."""
    log_path = log_dir / f"{contestant}-{repeat}.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen([python, str(PEERS / CONTESTANTS[contestant]), *argv],  # noqa: S603
                                   stdout=subprocess.PIPE, stderr=log, text=True, env=child_env())
        try:
            stdout, _ = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            stdout = None
    wall_s = time.perf_counter() - started
    lines = [line for line in (stdout or "").splitlines() if line.startswith("{")]
    if stdout is not None and process.returncode == 0 and lines:
        return Run(contestant, repeat, json.loads(lines[-1]), None, wall_s)
    why = f"no result within {timeout_s:.0f}s" if stdout is None else f"exit {process.returncode}"
    tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
    print(f"\n{contestant} run {repeat} failed ({why}); stderr tail:\n" + "\n".join(tail), file=sys.stderr)
    return Run(contestant, repeat, json.loads(lines[-1]) if lines else None, why, wall_s)


def prepare(args: argparse.Namespace, broker: Any, events: list[tuple[str, dict]]) -> str:  # noqa: ANN401
    """Create the topics (``retention.ms`` set) and produce the events once; returns the topic prefix."""
    from confluent_kafka.admin import AdminClient

    from streams.cli.produce import produce_events
    from streams.producer import KafkaProducer
    from streams.topics import TopicNames, create_topics

    prefix = f"p{uuid.uuid4().hex[:8]}."
    topics = TopicNames.from_prefix(prefix)
    create_topics(AdminClient({"bootstrap.servers": broker.bootstrap}), topics, args.partitions, 1,
                  topic_config={"retention.ms": RETENTION_MS})
    with KafkaProducer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20}) as producer:
        produce_events(producer, topics, events, total=len(events), progress=True)
    return prefix


def median_rate(runs: list[Run]) -> float | None:
    rates = [r.result["events_per_s"] for r in runs if r.error is None and r.result and r.result["events_per_s"]]
    return statistics.median(rates) if rates else None


def check(runs: list[Run], n: int) -> str:
    """``ok`` when every run merged at least N events, none invalid, none a duplicate or stale."""
    bad = [r for r in runs if r.error or not r.result or r.result["added"] < n or r.result["invalid"]
           or any(r.result["not_added"].values())]
    return "ok" if runs and not bad else f"{len(bad)} of {len(runs)} runs failed or merged wrongly"


def table(runs: list[Run], contestants: list[str], versions: dict[str, str], n: int) -> str:
    base = median_rate([r for r in runs if r.contestant == "unistate"])
    out = ["| contestant | events/s (median, min–max) | unistate × | peak RSS MiB (max) | CPU s / clock s "
           "| first message after s | users changed | check |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for name in contestants:
        mine = [r for r in runs if r.contestant == name]
        good = [r.result for r in mine if r.error is None and r.result]
        rate = median_rate(mine)
        if rate is None:
            out.append(f"| {name} ({versions.get(name, '?')}) | failed | – | – | – | – | – | {check(mine, n)} |")
            continue
        rates = sorted(g["events_per_s"] for g in good)
        ratio = f"**{base / rate:.2f}×**" if base and name != "unistate" else ("1.00×" if base else "–")
        out.append(f"| {name} ({versions[name]}) | {rate:,.0f} ({rates[0]:,.0f}–{rates[-1]:,.0f}) | {ratio} "
                   f"| {max(g['peak_rss_mib'] for g in good):,.0f} "
                   f"| {statistics.median(g['cpu_s'] / g['seconds'] for g in good):.2f} "
                   f"| {statistics.median(g['first_message_after_s'] for g in good):.1f} "
                   f"| {good[-1]['users_changed']:,} | {check(mine, n)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench_merge import machine

    from streams.devservers.servers import start_broker, start_redis

    pythons = {name: args.quix_python if name == "quix" else sys.executable for name in args.contestants}
    versions, contestants = {}, []
    for name in args.contestants:
        version, why = probe(pythons[name], name)
        if version is None:
            print(f"SKIPPED {name}: {pythons[name]} cannot run peers/{CONTESTANTS[name]}: {why}"
                  + (" (install quixstreams in a venv, pass --quix-python)" if name == "quix" else ""), file=sys.stderr)
            continue
        versions[name] = version
        contestants.append(name)
    events = synthetic_events(args)
    runs: list[Run] = []
    with ExitStack() as stack:
        log_dir = args.log_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="unistate-bench-peers-")))
        log_dir.mkdir(parents=True, exist_ok=True)
        broker = stack.enter_context(start_broker())
        redis_server = stack.enter_context(start_redis()) if "unistate" in contestants else None
        prefix = prepare(args, broker, events)
        common = ["--bootstrap", broker.bootstrap, "--topic-prefix", prefix, "--events", str(args.events),
                  "--fetch-wait-max-ms", str(args.fetch_wait_max_ms)]
        bar = stack.enter_context(tqdm(total=args.repeats * len(contestants), desc="runs", unit="run"))
        for repeat in range(args.repeats):
            order = contestants[repeat % len(contestants):] + contestants[: repeat % len(contestants)]
            for name in order:
                argv = [*common, "--group", f"{name}-{repeat}-{uuid.uuid4().hex[:6]}"]
                if name == "unistate":
                    argv += ["--redis-url", redis_server.url]
                if name == "faust":
                    argv += ["--take", str(args.faust_take), *(["--stock-fetch-wait"] * args.faust_stock_fetch_wait)]
                bar.set_postfix_str(name)
                runs.append(run_one(name, pythons[name], argv, repeat, args.run_timeout_s, log_dir))
                bar.update()
    users = len({e["user_id"] for _, e in events})
    print(f"## bench_peers\n\n{machine()}\n\ncommand: `{shlex.join([sys.executable, *sys.argv])}`\n\n"
          f"{args.events:,} events of {users:,} users, 3 topics × {args.partitions} partitions on one Tansu broker, "
          f"fetch.wait.max.ms={args.fetch_wait_max_ms}, {args.repeats} repeats interleaved (median, min–max); "
          "stub encoder (no model, no Redis write)\n")
    print(table(runs, contestants, versions, args.events))
    print("\nresult lines (one per run, in run order):\n\n```")
    for r in runs:
        print(json.dumps(r.result) if r.result else f'{{"contestant": "{r.contestant}", "error": "{r.error}"}}')
    print("```")
    failed = [r for r in runs if r.error]
    return 1 if failed or not contestants else 0


if __name__ == "__main__":
    sys.exit(main())
