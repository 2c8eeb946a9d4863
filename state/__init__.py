"""unistate's domain: per-user sequence state, the 2-D mixing policy, the Redis format and I/O."""

from state.cache import SequenceCache
from state.config import MixingConfig, StateConfig
from state.errors import InvalidInputError, StateError, StateFormatError, StoreUnavailableError
from state.keys import RedisKeys
from state.mixing import MixedSlot, MixingPolicy, MixingPolicyProtocol, RecentWindowPolicy
from state.publisher import RedisPublisher, UserUpdate
from state.reader import EmbeddingReader, ReadResult, UserEmbedding
from state.records import ACTIONS, SCENARIOS, Behavior
from state.sequence import ApplyResult, UserSequence
from state.store import SequenceStore

__all__ = [
    "ACTIONS",
    "SCENARIOS",
    "ApplyResult",
    "Behavior",
    "EmbeddingReader",
    "InvalidInputError",
    "MixedSlot",
    "MixingConfig",
    "MixingPolicy",
    "ReadResult",
    "RecentWindowPolicy",
    "RedisKeys",
    "RedisPublisher",
    "MixingPolicyProtocol",
    "SequenceCache",
    "SequenceStore",
    "StateConfig",
    "StateError",
    "StateFormatError",
    "StoreUnavailableError",
    "UserEmbedding",
    "UserSequence",
    "UserUpdate",
]
