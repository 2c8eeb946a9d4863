"""The state package's exception tree and the translation of Redis errors at its boundary.

::

    StateError                      also: any other Redis error (script, auth, ...)
    ├── StoreUnavailableError       Redis unreachable or timed out (transient: retry)
    ├── StateFormatError            stored bytes could not be decoded
    └── InvalidInputError           (also ValueError) a caller passed what the domain cannot hold
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.exceptions

__all__ = [
    "InvalidInputError",
    "StateError",
    "StateFormatError",
    "StoreUnavailableError",
    "translate_redis_errors",
]


class StateError(Exception):
    """Root of every error raised by the ``state`` package."""


class StoreUnavailableError(StateError):
    """Redis could not be reached or did not answer in time (transient: retry with backoff)."""


class StateFormatError(StateError):
    """Stored bytes (a sequence state, a vector, a metadata field) could not be decoded."""


class InvalidInputError(StateError, ValueError):
    """A caller passed what the domain cannot hold (unknown scenario, wrong user, bad shape)."""


@contextmanager
def translate_redis_errors(operation: str) -> Iterator[None]:
    """Connection/timeout errors become ``StoreUnavailableError``; other redis errors (a refused
    password included: retrying cannot help) ``StateError``."""
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:  # a ConnectionError, but retrying cannot help
        raise StateError(f"redis refused authentication during {operation}: {exc}") from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreUnavailableError(f"redis unavailable during {operation}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise StateError(f"redis error during {operation}: {exc}") from exc
