"""Every check a worker makes before it consumes: the model fits the state vocabulary and the
mixing policy, and the input topics exist and are co-partitioned."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer

from state.mixing import MixingPolicyProtocol
from state.records import ACTIONS, SCENARIOS
from streams.errors import ConfigurationError
from streams.recompute import EncoderProtocol
from streams.topics import TopicNames, check_copartitioned, partition_counts

__all__ = ["check_mixing_policy", "check_model", "check_topics", "check_vocabulary"]

logger = logging.getLogger(__name__)


def check_vocabulary(encoder: EncoderProtocol) -> None:
    """Raise ``ConfigurationError`` unless the model's scenarios and actions are ``state.records``'."""
    if tuple(encoder.scenarios) != SCENARIOS or tuple(encoder.actions) != ACTIONS:
        raise ConfigurationError(
            "model vocabulary differs from state.records: "
            f"model scenarios={list(encoder.scenarios)} actions={list(encoder.actions)}; "
            f"expected scenarios={list(SCENARIOS)} actions={list(ACTIONS)}"
        )


def check_mixing_policy(encoder: EncoderProtocol, policy: MixingPolicyProtocol) -> None:
    """Raise ``ConfigurationError`` when the model was trained with another mixing policy.

    Artifacts that recorded no policy (older exports) are served with a warning.
    """
    manifest = getattr(encoder, "manifest", None)
    extra = getattr(manifest, "extra", {}) if manifest is not None else {}
    trained = extra.get("mixing_policy", extra.get("selector_config"))  # the key before 0.2
    serving = policy.describe()
    if trained is None:
        logger.warning("model records no mixing policy: cannot check it matches the worker's")
        return
    if trained != serving:
        raise ConfigurationError(
            f"the model was trained with mixing policy {trained} but the worker is configured "
            f"with {serving}; set UNISTATE_STATE_* to the trained policy or retrain"
        )


def check_model(encoder: EncoderProtocol, policy: MixingPolicyProtocol) -> None:
    """The model fits the worker: its vocabulary and the mixing policy it was trained with."""
    check_vocabulary(encoder)
    check_mixing_policy(encoder, policy)


def check_topics(consumer: Consumer, topics: TopicNames, metadata_timeout_s: float) -> int:
    """The input topics exist and are co-partitioned; returns their partition count."""
    counts = partition_counts(consumer, topics.inputs, metadata_timeout_s)
    return check_copartitioned(counts, topics)
