"""Recomputes changed users' embeddings in bounded micro-batches: mix, encode, build updates."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from encoders.features import SequenceInput
from state.mixing import MixingPolicy, SelectorProtocol
from state.publisher import UserUpdate
from state.records import ACTIONS, SCENARIOS
from state.sequence import UserSequence
from streams.errors import ConfigurationError

__all__ = ["EncoderProtocol", "Recomputer", "check_selector", "check_vocabulary", "sequence_input"]

logger = logging.getLogger(__name__)

_ACTION_INDEX = {name: i for i, name in enumerate(ACTIONS)}


class EncoderProtocol(Protocol):
    """What the worker needs of ``encoders.serving.InterestEncoder``."""

    @property
    def model_version(self) -> str: ...

    @property
    def scenarios(self) -> Sequence[str]: ...

    @property
    def actions(self) -> Sequence[str]: ...

    def encode(self, sequences: list[SequenceInput]) -> np.ndarray: ...


def check_vocabulary(encoder: EncoderProtocol) -> None:
    """Raise ``ConfigurationError`` unless the model's scenarios and actions are ``state.records``'."""
    if tuple(encoder.scenarios) != SCENARIOS or tuple(encoder.actions) != ACTIONS:
        raise ConfigurationError(
            "model vocabulary differs from state.records: "
            f"model scenarios={list(encoder.scenarios)} actions={list(encoder.actions)}; "
            f"expected scenarios={list(SCENARIOS)} actions={list(ACTIONS)}"
        )


def check_selector(encoder: EncoderProtocol, policy: MixingPolicy) -> None:
    """Raise ``ConfigurationError`` when the model was trained with another mixing policy.

    Artifacts that recorded no policy (older exports) are served with a warning.
    """
    manifest = getattr(encoder, "manifest", None)
    trained = getattr(manifest, "extra", {}).get("selector_config") if manifest is not None else None
    serving = policy.describe()
    if trained is None:
        logger.warning("model records no mixing policy: cannot check it matches the worker's")
        return
    if trained != serving:
        raise ConfigurationError(
            f"the model was trained with mixing policy {trained} but the worker is configured "
            f"with {serving}; set UNISTATE_STATE_* to the trained policy or retrain"
        )


def sequence_input(seq: UserSequence, selector: SelectorProtocol) -> SequenceInput:
    """The model input of one user: the selector's events, ``now_ms`` = the user's watermark.

    Using the event-time watermark (not the wall clock) makes a recompute deterministic, so a
    direct model call on the stored sequence reproduces what the worker published.
    """
    behaviors, scenario_idx, ts_ms = seq.arrays()
    picked = selector.select(scenario_idx, ts_ms, seq.watermark_ms)
    chosen = [behaviors[i] for i in picked.tolist()]
    return SequenceInput(
        item_ids=[b.item_id for b in chosen],
        texts=[b.text for b in chosen],
        scenario_idx=scenario_idx[picked],
        action_idx=np.fromiter((_ACTION_INDEX[b.action] for b in chosen), np.int64, len(chosen)),
        ts_ms=ts_ms[picked],
        now_ms=int(seq.watermark_ms),
    )


class Recomputer:
    """Encodes users in chunks of ``max_batch_users`` and turns the vectors into ``UserUpdate``s.

    ``updates`` bumps each sequence's version, so call it once per change, right before publishing.
    """

    def __init__(
        self, encoder: EncoderProtocol, selector: SelectorProtocol, max_batch_users: int = 64
    ) -> None:
        if max_batch_users < 1:
            raise ValueError(f"max_batch_users must be >= 1, got {max_batch_users}")
        self.encoder = encoder
        self.selector = selector
        self.max_batch_users = max_batch_users

    def chunks(self, sequences: Sequence[UserSequence]) -> list[list[UserSequence]]:
        """``sequences`` split into micro-batches of at most ``max_batch_users``."""
        n = self.max_batch_users
        return [list(sequences[i : i + n]) for i in range(0, len(sequences), n)]

    def updates(self, sequences: Sequence[UserSequence]) -> list[UserUpdate]:
        """Encode one micro-batch and build its updates (raising each user's version)."""
        if not sequences:
            return []
        inputs = [sequence_input(seq, self.selector) for seq in sequences]
        vectors = np.asarray(self.encoder.encode(inputs), dtype=np.float32)
        computed_at_ms = int(time.time() * 1000)
        scenarios = tuple(self.encoder.scenarios)
        updates = []
        for seq, user_vectors in zip(sequences, vectors):
            seq.bump_version()
            updates.append(
                UserUpdate(
                    user_id=seq.user_id, version=seq.version, watermark_ms=seq.watermark_ms,
                    computed_at_ms=computed_at_ms, model_version=self.encoder.model_version,
                    scenarios=scenarios, vectors=user_vectors, sequence_state=seq.to_bytes(),
                )
            )
        logger.debug("recomputed users=%d", len(updates))
        return updates
