"""The command tree: every command has --help, and the required ones exist."""

from __future__ import annotations

import json
import logging

import pytest

from streams.cli import build_parser, main
from streams.logs import JsonFormatter


@pytest.mark.parametrize(
    "argv",
    [[], ["worker"], ["topics"], ["topics", "create"], ["topics", "list"], ["topics", "describe"],
     ["topics", "delete"], ["offsets"], ["offsets", "show"], ["offsets", "reset"], ["produce"], ["replay"],
     ["inspect"], ["reembed"], ["backfill"]],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    assert "usage: unistate" in capsys.readouterr().out


def test_required_commands_are_listed(capsys: pytest.CaptureFixture[str]) -> None:
    build_parser().print_help()
    out = capsys.readouterr().out
    for command in ("worker", "topics", "offsets", "produce", "replay", "inspect", "reembed", "backfill"):
        assert command in out


def test_reembed_resume_needs_a_checkpoint(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reembed", "--resume"]) == 2
    assert "--resume needs --checkpoint FILE" in capsys.readouterr().err


def test_produce_needs_a_source() -> None:
    with pytest.raises(SystemExit) as info:
        main(["produce"])
    assert info.value.code == 2


def test_bad_environment_settings_exit_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("UNISTATE_WORKER_CONSUME_WAIT_MS", "-5")
    assert main(["inspect", "u1"]) == 2
    assert "UNISTATE_WORKER" in capsys.readouterr().err


def test_json_log_lines_are_json() -> None:
    record = logging.LogRecord("streams.x", logging.INFO, __file__, 1, "done users=%d", (3,), None)
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "done users=3" and doc["level"] == "INFO" and doc["logger"] == "streams.x"


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("unistate ")


@pytest.mark.parametrize("command", ["train", "export", "evaluate"])
def test_model_commands_without_the_train_extra_exit_with_an_install_hint(
    command: str, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    for name in [m for m in sys.modules if m.startswith("encoders.")]:
        monkeypatch.delitem(sys.modules, name)
    argv = {"train": ["train", "--out", str(tmp_path)], "export": ["export", str(tmp_path), "--out", str(tmp_path)],
            "evaluate": ["evaluate", "--root", str(tmp_path)]}[command]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "pip install 'unistate[train]'" in err and "torch" in err


def test_a_setting_that_is_not_json_exits_2(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("UNISTATE_STATE_SCENARIO_SLOTS", "{feed: 3")
    assert main(["inspect", "u1"]) == 2
    assert "scenario_slots" in capsys.readouterr().err


def test_a_misspelled_variable_exits_2_with_a_suggestion(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setenv("UNISTATE_REDIS_UR", "redis://elsewhere:6379/0")
    assert main(["inspect", "u1"]) == 2
    assert "did you mean UNISTATE_REDIS_URL?" in capsys.readouterr().err


def test_passwords_are_redacted_from_urls() -> None:
    from streams.app import redacted

    assert redacted("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redacted("redis://user:s3cret@host:6379/0") == "redis://user:***@host:6379/0"
    assert redacted("redis://host:6379/0") == "redis://host:6379/0"


def test_an_unreachable_redis_cluster_is_a_clean_error_without_the_password(capsys) -> None:
    from streams.app import redis_client
    from streams.errors import RedisUnavailableError
    from streams.settings import RedisSettings

    with pytest.raises(RedisUnavailableError) as info:
        redis_client(RedisSettings(url="redis://:s3cret@127.0.0.1:9/0", cluster=True, socket_timeout_s=0.5))
    assert "s3cret" not in str(info.value)


def test_sigterm_while_the_worker_starts_exits_cleanly(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import signal

    import streams.app

    class NeverRun:
        def run(self) -> None:
            raise AssertionError("a stopped worker must not start consuming")

        def stop(self) -> None:
            pass

    def slow_start(*args: object, **kwargs: object) -> NeverRun:
        os.kill(os.getpid(), signal.SIGTERM)  # arrives while the model would be loading
        return NeverRun()

    monkeypatch.setattr(streams.app, "build_worker", slow_start)
    assert main(["worker"]) == 0
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_inspect_help_lists_redis_model_and_output_flags_but_no_kafka_flags(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["inspect", "--help"])
    out = capsys.readouterr().out
    for flag in ("--redis-url", "--key-prefix", "--log-level", "--model-dir", "--top", "--precision", "--json",
                 "--plot"):
        assert flag in out
    assert "--bootstrap-servers" not in out and "--topic-prefix" not in out


def test_inspect_plot_without_matplotlib_exits_1_with_an_install_hint(monkeypatch, tmp_path, capsys) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert main(["inspect", "u1", "--plot", str(tmp_path / "u1.png")]) == 1
    assert "pip install 'unistate[plot]'" in capsys.readouterr().err


def test_train_recent_takes_scenario_alpha_beta_and_refuses_anything_else(capsys) -> None:
    args = build_parser().parse_args(["train", "--out", "ck", "--recent", "ads=1,0.95", "--recent", "feed=0.4,0.7"])
    assert args.recent == [("ads", (1.0, 0.95)), ("feed", (0.4, 0.7))]
    for bad in ("ads=1", "shop=1,0.9", "ads=-1,0.9", "ads=1,0", "ads=1,x"):
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args(["train", "--out", "ck", "--recent", bad])
        assert info.value.code == 2
        assert "SCENARIO" in capsys.readouterr().err


def test_train_recent_pool_takes_scenario_gamma_delta() -> None:
    args = build_parser().parse_args(["train", "--out", "ck", "--recent-pool", "feed=0.05,0.7"])
    assert args.recent_pool == [("feed", (0.05, 0.7))] and args.recent == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--out", "ck", "--recent-pool", "feed=0.05,1.5"])


def test_train_validation_share_is_a_share_below_one(capsys) -> None:
    assert build_parser().parse_args(["train", "--out", "ck"]).validation_share == 0.1
    assert build_parser().parse_args(["train", "--out", "ck", "--validation-share", "0"]).validation_share == 0
    for bad in ("1", "-0.1", "x"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["train", "--out", "ck", "--validation-share", bad])
        assert "share in [0, 1)" in capsys.readouterr().err


def test_evaluate_prints_each_scenarios_split_by_targets_touched_before(capsys, tmp_path) -> None:  # noqa: ANN001
    """The report shows where a method wins: a table per scenario with both kinds of target,
    none for a scenario with one kind; the JSON keeps every number."""
    from streams.cli.model_commands import _report

    def metrics(ndcg: float, share: float | None = None) -> dict[str, float]:
        out = {"NDCG@10": ndcg, "HR@10": 2 * ndcg, "HR@50": 0.9, "HR@100": 1.0, "NDCG@100": ndcg, "MRR": ndcg}
        return out | ({"share": share} if share is not None else {})

    results = {m: {"ads sampled": metrics(0.5), "ads full": metrics(0.4), "feed sampled": metrics(0.2),
                   "feed full": metrics(0.1), "ads sampled, touched before": metrics(0.61, 0.8),
                   "ads sampled, new item": metrics(0.06, 0.2)} for m in ("kNN", "model")}
    _report(results, tmp_path / "r.json")
    out = capsys.readouterr().out
    assert "### ads sampled, by target: an item the user had touched before (80% of the test users)" in out
    assert "| model | 0.6100 | 1.2200 | 0.0600 | 0.1200 |" in out
    assert "### feed sampled, by target" not in out
    assert json.loads((tmp_path / "r.json").read_text()) == results
