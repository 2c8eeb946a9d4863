"""``unistate backfill FILE``: build users' state and vectors in Redis straight from an event file
(checked as the worker decodes it), merged with the stored state, then notify; no Kafka input."""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from state.records import Behavior
from streams.backfill import BackfillCounts, Backfiller
from streams.cli.bulk_session import bulk_options, bulk_session, stop_on_signals
from streams.cli.event_records import file_records
from streams.cli.exit_codes import ExitCode
from streams.cli.replay import Checked, check_records
from streams.cli.stream_commands import common_options
from streams.events import EventLimits
from streams.settings import WorkerSettings

__all__ = ["format_summary", "register"]


def _counts(counts: Counter[str]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "none"


def format_summary(checked: Checked, skipped: int, counts: BackfillCounts, elapsed_s: float, stopped: bool) -> str:
    """The end-of-run report."""
    lines = [
        f"backfill{' stopped early' if stopped else ''}: {checked.read} records read, {len(checked.events)} valid, "
        f"{sum(checked.rejected.values())} rejected ({_counts(checked.rejected)})"
        + (f", {skipped} at or after --until (left to the workers)" if skipped else ""),
        *(f"  {reason}, first: {example}" for reason, example in sorted(checked.examples.items())),
        f"events: added {counts.added}, duplicates {counts.duplicates}, stale {counts.stale}, "
        f"too late {counts.too_late}, conflicts {counts.conflicts}",
        f"users: {counts.users}, written {counts.users_written}, refused then retried {counts.refused_then_retried}, "
        f"quarantined {counts.quarantined}, errors {counts.errors}, notifications resent "
        f"{counts.notifications_resent}",
        f"elapsed {elapsed_s:.1f} s",
    ]
    return "\n".join(lines)


def _cmd_backfill(args: argparse.Namespace) -> int:
    started = time.monotonic()
    worker = WorkerSettings()
    checked = check_records(file_records(args.file), EventLimits(worker.max_message_bytes, worker.max_future_skew_ms),
                            int(time.time() * 1000))
    behaviors: list[Behavior] = [e.behavior for e in checked.events
                                 if args.until is None or e.ts_ms < args.until]
    skipped = len(checked.events) - len(behaviors)
    users = len({b.user_id for b in behaviors})
    with stop_on_signals() as stop, bulk_session(args, stop) as session:
        assert session.bulk is not None
        backfiller = Backfiller(session.client, session.keys, session.bulk, state_config=session.state_config,
                                batch_users=args.batch_size, stop=stop)
        with tqdm(total=users, unit="user", desc="backfill", disable=args.no_progress) as bar:
            def on_batch(now: BackfillCounts, batch_users: int) -> None:
                bar.update(batch_users)
                bar.set_postfix(written=now.users_written, refresh=False)

            counts = backfiller.run(behaviors, on_batch)
    print(format_summary(checked, skipped, counts, time.monotonic() - started, stop.is_set()))
    return ExitCode.INTERRUPTED if stop.is_set() else ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``unistate backfill`` to the command tree."""
    p = subparsers.add_parser(
        "backfill", parents=[common_options(), bulk_options()],
        help="build users' state and vectors in Redis from an event file (no Kafka input)",
        description="Read events (JSONL, CSV, Parquet or msgpack, the files `unistate replay` reads), check each "
        "one as the worker decodes it, apply each user's events in event-time order to the state stored in Redis "
        "(duplicates are recognised by event id), recompute, publish with the version check and notify the update "
        "topic. Hand over to live workers with `unistate offsets reset --to timestamp:MS`: see docs/model-upgrade.md.")
    p.add_argument("file", type=Path, metavar="FILE", help="events: .jsonl, .csv, .parquet or .msgpack")
    p.add_argument("--until", type=int, metavar="MS", help="only events with ts_ms < MS (the handover time: the "
                   "workers start at MS)")
    p.set_defaults(handler=_cmd_backfill)
