"""Runs a worker on a background thread of the current process (demo, benchmarks, tests)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from streams.errors import StreamsError
from streams.worker import Worker

__all__ = ["running"]


@contextmanager
def running(worker: Worker, join_s: float = 30.0) -> Iterator[list[BaseException]]:
    """Run ``worker`` on a thread; on exit stop it, join it and re-raise what it raised.

    Yields the (live) list of exceptions the worker raised, so a caller waiting on a condition
    can stop early when the worker died.
    """
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="unistate-worker", daemon=True)
    thread.start()
    try:
        yield errors
    finally:
        worker.stop()
        thread.join(join_s)
    if thread.is_alive():
        raise StreamsError(f"worker did not stop within {join_s}s")
    if errors:
        raise errors[0]
