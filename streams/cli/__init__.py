"""The ``unistate`` command line: the parser and exit codes once, then stream, model and demo
commands in their own modules."""

from streams.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
