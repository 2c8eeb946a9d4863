"""Redis key names: the only module that knows how keys are spelled."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RedisKeys"]


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key formats under one ``prefix`` (tests give each run its own prefix)."""

    prefix: str = "unistate"

    def __post_init__(self) -> None:
        if not self.prefix:
            raise ValueError("prefix must not be empty")

    def user(self, user_id: str) -> str:
        """The hash holding one user's vectors, metadata and sequence state."""
        return f"{self.prefix}:user:{user_id}"

    def quarantine(self, user_id: str) -> str:
        """Where a user's undecodable stored state is kept for inspection (never read back)."""
        return f"{self.prefix}:quarantine:{user_id}"

    def user_pattern(self) -> str:
        """A ``SCAN MATCH`` pattern covering every user key under this prefix."""
        return f"{self.prefix}:user:*"

    def user_id(self, key: bytes | str) -> str | None:
        """The user id of a user key (``user`` reversed); ``None`` for any other key."""
        try:
            text = key.decode("utf-8") if isinstance(key, bytes) else key
        except UnicodeDecodeError:
            return None
        head = f"{self.prefix}:user:"
        return text[len(head):] if text.startswith(head) and len(text) > len(head) else None
