"""ROC AUC against hand-computed cases and a brute-force pair count."""
from __future__ import annotations

import numpy as np
import pytest

from updlrm import InvalidInputError
from updlrm.metrics import roc_auc


def pair_count_auc(labels, scores) -> float:
    """P(score of a positive > score of a negative), ties counting 1/2, over every pair."""
    pos = [s for y, s in zip(labels, scores) if y == 1]
    neg = [s for y, s in zip(labels, scores) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("labels,scores,expected", [
    ([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8], 0.75),            # one of four pairs inverted
    ([0, 1], [0.2, 0.7], 1.0),
    ([1, 0], [0.2, 0.7], 0.0),
    ([0, 1, 0, 1], [3, 3, 3, 3], 0.5),                      # everything tied
    # positives 0.5, 0.9, 0.2 against negatives 0.5, 0.2: pairs 1/2+1 + 1+1 + 0+1/2 = 4 of 6
    ([0, 1, 0, 1, 1], [0.5, 0.5, 0.2, 0.9, 0.2], 4 / 6),
    ([True, False, False], [-1.0, -2.0, -1.0], 0.75),       # bool labels, negative scores, a tie
])
def test_hand_computed_cases(labels, scores, expected):
    auc = roc_auc(labels, scores)
    assert isinstance(auc, float)
    assert auc == pytest.approx(expected, abs=1e-15)


@pytest.mark.parametrize("seed", range(4))
def test_matches_pair_count_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    labels = rng.integers(0, 2, n)
    labels[:2] = [0, 1]
    scores = rng.integers(0, 7, n).astype(np.float32) / 7   # few distinct values: ties everywhere
    assert roc_auc(labels, scores) == pytest.approx(pair_count_auc(labels, scores), abs=1e-12)
    # A model's [N, 1] output and float labels give the same value.
    assert roc_auc(labels.astype(np.float32), scores[:, None]) == roc_auc(labels, scores)


@pytest.mark.parametrize("labels,scores,match", [
    ([1, 1, 1], [0.1, 0.2, 0.3], "one class only"),
    ([0, 0], [0.1, 0.2], "one class only"),
    ([0, 1, 1], [0.1, 0.2], "3 entries, scores 2"),
    ([0, 1], [0.1, float("nan")], "NaN"),
    ([0, 1], [0.1, float("inf")], "NaN/inf"),
    ([0, 2], [0.1, 0.2], "0 or 1"),
    ([0, float("nan")], [0.1, 0.2], "0 or 1"),
    ([[0, 1], [1, 0]], [[0.1, 0.2], [0.3, 0.4]], "shape"),
    (["a", "b"], [0.1, 0.2], "labels must be 0/1"),
])
def test_errors(labels, scores, match):
    with pytest.raises(InvalidInputError, match=match):
        roc_auc(labels, scores)
