"""The ``unistate`` entry point: the command tree, logging set-up, and errors turned into exit codes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import PackageNotFoundError, version

from pydantic import ValidationError
from pydantic_settings import SettingsError

from encoders.errors import EncoderError
from state.errors import StateError
from streams.cli import (
    admin_commands,
    audience_command,
    backfill_command,
    demo,
    model_commands,
    reembed_command,
    replay,
    stream_commands,
)
from streams.cli.exit_codes import ExitCode
from streams.errors import ConfigurationError, StreamsError
from streams.logs import configure_logging
from streams.settings import WorkerSettings, unknown_variables

__all__ = ["build_parser", "main"]


def _version() -> str:
    try:
        return version("unistate")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree: stream, admin, replay, reembed, backfill, audience, model and demo commands, each
    registered by its module."""
    parser = argparse.ArgumentParser(prog="unistate", description="Streaming real-time user state: "
                                     "Kafka events → per-user sequences → interest embeddings → Redis.")
    parser.add_argument("--version", action="version", version=f"unistate {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (stream_commands, admin_commands, replay, reembed_command, backfill_command, audience_command,
                   model_commands, demo):
        module.register(sub)
    return parser


def _run(handler: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return handler(args)
    except (ConfigurationError, ValidationError) as exc:
        print(f"unistate: configuration error: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    except SettingsError as exc:  # e.g. a UNISTATE_* variable that is not valid JSON
        print(f"unistate: configuration error: {exc} (dicts and lists are JSON)", file=sys.stderr)
        return ExitCode.CONFIG
    except (StreamsError, StateError, EncoderError) as exc:
        print(f"unistate: error: {exc}", file=sys.stderr)
        return ExitCode.ERROR
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``unistate`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    unknown = unknown_variables()
    if unknown:
        print(f"unistate: unknown UNISTATE_* environment variables: {', '.join(unknown)}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        defaults = WorkerSettings()
    except (ValidationError, SettingsError) as exc:
        print(f"unistate: bad UNISTATE_WORKER_* settings: {exc}", file=sys.stderr)
        return ExitCode.CONFIG
    configure_logging(getattr(args, "log_level", None) or defaults.log_level,
                      getattr(args, "log_format", None) or defaults.log_format)
    return int(_run(args.handler, args))


if __name__ == "__main__":
    sys.exit(main())
