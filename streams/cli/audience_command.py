"""``unistate audience``: the users whose stored vectors best match one item, a known item of the
model or a new one described by its text (a new ad): who to show it to."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.cli.bulk_session import positive_int
from streams.cli.exit_codes import ExitCode
from streams.cli.stream_commands import common_options, model_settings, redis_settings
from streams.errors import ConfigurationError

if TYPE_CHECKING:
    from encoders.item_index import ItemIndex
    from streams.integrations.targeting import Audience

__all__ = ["format_audience", "register"]


def _read_user_ids(path: Path) -> Iterator[str]:
    """One user id per line of ``path`` (``-``: standard input); blank lines are skipped."""
    lines = sys.stdin if str(path) == "-" else path.open(encoding="utf-8")
    try:
        for line in lines:
            if line.strip():
                yield line.strip()
    finally:
        if lines is not sys.stdin:
            lines.close()


def _index(artifact_dir: Path, args: argparse.Namespace) -> tuple[ItemIndex, str]:
    """The model's item index and the id to rank: ``--item`` as given, or ``--text`` added as a new
    item (its vector from the model's new-item graph)."""
    from encoders.item_index import ItemIndex

    index = ItemIndex.load(artifact_dir)
    if args.text is None:
        return index, args.item
    from encoders.new_items import NewItemEncoder  # ONNX Runtime and the text encoder: only for --text

    encoder = NewItemEncoder.load(artifact_dir)
    new_id = f"new item {args.text!r}"
    return index.with_items([new_id], encoder.encode([args.text]), encoder.model_version,
                            scenarios=[args.scenario]), new_id


def format_audience(audience: Audience, precision: int = 4) -> str:
    """The ranking as ``rank  user  score`` lines and a summary of the users read."""
    lines = [f"{audience.item_id} · scenario {audience.scenario} · best {len(audience.ranked)} users"]
    lines += [f"{rank:>6}  {user}  {score:.{precision}f}" for rank, (user, score) in enumerate(audience.ranked, 1)]
    lines.append(f"read {audience.read} users: {audience.missing} without {audience.scenario} vectors, "
                 f"{audience.other_model} with another model's vectors (not scored)")
    return "\n".join(lines)


def _as_json(audience: Audience) -> dict[str, Any]:
    return {"item_id": audience.item_id, "scenario": audience.scenario,
            "ranked": [{"user_id": u, "score": s} for u, s in audience.ranked],
            "read": audience.read, "missing": audience.missing, "other_model": audience.other_model}


def _cmd_audience(args: argparse.Namespace) -> int:
    from state.keys import RedisKeys
    from streams.app import redis_client
    from streams.integrations.targeting import ItemTargeting

    if args.users and args.users_file is not None:
        raise ConfigurationError("give user ids as arguments or --users-file, not both")
    if args.users_file is not None and str(args.users_file) != "-" and not args.users_file.is_file():
        raise ConfigurationError(f"--users-file {args.users_file}: no such file")
    settings = redis_settings(args)
    index, item_id = _index(model_settings(args).artifact_dir, args)
    user_ids = args.users or (None if args.users_file is None else _read_user_ids(args.users_file))
    with redis_client(settings) as client:
        audience = ItemTargeting(client, RedisKeys(settings.key_prefix), index).audience(
            item_id, args.scenario, user_ids, k=args.top)
    print(json.dumps(_as_json(audience), indent=2) if args.json else format_audience(audience, args.precision))
    return ExitCode.OK


def register(subparsers: Any) -> None:
    """Add ``audience`` to the ``unistate`` command tree."""
    p = subparsers.add_parser(
        "audience", parents=[common_options(kafka=False)], help="the users who best match an item (a new ad)",
        description="Rank users by how well their stored SCENARIO vectors match one item: max over the "
        "user's query vectors of dot(query, item vector), as ad targeting scores. The item is one the "
        "model knows (--item) or a new one described by its text (--text; needs a model trained with "
        "--use-text on data with item titles, whose export has new_items.onnx). Users: the ids given, "
        "--users-file, or by default every stored user (a SCAN walk, in pipelined batches; only the "
        "best --top are kept in memory).")
    item = p.add_mutually_exclusive_group(required=True)
    item.add_argument("--item", help="an item id of the model's vocabulary")
    item.add_argument("--text", help="a new item's text (title, ad copy)")
    p.add_argument("--scenario", required=True, help="whose vectors to match (feed, search, ads)")
    p.add_argument("users", nargs="*", metavar="USER", help="user ids (default: every stored user)")
    p.add_argument("--users-file", type=Path, metavar="FILE", help="user ids, one per line (- : stdin)")
    p.add_argument("--model-dir", type=Path, help="exported model directory (UNISTATE_MODEL_ARTIFACT_DIR, "
                   "default models/current)")
    p.add_argument("--top", type=positive_int, default=20, help="users shown (default 20)")
    p.add_argument("--precision", type=int, default=4, help="decimals of the scores (default 4)")
    p.add_argument("--json", action="store_true", help="print the ranking as JSON")
    p.set_defaults(handler=_cmd_audience)
