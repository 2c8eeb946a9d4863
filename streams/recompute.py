"""Recomputes changed users' embeddings in bounded micro-batches: mix, encode, build updates."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import numpy as np

from encoders.features import SequenceInput
from state.mixing import MixingPolicyProtocol
from state.publisher import UserUpdate
from state.sequence import UserSequence

__all__ = ["EncoderProtocol", "Recomputer", "sequence_input"]

logger = logging.getLogger(__name__)


class EncoderProtocol(Protocol):
    """What the worker needs of ``encoders.serving.InterestEncoder``."""

    @property
    def model_version(self) -> str: ...

    @property
    def scenarios(self) -> Sequence[str]: ...

    @property
    def actions(self) -> Sequence[str]: ...

    def encode(self, sequences: list[SequenceInput]) -> np.ndarray: ...


def sequence_input(seq: UserSequence, policy: MixingPolicyProtocol) -> SequenceInput:
    """The model input of one user: the policy's events, ``now_ms`` = the user's watermark.

    Using the event-time watermark (not the wall clock) makes a recompute deterministic, so a
    direct model call on the stored sequence reproduces what the worker published.
    """
    columns = seq.columns()
    picked = policy.select(columns.scenario_idx, columns.ts_ms, seq.watermark_ms)
    positions = picked.tolist()
    return SequenceInput(
        item_ids=[columns.item_ids[i] for i in positions],
        texts=[columns.texts[i] for i in positions],
        scenario_idx=columns.scenario_idx[picked],
        action_idx=columns.action_idx[picked],
        ts_ms=columns.ts_ms[picked],
        now_ms=int(seq.watermark_ms),
    )


class Recomputer:
    """Encodes users in chunks of ``max_batch_users`` and turns the vectors into ``UserUpdate``s.

    ``updates`` bumps each sequence's version, so call it once per change, right before publishing.
    """

    def __init__(
        self, encoder: EncoderProtocol, policy: MixingPolicyProtocol, max_batch_users: int = 64,
        on_unknown_items: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_users < 1:
            raise ValueError(f"max_batch_users must be >= 1, got {max_batch_users}")
        self.encoder = encoder
        self.policy = policy
        self.max_batch_users = max_batch_users
        #: Called with the number of model-input events whose item is outside the model's
        #: vocabulary (they enter as the learned "unknown item" row): a model due for retraining.
        self.on_unknown_items = on_unknown_items
        self._vocabulary: Mapping[str, int] | None = getattr(encoder, "item_index", None)

    def chunks(self, sequences: Sequence[UserSequence]) -> list[list[UserSequence]]:
        """``sequences`` split into micro-batches of at most ``max_batch_users``, shortest first:
        a batch is padded to its longest input, so users of similar length go together (under a
        Zipf load one heavy user would otherwise pad a whole batch of light ones to ``max_len``)."""
        n = self.max_batch_users
        by_length = sorted(sequences, key=len)  # stable: equal lengths keep their order
        return [by_length[i : i + n] for i in range(0, len(by_length), n)]

    def updates(self, sequences: Sequence[UserSequence]) -> list[UserUpdate]:
        """Encode one micro-batch and build its updates (raising each user's version)."""
        if not sequences:
            return []
        inputs = [sequence_input(seq, self.policy) for seq in sequences]
        if self.on_unknown_items is not None and self._vocabulary is not None:
            known = self._vocabulary
            self.on_unknown_items(sum(1 for s in inputs for i in s.item_ids if i is not None and i not in known))
        vectors = np.asarray(self.encoder.encode(inputs), dtype=np.float32)
        computed_at_ms = int(time.time() * 1000)
        scenarios = tuple(self.encoder.scenarios)
        updates = []
        for seq, user_vectors in zip(sequences, vectors, strict=True):
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
