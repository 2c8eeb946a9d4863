"""Redis errors are translated at the state boundary: transient ones retry, the rest do not."""

from __future__ import annotations

import pytest
import redis.exceptions

from state.errors import StateError, StoreUnavailableError, translate_redis_errors


@pytest.mark.parametrize("error, expected, transient", [
    (redis.exceptions.ConnectionError("refused"), StoreUnavailableError, True),
    (redis.exceptions.TimeoutError("slow"), StoreUnavailableError, True),
    (redis.exceptions.AuthenticationError("invalid password"), StateError, False),
    (redis.exceptions.ResponseError("NOSCRIPT"), StateError, False),
])
def test_only_unavailability_is_transient(error: Exception, expected: type, transient: bool) -> None:
    with pytest.raises(expected) as info, translate_redis_errors("publish"):
        raise error
    assert isinstance(info.value, StoreUnavailableError) is transient
