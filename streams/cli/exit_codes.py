"""The ``unistate`` command's exit statuses (one definition for every command)."""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    """What a ``unistate`` command returns to the shell."""

    OK = 0
    ERROR = 1  # the command ran and failed (broker or Redis trouble, a failed check, a model error)
    CONFIG = 2  # bad settings or arguments; nothing was started
    INTERRUPTED = 130  # Ctrl-C
