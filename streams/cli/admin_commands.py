"""The operator commands: ``topics create|list|describe|delete`` and ``offsets show|reset``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from confluent_kafka.admin import AdminClient

from streams.cli.exit_codes import ExitCode
from streams.cli.stream_commands import common_options, kafka_settings
from streams.offsets import OffsetTarget, PartitionOffsets
from streams.settings import KafkaSettings
from streams.topics import TopicNames, create_topics

__all__ = ["format_offsets", "register"]


def _admin(args: argparse.Namespace) -> tuple[KafkaSettings, AdminClient]:
    kafka = kafka_settings(args)
    return kafka, AdminClient(kafka.admin_config())


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def format_offsets(offsets: Sequence[PartitionOffsets], new: Sequence[int] | None = None) -> str:
    """A table of a group's partitions: committed, end and lag, and the reset's new offset if given."""
    header = ["TOPIC", "PARTITION", "COMMITTED", "END", "LAG"] + (["NEW"] if new is not None else [])
    rows = [[o.topic, o.partition, o.committed, o.end, o.lag] + ([new[i]] if new is not None else [])
            for i, o in enumerate(offsets)]
    total = sum(o.lag for o in offsets if o.lag is not None)
    return f"{_table(header, rows)}\ntotal lag: {total} (partitions without a commit: lag '-')"


def _cmd_topics_create(args: argparse.Namespace) -> int:
    kafka, admin = _admin(args)
    outcome = create_topics(admin, TopicNames.from_prefix(kafka.topic_prefix), args.partitions,
                            args.replication_factor, kafka.admin_timeout_s)
    for topic, state in outcome.items():
        print(f"{topic}: {state} (partitions={args.partitions})")
    return ExitCode.OK


def _cmd_topics_list(args: argparse.Namespace) -> int:
    from streams.topic_admin import list_topics

    kafka, admin = _admin(args)
    topics = list_topics(admin, kafka.admin_timeout_s)
    for name, partitions in topics.items():
        if args.all or name.startswith(kafka.topic_prefix):
            print(f"{name}  partitions={partitions}")
    missing = [t for t in TopicNames.from_prefix(kafka.topic_prefix).all if t not in topics]
    if missing:
        print(f"missing unistate topics: {' '.join(missing)} (create them with `unistate topics create`)")
    return ExitCode.OK


def _cmd_topics_describe(args: argparse.Namespace) -> int:
    from streams.topic_admin import describe_topics

    kafka, admin = _admin(args)
    names = args.topics or TopicNames.from_prefix(kafka.topic_prefix).all
    for info in describe_topics(admin, names, kafka.admin_timeout_s):
        configs = " ".join(f"{k}={v}" for k, v in info.configs.items()) or "(broker defaults)"
        print(f"{info.name}  partitions={len(info.partitions)}  configs: {configs}")
        rows = [[p.partition, p.leader, ",".join(map(str, p.replicas)), ",".join(map(str, p.isr)), p.earliest, p.end]
                for p in info.partitions]
        print(_table(["PARTITION", "LEADER", "REPLICAS", "ISR", "EARLIEST", "END"], rows), end="\n\n")
    return ExitCode.OK


def _cmd_topics_delete(args: argparse.Namespace) -> int:
    from streams.topic_admin import delete_topics

    kafka, admin = _admin(args)
    names = args.topics or TopicNames.from_prefix(kafka.topic_prefix).all
    if not args.yes:
        print(f"unistate: would delete {' '.join(names)} and every message in them; pass --yes to delete",
              file=sys.stderr)
        return ExitCode.CONFIG
    for topic, state in delete_topics(admin, names, kafka.admin_timeout_s).items():
        print(f"{topic}: {state}")
    return ExitCode.OK


def _cmd_offsets_show(args: argparse.Namespace) -> int:
    from streams.offsets import group_offsets

    kafka, admin = _admin(args)
    topics = args.topics or TopicNames.from_prefix(kafka.topic_prefix).inputs
    offsets = group_offsets(admin, args.group, topics, kafka.admin_timeout_s)
    print(f"group {args.group}\n{format_offsets(offsets)}")
    return ExitCode.OK


def _cmd_offsets_reset(args: argparse.Namespace) -> int:
    from streams.offsets import apply_reset, check_inactive, plan_reset

    kafka, admin = _admin(args)
    topics = args.topics or TopicNames.from_prefix(kafka.topic_prefix).inputs
    check_inactive(admin, args.group, kafka.admin_timeout_s)
    plan = plan_reset(admin, args.group, topics, args.to, kafka.admin_timeout_s)
    print(f"group {args.group}: reset to {args.to}" + (" (dry run: nothing committed)" if args.dry_run else ""))
    print(format_offsets([c for c, _ in plan], [new for _, new in plan]))
    if not args.dry_run:
        apply_reset(admin, args.group, plan, kafka.admin_timeout_s)
        print(f"committed {len(plan)} offsets")
    return ExitCode.OK


def _target(text: str) -> OffsetTarget:
    try:
        return OffsetTarget.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _add_topics(sub: Any, common: argparse.ArgumentParser) -> None:
    topics = sub.add_parser("topics", help="manage unistate's Kafka topics",
                            description="Create, list, describe and delete the input, dead-letter and update topics.")
    topics_sub = topics.add_subparsers(dest="topics_command", metavar="COMMAND", required=True)
    p = topics_sub.add_parser("create", parents=[common], help="create every topic (idempotent)",
                              description="Create the co-partitioned input topics, the DLQ and the "
                              "update topic. Existing topics with the same partition count are fine.")
    p.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    p.add_argument("--replication-factor", type=int, default=1, help="replication factor (default 1)")
    p.set_defaults(handler=_cmd_topics_create)
    p = topics_sub.add_parser("list", parents=[common], help="list topics and their partition counts",
                              description="The topics under the topic prefix (--all: every topic) and "
                              "any unistate topic that is missing.")
    p.add_argument("--all", action="store_true", help="every topic, not only those under the prefix")
    p.set_defaults(handler=_cmd_topics_list)
    p = topics_sub.add_parser("describe", parents=[common], help="partitions, replicas, offsets and settings",
                              description="Per partition: leader, replicas, in-sync replicas, earliest and "
                              "end offsets; per topic: settings other than the broker's defaults.")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="topics (default: every unistate topic)")
    p.set_defaults(handler=_cmd_topics_describe)
    p = topics_sub.add_parser("delete", parents=[common], help="delete topics and their messages (needs --yes)",
                              description="Delete the given topics, or every unistate topic of the prefix. "
                              "Without --yes, only say what would be deleted (exit 2).")
    p.add_argument("topics", nargs="*", metavar="TOPIC", help="topics (default: every unistate topic)")
    p.add_argument("--yes", action="store_true", help="really delete")
    p.set_defaults(handler=_cmd_topics_delete)


def _add_offsets(sub: Any, common: argparse.ArgumentParser) -> None:
    offsets = sub.add_parser("offsets", help="show or reset a consumer group's offsets",
                             description="A consumer group's committed offsets, end offsets and lag; resets "
                             "to the earliest, latest or first-after-a-time offset while the group is empty.")
    offsets_sub = offsets.add_subparsers(dest="offsets_command", metavar="COMMAND", required=True)
    for name, help_text in (("show", "committed offset, end offset and lag per partition"),
                            ("reset", "move the group's committed offsets (refused while it has members)")):
        p = offsets_sub.add_parser(name, parents=[common], help=help_text, description=help_text[0].upper()
                                   + help_text[1:] + "; topics default to the input topics of the prefix.")
        p.add_argument("--group", required=True, help="consumer group id (the workers': UNISTATE_KAFKA_GROUP_ID)")
        p.add_argument("--topics", nargs="+", metavar="TOPIC", help="topics (default: the input topics)")
        if name == "reset":
            p.add_argument("--to", type=_target, required=True, metavar="earliest|latest|timestamp:MS",
                           help="earliest, latest, or the first message at or after MS (ms since the epoch; "
                           "the end when there is none)")
            p.add_argument("--dry-run", action="store_true", help="show the plan; commit nothing")
        p.set_defaults(handler=_cmd_offsets_reset if name == "reset" else _cmd_offsets_show)


def register(subparsers: Any) -> None:
    """Add ``topics`` and ``offsets`` to the ``unistate`` command tree."""
    common = common_options()
    _add_topics(subparsers, common)
    _add_offsets(subparsers, common)
