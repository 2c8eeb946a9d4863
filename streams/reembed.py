"""Re-embeds every stored user with the current model, from the state in Redis, resumably and beside
live workers.

Why it is safe while workers run: every write goes through the publisher's version check, which
refuses a version ≤ the stored one. A re-embed loads a user at version ``v`` and writes ``v + 1``
with the same sequence (only the vectors and ``mv`` change). If a worker wrote the user in between
(a new event: ``v + 1`` or more), the re-embed's write is refused and changes nothing; the user is
reloaded (now with the worker's event) and re-embedded again unless the worker's write already
carries the current model, at most ``MAX_REFUSED_ROUNDS`` times. If the re-embed wins, a worker
still caching the user at ``v`` has its next write refused in turn, reloads ``v + 1`` (same events)
and re-applies its batch: no event is lost and versions only grow. Each written version is
notified (``model_version`` set, no scenarios) and marked notified after the broker's
acknowledgement, the worker's order.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TypeVar

import redis

from state.config import StateConfig
from state.keys import RedisKeys
from state.scan import Cursors, UserMeta, UserScanner
from state.sequence import UserSequence
from state.store import SequenceStore
from streams.bulk_publish import BulkPublisher
from streams.checkpoint import Checkpoint
from streams.retry import RetryPolicy

__all__ = ["ReembedCounts", "Reembedder"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class ReembedCounts:
    """Users by outcome; ``reembedded + already_current + no_state + errors`` is ``scanned`` (SCAN
    may return a key twice, so a user may count twice)."""

    scanned: int = 0
    #: Written with the current model (in a dry run: would be).
    reembedded: int = 0
    #: Stored with the current model already (also: a live worker wrote it with it meanwhile).
    already_current: int = 0
    #: Refused at least once because a live worker wrote the user meanwhile, then reloaded.
    refused_then_retried: int = 0
    #: Undecodable stored state moved aside by the loader (counted in ``no_state`` too).
    quarantined: int = 0
    #: Nothing to re-embed from: no stored events (expired, quarantined, or an empty sequence).
    no_state: int = 0
    #: Still refused after the bounded reloads: left as they are.
    errors: int = 0
    #: Already-current users whose last notification was never acknowledged: notified again.
    notifications_resent: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts by name (the checkpoint's ``counts``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, int]) -> ReembedCounts:
        """Counts saved by ``as_dict`` (unknown names ignored, missing ones 0)."""
        return cls(**{f.name: int(data.get(f.name, 0)) for f in fields(cls)})


class Reembedder:
    """Walks the user keys page by page: skips users whose ``mv`` is ``model_version`` (unless
    ``force``), loads the others' sequences, recomputes and publishes them through ``bulk``, then
    acknowledges the page's notifications and saves the checkpoint (when ``checkpoint_path``)."""

    def __init__(
        self, client: redis.Redis | redis.RedisCluster, keys: RedisKeys, model_version: str, *,
        bulk: BulkPublisher | None = None, state_config: StateConfig | None = None, batch_users: int = 256,
        force: bool = False, checkpoint_path: Path | None = None, retry: RetryPolicy | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.model_version = model_version
        self.scanner = UserScanner(client, keys, batch_users)
        self.force = force
        self.checkpoint_path = checkpoint_path
        self._keys = keys
        self._bulk = bulk
        self._batch_users = batch_users
        self._retry = retry or RetryPolicy()
        self._stop = stop or threading.Event()
        self._store = SequenceStore(client, keys, state_config, on_quarantine=self._on_quarantine)
        self._counts = ReembedCounts()

    def walk(
        self, cursors: Cursors | None = None, counts: ReembedCounts | None = None, *, dry_run: bool = False,
        limit: int | None = None, on_page: Callable[[ReembedCounts], None] | None = None,
    ) -> tuple[ReembedCounts, Cursors]:
        """Handle the pages from ``cursors`` (default: the beginning) until the walk ends, ``stop`` is
        set or ``limit`` users were scanned; returns the counts (added to ``counts``) and the cursors
        left (empty: complete). A dry run reads ``mv`` only and writes nothing."""
        if not dry_run and self._bulk is None:
            raise ValueError("a re-embed that writes needs a BulkPublisher")
        self._counts = counts = counts if counts is not None else ReembedCounts()
        left = self.scanner.start() if cursors is None else dict(cursors)
        scanned_before = counts.scanned
        for page in self.scanner.pages(left):
            if dry_run:
                self._count(page.user_ids)
            elif page.user_ids or not page.cursors:  # an empty page moves the cursor only: no save
                self._reembed(page.user_ids)
                self._save(page.cursors)
            left = page.cursors
            if on_page is not None:
                on_page(counts)
            if self._stop.is_set() or (limit is not None and counts.scanned - scanned_before >= limit):
                break
        logger.info("re-embed walk %s model_version=%s cursors_left=%d %s", "counted" if dry_run else "ended",
                    self.model_version, len(left), " ".join(f"{k}={v}" for k, v in counts.as_dict().items()))
        return counts, left

    def _redis(self, operation: str, fn: Callable[[], T]) -> T:
        return self._retry.call(operation, fn, stop=self._stop)

    def _current(self, meta: UserMeta) -> bool:
        return meta.model_version == self.model_version

    def _count(self, user_ids: list[str]) -> None:
        metas = self._redis("metadata", lambda: self.scanner.metadata(user_ids))
        self._counts.scanned += len(metas)
        current = sum(1 for m in metas if self._current(m) and not self.force)
        self._counts.already_current += current
        self._counts.reembedded += len(metas) - current

    def _reembed(self, user_ids: list[str]) -> None:
        assert self._bulk is not None
        counts = self._counts
        metas = self._redis("metadata", lambda: self.scanner.metadata(user_ids))
        counts.scanned += len(metas)
        stale = []
        for meta in metas:
            if not self._current(meta) or self.force:
                stale.append(meta.user_id)
                continue
            counts.already_current += 1
            if meta.unnotified is not None:  # written, then the notification was lost: send it now
                self._bulk.notifier.resend(meta.unnotified)
                counts.notifications_resent += 1
        for start in range(0, len(stale), self._batch_users):
            batch = stale[start:start + self._batch_users]
            pending = self._bulk.redis_call("load", lambda batch=batch: self._load(batch, check_current=False))
            outcome = self._bulk.publish(pending, lambda ids: self._load(ids, check_current=True))
            counts.reembedded += outcome.written
            counts.refused_then_retried += len(outcome.refused)
            counts.errors += len(outcome.failed)
        self._bulk.notifier.acknowledge()

    def _load(self, user_ids: list[str], check_current: bool) -> dict[str, UserSequence]:
        """The users' stored sequences that need a re-embed. ``check_current``: after a refusal,
        users a live worker already wrote with the current model are done."""
        current: set[str] = set()
        if check_current:
            current = {m.user_id for m in self.scanner.metadata(user_ids) if self._current(m)}
        loaded = self._store.load_many([u for u in user_ids if u not in current])
        self._counts.already_current += len(current)
        pending = {}
        for user_id in user_ids:
            seq = loaded.get(user_id)
            if user_id in current:
                continue
            if seq is None or len(seq) == 0:
                self._counts.no_state += 1
                logger.info("nothing to re-embed from user_id=%s", user_id)
            else:
                pending[user_id] = seq
        return pending

    def _on_quarantine(self, user_id: str) -> None:
        self._counts.quarantined += 1

    def _save(self, cursors: Cursors) -> None:
        if self.checkpoint_path is None:
            return
        Checkpoint(self._keys.prefix, self.model_version, cursors, self._counts.as_dict(),
                   complete=not cursors).save(self.checkpoint_path)
