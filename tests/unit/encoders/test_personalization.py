"""The collapse diagnostics: a collapsed set of vectors and a personalized one tell apart."""

from __future__ import annotations

import numpy as np

from encoders.evaluation.personalization import cross_user_cosine, personalization_report


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_collapsed_vectors_are_flagged_and_personal_ones_are_not() -> None:
    rng = np.random.default_rng(0)
    items = _unit(rng.normal(size=(40, 8)))
    columns = np.arange(40)
    shared = _unit(rng.normal(size=8))
    collapsed = _unit(np.tile(shared, (50, 1, 2, 1)) + 1e-3 * rng.normal(size=(50, 1, 2, 8)))
    personal = items[rng.integers(0, 40, (50, 1, 2))]  # each user's queries point at its own items
    bad = personalization_report(collapsed, items, columns)[0]
    good = personalization_report(personal, items, columns,
                                  planted=[set(np.flatnonzero((items @ u.T).max(1) > 0.99)) for u in personal[:, 0]])[0]
    assert bad["cross_user_cos"] > 0.99 and bad["top1_share"] == 1.0 and bad["distinct_top_k"] == 10
    assert good["cross_user_cos"] < 0.3 and good["top1_share"] < 0.2 and good["distinct_top_k"] > 30
    assert good["planted_share"] > 3 * good["planted_chance"]  # both planted items in every top-10
    assert bad["intra_user_query_cos"] > 0.99


def test_cross_user_cosine_of_orthogonal_users_is_zero() -> None:
    vectors = np.eye(4)[:, None, :]  # four users, one query each, orthogonal
    assert abs(cross_user_cosine(vectors)) < 1e-12
