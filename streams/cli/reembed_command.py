"""``unistate reembed``: recompute every stored user's vectors with the current model, from the state
in Redis, beside live workers; rate limited, resumable from a checkpoint, with a summary."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from state.scan import Cursors
from streams.checkpoint import Checkpoint
from streams.cli.bulk_session import bulk_options, bulk_session, positive_int, stop_on_signals
from streams.cli.exit_codes import ExitCode
from streams.cli.stream_commands import common_options
from streams.errors import ConfigurationError
from streams.reembed import ReembedCounts, Reembedder

__all__ = ["format_summary", "register"]

logger = logging.getLogger(__name__)


def _start(args: argparse.Namespace, prefix: str, model_version: str) -> tuple[Cursors | None, ReembedCounts]:
    """Where the walk starts: the checkpoint's cursors and counts on ``--resume``, else the beginning."""
    if not args.resume:
        return None, ReembedCounts()
    if not args.checkpoint.exists():
        logger.info("no checkpoint at %s: starting from the beginning", args.checkpoint)
        return None, ReembedCounts()
    saved = Checkpoint.load(args.checkpoint)
    if saved.key_prefix != prefix:
        raise ConfigurationError(f"checkpoint {args.checkpoint} is of key prefix {saved.key_prefix!r}, "
                                         f"not {prefix!r}")
    if saved.model_version != model_version:
        logger.warning("checkpoint was written for model_version=%s, the model is now %s: continuing the walk "
                       "(users are compared with the current model)", saved.model_version, model_version)
    return saved.cursors, ReembedCounts.from_dict(saved.counts)


def format_summary(counts: ReembedCounts, left: Cursors, model_version: str, dry_run: bool, elapsed_s: float,
                   checkpoint: Path | None, written_this_run: int = 0) -> str:
    """The end-of-run report (counts of the whole walk; the rate of this run)."""
    if dry_run:
        state = "walk complete" if not left else "walk stopped early"
        return (f"dry run ({state}, nothing written): {counts.scanned} users scanned, {counts.reembedded} would "
                f"be re-embedded to model_version={model_version}, {counts.already_current} already current")
    if not left:
        state = "complete"
    elif checkpoint is not None:
        state = f"stopped: continue with --resume --checkpoint {checkpoint}"
    else:
        state = "stopped (no --checkpoint: a new run walks again, skipping users already current)"
    rate = f", {written_this_run / elapsed_s:.0f} users/s re-embedded" if written_this_run and elapsed_s > 0 else ""
    return "\n".join([
        f"re-embed to model_version={model_version}: {state}",
        f"scanned {counts.scanned}, re-embedded {counts.reembedded}, already current {counts.already_current}, "
        f"no state {counts.no_state} (quarantined {counts.quarantined}), errors {counts.errors}",
        f"refused then retried {counts.refused_then_retried}, notifications resent {counts.notifications_resent}",
        f"elapsed {elapsed_s:.1f} s{rate}" + (" (counts include earlier runs of the checkpoint)" if checkpoint else ""),
    ])


def _cmd_reembed(args: argparse.Namespace) -> int:
    if args.resume and args.checkpoint is None:
        print("unistate: --resume needs --checkpoint FILE", file=sys.stderr)
        return ExitCode.CONFIG
    started = time.monotonic()
    with stop_on_signals() as stop, bulk_session(args, stop, kafka=not args.dry_run) as session:
        cursors, counts = _start(args, session.keys.prefix, session.model_version)
        before = counts.reembedded
        if cursors == {}:
            print(format_summary(counts, {}, session.model_version, args.dry_run, 0.0, args.checkpoint))
            return ExitCode.OK
        reembedder = Reembedder(
            session.client, session.keys, session.model_version, bulk=session.bulk, state_config=session.state_config,
            batch_users=args.batch_size, force=args.force, checkpoint_path=None if args.dry_run else args.checkpoint,
            retry=session.retry, stop=stop)
        total = None if args.no_count else reembedder.scanner.count_users()
        with tqdm(total=total, initial=counts.scanned, unit="user", desc="reembed", disable=args.no_progress) as bar:
            def on_page(now: ReembedCounts) -> None:
                bar.update(now.scanned - bar.n)
                bar.set_postfix(reembedded=now.reembedded, current=now.already_current, refresh=False)

            counts, left = reembedder.walk(cursors, counts, dry_run=args.dry_run, limit=args.limit, on_page=on_page)
    print(format_summary(counts, left, session.model_version, args.dry_run, time.monotonic() - started,
                         None if args.dry_run else args.checkpoint, counts.reembedded - before))
    return ExitCode.INTERRUPTED if stop.is_set() else ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``unistate reembed`` to the command tree."""
    p = subparsers.add_parser(
        "reembed", parents=[common_options(), bulk_options()],
        help="recompute every stored user's vectors with the current model",
        description="Walk every user key (SCAN; every primary of a cluster), skip users whose vectors come "
        "from the current model (mv), recompute the others from their stored sequence, publish them with the "
        "version check (safe beside live workers: a refused write reloads the user) and notify the update topic. "
        "See docs/model-upgrade.md.")
    p.add_argument("--force", action="store_true", help="re-embed users already at the current model version too")
    p.add_argument("--checkpoint", type=Path, metavar="FILE",
                   help="save the SCAN cursor and counts here after each batch (JSON, replaced atomically)")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint FILE (from the beginning "
                   "when FILE does not exist yet)")
    p.add_argument("--limit", type=positive_int, metavar="USERS",
                   help="stop after about this many users scanned (a canary; continue with --resume)")
    p.add_argument("--dry-run", action="store_true",
                   help="count the users that would be re-embedded; write nothing, no Kafka, no checkpoint")
    p.add_argument("--no-count", action="store_true",
                   help="skip the first walk that counts the users for the progress bar's total")
    p.set_defaults(handler=_cmd_reembed)
