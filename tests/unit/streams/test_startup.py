"""Start-up checks: the model's vocabulary and mixing policy must fit the worker's."""

from __future__ import annotations

import pytest

from state.config import MixingConfig
from state.mixing import MixingPolicy
from state.records import ACTIONS, SCENARIOS
from streams.errors import ConfigurationError
from streams.startup import check_mixing_policy, check_vocabulary


class ShapeEncoder:
    """The vocabulary a loaded model reports."""

    def __init__(self, scenarios: tuple[str, ...] = SCENARIOS, actions: tuple[str, ...] = ACTIONS) -> None:
        self.scenarios, self.actions = scenarios, actions


def test_vocabulary_mismatch_is_fatal() -> None:
    check_vocabulary(ShapeEncoder())
    with pytest.raises(ConfigurationError, match="vocabulary"):
        check_vocabulary(ShapeEncoder(actions=ACTIONS[:-1]))
    with pytest.raises(ConfigurationError):
        check_vocabulary(ShapeEncoder(scenarios=("feed", "ads", "search")))


class _Artifact:
    """What check_mixing_policy reads of a loaded encoder: its manifest's extra section."""

    def __init__(self, extra: dict) -> None:
        self.manifest = type("M", (), {"extra": extra})()


def test_a_model_trained_with_another_mixing_policy_is_refused() -> None:
    trained = MixingPolicy(MixingConfig()).describe()
    check_mixing_policy(_Artifact({"mixing_policy": trained}), MixingPolicy(MixingConfig()))  # same: fine
    check_mixing_policy(_Artifact({}), MixingPolicy(MixingConfig()))  # nothing recorded: warning only
    tight = MixingPolicy(MixingConfig(scenario_slots={"feed": 8, "search": 4, "ads": 4}))
    with pytest.raises(ConfigurationError, match="trained with mixing policy"):
        check_mixing_policy(_Artifact({"mixing_policy": trained}), tight)
    with pytest.raises(ConfigurationError, match="trained with mixing policy"):  # a manifest before 0.2
        check_mixing_policy(_Artifact({"selector_config": trained}), tight)


def test_a_worker_refuses_a_mismatched_model_before_connecting_to_anything() -> None:
    from streams.app import build_worker
    from streams.settings import KafkaSettings, ModelSettings, RedisSettings, WorkerSettings

    class Encoder(ShapeEncoder):
        model_version = "m1"

        def encode(self, sequences: list) -> None:  # never reached
            raise AssertionError("encoded")

    worker = build_worker(KafkaSettings(bootstrap_servers="127.0.0.1:9"), RedisSettings(url="redis://127.0.0.1:9/0"),
                          ModelSettings(), WorkerSettings(), encoder=Encoder(actions=ACTIONS[:-1]))
    with pytest.raises(ConfigurationError, match="vocabulary"):
        worker.run()  # nothing listens on port 9: reaching Kafka or Redis would hang or fail differently
