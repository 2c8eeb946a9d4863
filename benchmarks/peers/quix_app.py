"""The Quix Streams contestant: one StreamingDataFrame per input topic running ``merge_job.MergeJob`` per message.

A plain ``quixstreams.Application`` (confluent-kafka underneath): byte deserializers (the job
decodes the bytes itself, with the worker's msgspec decoder), ``sdf.update`` with the message's
topic, partition and offset from ``message_context()``, state in a plain in-memory dict of
``UserSequence`` (no Quix state store, no changelog topics), at-least-once with Quix's default
commit interval, the same librdkafka group and fetch settings as the other contestants.
Quix reads each topic's ``retention.ms`` when it starts: the driver creates the topics with it
set (Tansu has no default to report).

Quix Streams pins confluent-kafka < 2.13 and pydantic < 2.14, so it lives in its own venv; this
file is run with that interpreter and the repository on ``PYTHONPATH`` (it imports the job's
decoder and sequences from ``streams`` and ``state``: the venv needs msgspec, msgpack, numpy
and redis besides quixstreams).

    /path/to/quix-venv/bin/python benchmarks/peers/quix_app.py --bootstrap HOST:PORT \\
        --topic-prefix P. --events N --group G
"""

from __future__ import annotations

import logging
import sys
import tempfile

import quixstreams
from merge_job import ISOLATION, MergeJob, Meter, base_parser, input_topics, require, result_line
from quixstreams import Application, message_context

VERSION = f"quixstreams {quixstreams.__version__}"


def main(argv: list[str] | None = None) -> int:
    args = base_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    if args.probe:
        print(f'{{"version": "{VERSION}"}}')
        return 0
    require(args, "bootstrap", "topic_prefix", "events", "group")
    logging.basicConfig(level=logging.ERROR)
    job, meter = MergeJob(input_topics(args.topic_prefix)), Meter(args.events)
    app = Application(
        broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                               "fetch.wait.max.ms": args.fetch_wait_max_ms, "isolation.level": ISOLATION},
        use_changelog_topics=False, loglevel="ERROR",
        state_dir=tempfile.mkdtemp(prefix="unistate-quix-state-"),  # its default "state" is our package
    )

    def merge(value: bytes, key: bytes, timestamp: int, headers: object) -> None:
        context = message_context()
        meter.first()
        job.handle(context.topic, context.partition, context.offset, key, value)
        if meter.count():
            app.stop()

    for topic_name in job.scenario_of:
        topic = app.topic(topic_name, key_deserializer="bytes", value_deserializer="bytes")
        app.dataframe(topic).update(merge, metadata=True)
    app.run()
    print(result_line("quix", VERSION, meter, job.outcomes()))
    return 0 if meter.done_at is not None else 1


if __name__ == "__main__":
    sys.exit(main())
