"""Encoder serving benchmark: batched vs single-user ONNX Runtime calls, ONNX Runtime vs torch eager,
a model serving own views vs the same weights in the all view, and one with recent items vs the
same weights without them.

A small model (the default ``ModelConfig`` architecture) is trained for one short epoch on
synthetic events and exported into a temporary directory with ``encoders.train.train`` and
``encoders.export.export``; the inputs are real mixed user sequences (``MixingPolicy``) built
from the same synthetic generator. Every figure is the median of ``--repeats`` timed runs taken
in this process, and each comparison is reported as a ratio against its baseline measured
alongside it, because the machine is shared and noisy.

    .venv/bin/python benchmarks/bench_encoder.py            # defaults: about 1 minute on 2 cores
    .venv/bin/python benchmarks/bench_encoder.py --help
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

logger = logging.getLogger("bench_encoder")


@dataclass(frozen=True)
class Timing:
    """Seconds per call over several repeats: median and the min..max spread."""

    samples_s: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return statistics.median(self.samples_s)

    def ms(self) -> str:
        lo, hi = min(self.samples_s) * 1e3, max(self.samples_s) * 1e3
        return f"{self.median_s * 1e3:.2f} ({lo:.2f}–{hi:.2f})"

    def users_per_s(self, users: int) -> str:
        lo, hi = users / max(self.samples_s), users / min(self.samples_s)
        return f"{users / self.median_s:,.0f} ({lo:,.0f}–{hi:,.0f})"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 16, 64, 256],
        help="users per encode call (default: 1 16 64 256)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats per cell (default 7)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls before each cell (default 2)")
    parser.add_argument(
        "--train-users", type=int, default=200, help="synthetic users for the short training run (default 200)"
    )
    parser.add_argument(
        "--mean-events",
        type=int,
        default=100,
        help="mean events per synthetic user (default 100; mixed down to <=128 slots)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch intra-op threads; ONNX Runtime uses its default (one per core)",
    )
    parser.add_argument(
        "--artifact-dir",
        type=Path,
        default=None,
        help="use this exported artifact (and its ckpt/model.pt beside it) instead of training one",
    )
    parser.add_argument(
        "--providers",
        nargs="+",
        default=["CPUExecutionProvider"],
        help="ONNX Runtime providers (e.g. CUDAExecutionProvider CPUExecutionProvider)",
    )
    parser.add_argument("--no-torch", action="store_true", help="skip the torch eager comparison")
    parser.add_argument("--no-batching", action="store_true", help="skip the batched vs single-user table")
    parser.add_argument("--no-views", action="store_true", help="skip the own-view vs all-view table")
    parser.add_argument("--no-recent", action="store_true", help="skip the recent-items vs none table")
    return parser.parse_args(argv)


def build_artifact(root: Path, n_users: int, mean_events: int, threads: int) -> tuple[Path, Path]:
    """Train one short epoch of the default architecture on synthetic data; export it."""
    from encoders.config import ModelConfig, TrainConfig
    from encoders.data.synthetic import generate_events
    from encoders.data.wire import histories_from_wire
    from encoders.dataset import EventDataset
    from encoders.export import export
    from encoders.train import train
    from state.mixing import MixingPolicy

    dataset = EventDataset.build(histories_from_wire(generate_events(n_users, seed=1, mean_events=mean_events)))
    config = TrainConfig(  # min_steps=0: one epoch (serving speed does not depend on training length)
        model=ModelConfig(), epochs=1, min_steps=0, batch_size=128, n_negatives=256, progress=False, threads=threads
    )
    ckpt = train(config, dataset, MixingPolicy(), root / "ckpt")
    export(ckpt, root / "current")
    return root / "current", ckpt


def artifact_or_build(root: Path, artifact_dir: Path | None) -> Path:
    """``artifact_dir``, or a small model trained and exported under ``root`` (``build_artifact``)."""
    if artifact_dir is not None:
        return artifact_dir
    return build_artifact(root, n_users=200, mean_events=100, threads=2)[0]


def user_inputs(n: int, mean_events: int) -> list:
    """``n`` users' full histories, mixed by the default policy, as the worker would feed them."""
    from encoders.data.synthetic import generate_events
    from encoders.data.wire import histories_from_wire
    from state.mixing import MixingPolicy

    policy = MixingPolicy()
    histories = histories_from_wire(generate_events(n, seed=7, mean_events=mean_events))
    return [h.context(len(h), policy) for h in histories]


def time_pair(
    fn_a: Callable[[], object], fn_b: Callable[[], object], args: argparse.Namespace, inner: int
) -> tuple[Timing, Timing]:
    """Time ``fn_a`` and ``fn_b`` interleaved (a, b, a, b, ...) so machine noise hits both alike;
    each sample is the mean of ``inner`` back-to-back calls."""
    for _ in range(args.warmup):
        fn_a()
        fn_b()
    samples: tuple[list[float], list[float]] = ([], [])
    for _ in range(args.repeats):
        for fn, out in ((fn_a, samples[0]), (fn_b, samples[1])):
            started = time.perf_counter()
            for _ in range(inner):
                fn()
            out.append((time.perf_counter() - started) / inner)
    return Timing(tuple(samples[0])), Timing(tuple(samples[1]))


def inner_calls(b: int) -> int:
    """Calls per timed sample: enough that small batches are not timed one sub-millisecond call at a time."""
    return max(1, 64 // b)


def torch_runner(ckpt: Path, item_index: dict[str, int], threads: int) -> Callable[[list], np.ndarray]:
    """torch eager on the same inputs: ``build_inputs`` then the checkpoint's model."""
    import torch

    from encoders.features import build_inputs, input_names
    from encoders.train import load_checkpoint

    torch.set_num_threads(threads)
    model, _, _ = load_checkpoint(ckpt)
    names = input_names(model.cfg)

    def run(batch: list) -> np.ndarray:
        arrays = build_inputs(batch, item_index, model.cfg)
        with torch.inference_mode():
            return model(*(torch.from_numpy(arrays[n]) for n in names)).numpy()

    return run


def comparison_table(
    header: str, ratio: str, fn_a: Callable[[list], object], fn_b: Callable[[list], object], users: list,
    sizes: list[int], args: argparse.Namespace, desc: str,
) -> list[str]:
    """One row per batch size: ``fn_a`` and ``fn_b`` timed interleaved on the first B users, and
    the ratio of their medians (b ÷ a) in the ``ratio`` column."""
    rows = [f"| B users | {header} | {ratio} |", "|---:|---:|---:|---:|---:|---:|"]
    for b in tqdm(sizes, desc=desc, unit="B"):
        batch = users[:b]
        t_a, t_b = time_pair(lambda batch=batch: fn_a(batch), lambda batch=batch: fn_b(batch), args, inner_calls(b))
        cells = f"{t_a.ms()} | {t_a.users_per_s(b)} | {t_b.ms()} | {t_b.users_per_s(b)}"
        rows.append(f"| {b} | {cells} | **{t_b.median_s / t_a.median_s:.2f}×** |")
    return rows


def batching_table(encoder, users: list, sizes: list[int], args: argparse.Namespace) -> list[str]:
    return comparison_table(
        "one batched call: ms/batch | users/s | B single-user calls: ms total | users/s",
        "speed-up (batched ÷ single)", encoder.encode, lambda batch: [encoder.encode([u]) for u in batch],
        users, sizes, args, "batched vs single",
    )


def runtime_table(encoder, run_torch, users: list, sizes: list[int], args: argparse.Namespace) -> list[str]:
    check = users[: min(8, len(users))]
    max_diff = float(np.abs(encoder.encode(check) - run_torch(check)).max())
    return [f"max |ORT − torch| on {len(check)} users: {max_diff:.2e}", ""] + comparison_table(
        "ONNX Runtime: ms/batch | users/s | torch eager: ms/batch | users/s", "speed-up (torch ÷ ORT)",
        encoder.encode, run_torch, users, sizes, args, "ORT vs torch",
    )


def variant_encoder(ckpt: Path, root: Path, name: str, providers: list[str], **config: object):
    """The same checkpoint exported with some model config keys changed (``config``)."""
    import torch

    from encoders.export import export
    from encoders.serving import InterestEncoder

    data = torch.load(ckpt, weights_only=False)
    data["model_config"].update(config)
    torch.save(data, root / f"{name}.pt")
    export(root / f"{name}.pt", root / name)
    return InterestEncoder.load(root / name, providers=providers)


def views_table(encoder, views, users: list, sizes: list[int], args: argparse.Namespace) -> list[str]:
    return comparison_table(
        "all view (no own-view scenarios): ms/batch | users/s | feed and search in the own view: ms/batch | users/s",
        "cost (own views ÷ all view)", encoder.encode, views.encode, users, sizes, args, "own views vs all view",
    )


def recent_table(encoder, recent, users: list, sizes: list[int], args: argparse.Namespace) -> list[str]:
    return comparison_table(
        "learned vectors only: ms/batch | users/s | + 5 recent items in every scenario: ms/batch | users/s",
        "cost (recent items ÷ none)", encoder.encode, recent.encode, users, sizes, args, "recent items vs none",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    import onnxruntime as ort

    from encoders.serving import InterestEncoder

    with tempfile.TemporaryDirectory(prefix="unistate-bench-encoder-") as tmp:
        started = time.perf_counter()
        if args.artifact_dir is not None:
            artifact, ckpt = args.artifact_dir, args.artifact_dir.parent / "ckpt" / "model.pt"
        else:
            artifact, ckpt = build_artifact(Path(tmp), args.train_users, args.mean_events, args.threads)
        build_s = time.perf_counter() - started
        encoder = InterestEncoder.load(artifact, providers=args.providers)
        users = user_inputs(max(args.batch_sizes), args.mean_events)
        lengths = [len(u) for u in users]
        cfg = encoder.manifest.config
        print(
            f"## bench_encoder\n\nmodel: d_model={cfg.d_model} n_layers={cfg.n_layers} n_heads={cfg.n_heads} "
            f"n_queries={cfg.n_queries} dim={cfg.dim} max_len={cfg.max_len} n_items={cfg.n_items}; "
            f"trained+exported in {build_s:.1f} s"
        )
        print(
            f"inputs: {len(users)} users, mixed length median {int(np.median(lengths))} "
            f"(min {min(lengths)}, max {max(lengths)}); onnxruntime {ort.__version__} "
            f"providers={encoder.providers}; python {platform.python_version()}; "
            f"repeats={args.repeats} (median, min–max in parentheses)\n"
        )
        if not args.no_batching:
            print("### (a) ONNX Runtime: one batched call vs B single-user calls\n")
            print("\n".join(batching_table(encoder, users, args.batch_sizes, args)))
        if not args.no_torch:
            import torch

            run_torch = torch_runner(ckpt, encoder.item_index, args.threads)
            print(f"\n### (b) ONNX Runtime vs torch {torch.__version__} eager (torch threads={args.threads})\n")
            print("\n".join(runtime_table(encoder, run_torch, users, args.batch_sizes, args)))
        if not args.no_views:
            views = variant_encoder(Path(ckpt), Path(tmp), "views", args.providers,
                                    own_view_scenarios=["feed", "search"])
            print("\n### (c) ONNX Runtime: own views for feed and search vs the all view (same weights)\n")
            print("\n".join(views_table(encoder, views, users, args.batch_sizes, args)))
        if not args.no_recent:
            recent = variant_encoder(Path(ckpt), Path(tmp), "recent", args.providers,
                                     recent_weights=[[1.0, 0.95]] * len(cfg.scenarios))
            print("\n### (d) ONNX Runtime: 5 recent items after each scenario's vectors vs none (same weights)\n")
            print("\n".join(recent_table(encoder, recent, users, args.batch_sizes, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
