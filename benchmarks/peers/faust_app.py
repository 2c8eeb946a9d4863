"""The faust-streaming contestant: one agent per input topic running ``merge_job.MergeJob`` on each event.

A plain ``faust.App`` (aiokafka underneath) started in-process with ``app.start()``: raw key and
value serializers (the job decodes the bytes itself, with the worker's msgspec decoder), state in a
plain in-memory dict of ``UserSequence`` (no Faust table, no changelog topic), ``memory://`` store,
no web server, no leader topic, offsets acked per event as Faust does and committed on its
interval. Faust hard-codes aiokafka's ``fetch_max_wait_ms=1500``; Tansu holds every fetch that
long, so the consumer is given ``--fetch-wait-max-ms`` like the other contestants (the only
change to stock Faust; ``--stock-fetch-wait`` leaves it at 1500).

    python benchmarks/peers/faust_app.py --bootstrap HOST:PORT --topic-prefix P. --events N --group G
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from collections.abc import AsyncIterator

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from merge_job import MergeJob, Meter, base_parser, input_topics, require, result_line

VERSION = f"faust-streaming {faust.__version__}"


def shorten_fetch_wait(wait_ms: int) -> None:
    """Make Faust's worker consumer wait at most ``wait_ms`` per fetch (Faust passes 1500 to aiokafka)."""
    create = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer

    def create_with_wait(self: faust_aiokafka.AIOKafkaConsumerThread, transport: object) -> object:
        consumer = create(self, transport)
        consumer._fetch_max_wait_ms = wait_ms  # read by the fetcher, which is built on start()
        return consumer

    faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer = create_with_wait


def register(app: faust.App, topic_name: str, job: MergeJob, meter: Meter, done: asyncio.Event, take: int) -> None:
    """An agent over ``topic_name`` feeding each event's raw message to the job: one event at a time
    (``stream.events()``), or with ``take`` > 0 in lists of up to ``take`` (``stream.take_events``)."""
    topic = app.topic(topic_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def handle(event: faust.EventT) -> None:
        message = event.message
        meter.first()
        job.handle(message.topic, message.partition, message.offset, message.key, message.value)
        if meter.count():
            done.set()

    async def merge(stream: faust.StreamT) -> AsyncIterator[None]:
        async for event in stream.events():
            handle(event)

    async def merge_lists(stream: faust.StreamT) -> AsyncIterator[None]:
        async for events in stream.take_events(take, within=0.05):
            for event in events:
                handle(event)

    app.agent(topic, name=f"merge-{job.scenario_of[topic_name]}")(merge_lists if take else merge)


async def run(args: argparse.Namespace, job: MergeJob, meter: Meter, datadir: str) -> None:
    """Start the app, wait until the N-th event was merged, stop it."""
    app = faust.App(
        args.group, broker=f"kafka://{args.bootstrap}", web_enabled=False, autodiscover=False, datadir=datadir,
        store="memory://", topic_replication_factor=1, topic_disable_leader=True,
        consumer_auto_offset_reset="earliest", broker_session_timeout=6.0, broker_heartbeat_interval=0.5,
    )
    done = asyncio.Event()
    for topic_name in job.scenario_of:
        register(app, topic_name, job, meter, done, args.take)
    await app.start()
    try:
        await done.wait()
    finally:
        await app.stop()


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--stock-fetch-wait", action="store_true",
                        help="leave Faust's hard-coded fetch_max_wait_ms=1500 (Tansu then holds each fetch 1.5 s)")
    parser.add_argument("--take", type=int, default=0,
                        help="hand events to the job in lists of up to TAKE (stream.take_events, 50 ms); "
                             "default 0: one at a time (stream.events())")
    args = parser.parse_args(argv)
    if args.probe:
        print(f'{{"version": "{VERSION}"}}')
        return 0
    require(args, "bootstrap", "topic_prefix", "events", "group")
    logging.basicConfig(level=logging.ERROR)
    if not args.stock_fetch_wait:
        shorten_fetch_wait(args.fetch_wait_max_ms)
    job, meter = MergeJob(input_topics(args.topic_prefix)), Meter(args.events)
    with tempfile.TemporaryDirectory(prefix="faust-peer-") as datadir:
        asyncio.run(run(args, job, meter, datadir))
    fetch_wait_ms = 1500 if args.stock_fetch_wait else args.fetch_wait_max_ms
    print(result_line("faust", VERSION, meter, job.outcomes(), fetch_wait_max_ms=fetch_wait_ms, take=args.take))
    return 0 if meter.done_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
