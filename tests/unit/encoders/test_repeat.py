"""The repeat score: its features, its slots, the vectors it appends, and fitting it."""

from __future__ import annotations

import numpy as np
import torch

from encoders.config import ModelConfig
from encoders.dataset import EventDataset, UserHistory
from encoders.model import InterestModel
from encoders.repeat import n_repeat_features, repeat_features, top_slots


def test_features_describe_each_distinct_item_at_its_newest_event() -> None:
    item = torch.tensor([[5, 6, 5, 7, 0]])  # 0: padding
    scen = torch.tensor([[0, 1, 1, 2, 0]])
    seen = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    features, latest = repeat_features(item, scen, seen, 3)
    assert features.shape == (1, 5, n_repeat_features(3))
    assert latest.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]  # item 5's newest event is the third
    rank, after = features[0, :, 0].exp() - 1, features[0, :, 1].exp() - 1
    assert rank[1:4].round().tolist() == [2.0, 1.0, 0.0] and after[1:4].round().tolist() == [2.0, 1.0, 0.0]
    counts = (features[0, 2, 2:5].exp() - 1).round().tolist()
    assert counts == [1.0, 1.0, 0.0]  # item 5: once in scenario 0, once in 1
    assert features[0, 3, 2 + 2 * 3] == 1.0 and features[0, 2, 2 + 2 * 3] == 0.0  # the newest


def test_slots_take_the_best_scored_valid_events_in_order() -> None:
    score = torch.tensor([[0.5, 2.0, -1.0, 3.0, 9.0]])
    valid = torch.tensor([[1.0, 1.0, 1.0, 1.0, 0.0]])
    pick = top_slots(score, valid, 6)
    assert pick.argmax(dim=2)[0, :4].tolist() == [3, 1, 0, 2]
    assert pick[0, 4:].sum() == 0  # free slots


def test_a_model_appends_its_repeat_items_scaled_and_keeps_its_other_vectors() -> None:
    torch.manual_seed(0)
    cfg = ModelConfig(n_items=30, d_model=16, dim=8, n_heads=2, n_layers=1, max_len=16, repeat_items=4)
    model = InterestModel(cfg).eval()
    item = torch.tensor([[4, 9, 4, 12, 15, 0]])
    inputs = dict(item_idx=item, scenario_idx=torch.tensor([[0, 1, 2, 0, 1, 0]]),
                  action_idx=torch.zeros(1, 6, dtype=torch.long), gap_bucket=torch.zeros(1, 6, dtype=torch.long),
                  hour=torch.zeros(1, 6, dtype=torch.long), mask=torch.tensor([[1.0, 1, 1, 1, 1, 0]]))
    newest = tuple(float(k == 2 + 2 * 3) for k in range(n_repeat_features(3))) + (0.0,)
    coef = (newest,) * 3  # g = 1 for the newest item, 0 for the others
    served = model.with_repeat(coef, ((0.5, 1.0), (0.0, 0.0), (0.2, 0.0)))
    with torch.no_grad():
        base, out = model(**inputs), served(**inputs)
        vectors = model.item_vectors(torch.tensor([15, 12]))
    assert out.shape == (1, 3, cfg.n_queries + 4, 8)
    torch.testing.assert_close(out[:, :, : cfg.n_queries], base)
    torch.testing.assert_close(out[0, 0, cfg.n_queries], 1.5 * vectors[0])  # a + b * g: the newest item first
    torch.testing.assert_close(out[0, 0, cfg.n_queries + 1], 0.5 * vectors[1])  # then the newest before it
    assert torch.equal(out[0, 1, cfg.n_queries:], base[0, 1, :1].expand(4, -1))  # (0, 0): copies, no effect
    assert torch.allclose(out[0, 2, cfg.n_queries:].norm(dim=-1), torch.tensor(0.2))  # b 0: a for every item


def test_the_fit_learns_which_of_their_items_users_come_back_to() -> None:
    """Users buy (scenario 2) the item they carted (scenario 1) among many they clicked: the
    fit puts weight on the cart and ranks the carted item first for new users."""
    from encoders.evaluation.repeat_fit import fit_repeat_coef

    rng = np.random.default_rng(0)

    def user(u: int) -> UserHistory:
        items = [f"i{k}" for k in rng.choice(60, 8, replace=False)]
        events = [(t, items[t % 8], None, 0, 0) for t in range(16)]
        carted = items[int(rng.integers(8))]
        events.insert(int(rng.integers(4, 16)), (0, carted, None, 1, 0))
        events.append((0, carted, None, 2, 0))
        return UserHistory(f"u{u}", [e[1] for e in events], [None] * len(events),
                           np.array([e[3] for e in events]), np.zeros(len(events), np.int64),
                           np.arange(len(events), dtype=np.int64))

    histories = [user(u) for u in range(300)]
    dataset = EventDataset.build(histories)
    torch.manual_seed(0)
    model = InterestModel(ModelConfig(n_items=dataset.n_items, d_model=16, dim=8, n_heads=2, n_layers=1,
                                      max_len=32, content_dim=0)).eval()
    coef = fit_repeat_coef(model, histories[:200], dataset, None, scenario=2)
    assert len(coef) == n_repeat_features(3) + 1 and coef[2 + 3 + 1] > 0  # has scenario-1 events
    served = model.with_repeat(tuple(coef if s == 2 else () for s in range(3)), ((0.0, 0.0),) * 2 + ((1.0, 1.0),))
    from encoders.evaluation.ranking import ModelScorer

    tests = [h.prefix(len(h) - 1) for h in histories[200:]]
    slots, scores = ModelScorer(served, dataset, None).repeat_slots(tests)
    with torch.no_grad():
        answers = served.item_vectors(torch.tensor([dataset.index[h.item_ids[-1]] for h in histories[200:]]))
    first = (slots[:, 2, 0] * answers).sum(dim=1)
    assert (first > 0.999).float().mean() > 0.9
