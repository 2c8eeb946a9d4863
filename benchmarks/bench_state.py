"""State benchmark: one user's size in Redis and in a worker, publish rate and cold loads.

Real ``redis-server`` (started here, no persistence) and the package's own writer and reader:

- **size**: ``MEMORY USAGE`` of a user's key after ``RedisPublisher.publish``, for a *full* user
  (every buffer at its default capacity, the id memory full, vectors ``[3, 3, 64]``) and for a
  user with 10 events (with Redis' default ``hash-max-listpack-value`` and with deploy/'s); and
  the Python heap one cached ``UserSequence`` holds (``tracemalloc`` over ``--cached`` sequences
  rebuilt from their stored bytes);
- **publish**: ``RedisPublisher.publish`` of full users in batches of ``--batch`` (one pipelined
  round trip of the version-checked Lua script per batch), against ``redis-benchmark -t set``
  with the same payload size, one client and the same pipeline depth, measured in the same run;
- **cold loads**: ``SequenceStore.load_many`` of full users in batches of ``--batch``: fetch and
  decode into ``UserSequence`` objects, as a worker does for users it does not hold.

Events look like production ones: 36-character UUID event ids, item ids from a 200k catalogue,
search queries of a few words, ads with ad ids.

    .venv/bin/python benchmarks/bench_state.py            # about a minute on 2 cores
    .venv/bin/python benchmarks/bench_state.py --help
"""

from __future__ import annotations

import argparse
import gc
import random
import subprocess
import sys
import time
import tracemalloc
import uuid

import numpy as np
import redis

from state.config import StateConfig
from state.keys import RedisKeys
from state.publisher import RedisPublisher, UserUpdate
from state.records import SCENARIOS, Behavior
from state.sequence import UserSequence
from state.store import SequenceStore
from streams.devservers.servers import start_redis

WORDS = ("solar", "panel", "kettle", "red", "dress", "running", "shoes", "cheap", "flight", "lamp",
         "garden", "hose", "coffee", "grinder", "phone", "case", "yoga", "mat", "desk", "chair")
FEED_ACTIONS = ("impression", "impression", "impression", "click", "like", "collect")
ADS_ACTIONS = ("impression", "impression", "click", "conversion")
#: deploy/'s Redis setting: hashes with values up to this size stay listpacks (small users compact)
LISTPACK_VALUE = 1024


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=2000, help="full users written and loaded (default 2000)")
    parser.add_argument("--batch", type=int, default=256, help="users per publish / load call (default 256)")
    parser.add_argument("--cached", type=int, default=200, help="sequences held for the heap figure (default 200)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the median is reported (default 3)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def events(user_id: str, n: int, rng: random.Random) -> list[Behavior]:
    """``n`` events of one user over ~30 days: 70 % feed, 15 % search, 15 % ads."""
    ts = 1_764_000_000_000
    out = []
    for _ in range(n):
        ts += rng.randint(1_000, 600_000)
        event_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        r = rng.random()
        if r < 0.70:
            out.append(Behavior(event_id, user_id, "feed", ts, rng.choice(FEED_ACTIONS),
                                f"item-{int(rng.paretovariate(1.1)) % 200_000}", None, rng.randint(0, 30_000)))
        elif r < 0.85:
            clicked = rng.random() < 0.5
            out.append(Behavior(event_id, user_id, "search", ts, "click" if clicked else "query",
                                f"item-{rng.randrange(200_000)}" if clicked else None,
                                " ".join(rng.choices(WORDS, k=rng.randint(1, 4)))))
        else:
            out.append(Behavior(event_id, user_id, "ads", ts, rng.choice(ADS_ACTIONS), f"ad-{rng.randrange(20_000)}"))
    return out


def sequence(user_id: str, n: int, rng: random.Random, config: StateConfig) -> UserSequence:
    seq = UserSequence(user_id, config)
    for offset, behavior in enumerate(events(user_id, n, rng)):
        seq.apply(behavior, f"{behavior.scenario}/0", offset)
    return seq


def update(seq: UserSequence, version: int, rng: np.random.Generator) -> UserUpdate:
    vectors = rng.standard_normal((len(SCENARIOS), 3, 64)).astype(np.float32)
    return UserUpdate(seq.user_id, version, seq.watermark_ms, int(time.time() * 1000), "bench",
                      SCENARIOS, vectors, seq.to_bytes())


def full_events(config: StateConfig) -> int:
    """Enough events that every buffer and the id memory overflow."""
    return 2 * max(sum(config.buffer_capacity.values()) * 10 // 7, config.recent_ids_capacity)


def redis_benchmark_set(port: int, payload: int, requests: int, pipeline: int) -> float:
    """``redis-benchmark`` SET requests/s at ``payload`` bytes, one client, ``pipeline`` deep."""
    run = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set", "-d", str(payload), "-n", str(requests),
         "-c", "1", "-P", str(pipeline), "--csv", "-r", "100000"],
        capture_output=True, text=True)
    if run.returncode:
        raise SystemExit(f"redis-benchmark failed ({run.returncode}): {run.stdout[-500:]} {run.stderr[-500:]}")
    out = run.stdout
    row = [line for line in out.splitlines() if line.startswith('"SET"')][0]
    return float(row.split(",")[1].strip('"'))


def heap_per_user(blobs: list[bytes], config: StateConfig) -> float:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [UserSequence.from_bytes(b, config) for b in blobs]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del held
    return (after - before) / len(blobs)


def machine() -> str:
    """``bench_merge.machine()`` plus the redis-server version."""
    from bench_merge import machine as base_machine

    version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.split()[2]
    return f"{base_machine()}, redis-server {version.removeprefix('v=')}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = StateConfig()
    rng = random.Random(args.seed)
    nrng = np.random.default_rng(args.seed)
    n_full = full_events(config)
    print(f"building {args.users} full users ({n_full} events each)...", file=sys.stderr)
    users = [sequence(f"user-{i}", n_full, rng, config) for i in range(args.users)]
    small = sequence("user-small", 10, rng, config)
    keys = RedisKeys("bench")
    with start_redis() as server, redis.Redis(port=server.port) as client:
        publisher = RedisPublisher(client, keys)
        store = SequenceStore(client, keys, config)
        publisher.publish([update(small, 1, nrng), update(users[0], 1, nrng)])
        full_bytes = client.memory_usage(keys.user(users[0].user_id), samples=0)
        small_bytes = client.memory_usage(keys.user(small.user_id), samples=0)
        client.config_set("hash-max-listpack-value", LISTPACK_VALUE)  # deploy/'s setting
        publisher.publish([update(small, 2, nrng)])
        small_listpack = client.memory_usage(keys.user(small.user_id), samples=0)
        client.config_set("hash-max-listpack-value", 64)  # Redis' default again
        payload = sum(len(v) for v in client.hgetall(keys.user(users[0].user_id)).values())
        heap = heap_per_user([u.to_bytes() for u in users[: args.cached]], config)

        batches = [users[i : i + args.batch] for i in range(0, len(users), args.batch)]
        publish_rates, load_rates, reference_rates = [], [], []
        for repeat in range(args.repeats):
            updates = [[update(u, 2 + repeat, nrng) for u in batch] for batch in batches]
            start = time.perf_counter()
            for batch in updates:
                if not all(publisher.publish(batch)):
                    raise SystemExit("a publish was refused: the benchmark's versions are wrong")
            publish_rates.append(len(users) / (time.perf_counter() - start))
            start = time.perf_counter()
            for batch in batches:
                loaded = store.load_many([u.user_id for u in batch])
                if len(loaded) != len(batch):
                    raise SystemExit("a stored user was not loaded")
            load_rates.append(len(users) / (time.perf_counter() - start))
            reference_rates.append(redis_benchmark_set(server.port, payload, len(users) * 4, args.batch))
    publish, load, reference = (float(np.median(r)) for r in (publish_rates, load_rates, reference_rates))
    print(f"\n{machine()}; `{' '.join(['benchmarks/bench_state.py', *(argv or sys.argv[1:])])}`\n")
    print("| measure | value | target |\n|---|---:|---:|")
    full = f"full user in Redis (`MEMORY USAGE`; {len(users[0])} events, {n_full} applied)"
    print(f"| {full} | {full_bytes / 1024:.1f} KB | ≤ 16 KB |")
    print(f"| user with 10 events in Redis | {small_bytes / 1024:.1f} KB | ≤ 3 KB |")
    listpack = f"the same, `hash-max-listpack-value {LISTPACK_VALUE}` (deploy/)"
    print(f"| {listpack} | {small_listpack / 1024:.1f} KB | ≤ 3 KB |")
    print(f"| full user cached in a worker (Python heap) | {heap / 1024:.1f} KB | ≤ 24 KB |")
    print(f"| the cache's estimate of it (`approx_bytes`) | {users[0].approx_bytes() / 1024:.1f} KB | |")
    print(f"| publish, full users, batches of {args.batch} | {publish:,.0f} users/s | |")
    print(f"| `redis-benchmark -t set -d {payload} -c 1 -P {args.batch}` | {reference:,.0f} SET/s | |")
    print(f"| publish ÷ redis-benchmark | {publish / reference:.2f} | ≥ 0.50 |")
    print(f"| cold loads, full users, batches of {args.batch} | {load:,.0f} users/s | ≥ 20,000 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
