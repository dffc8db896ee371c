"""Synthetic generators: the measured top-1% share follows the requested skew, uniform control,
seeds reproduce, indices and bag sizes stay in range, Criteo shape and caps."""
from __future__ import annotations

import numpy as np
import pytest

from updlrm import InvalidInputError
from updlrm.datasets.synthetic import (CRITEO_KAGGLE_CARDINALITIES, DEFAULT_TOP1_SHARE, criteo_rows,
                                       criteo_synthetic, sample_rows, skew_exponent)


def top1_share(ids: np.ndarray, num_rows: int) -> float:
    """Share of ``ids`` that hit the 1% most frequent rows, counted directly."""
    counts = np.sort(np.bincount(ids, minlength=num_rows))[::-1]
    return counts[:max(1, num_rows // 100)].sum() / ids.size


@pytest.mark.parametrize("share", [0.2, 0.5, 0.8])
def test_measured_top1_share_follows_the_request(share):
    rows = [10_000, 3_000]
    chunk = criteo_synthetic(200_000, rows=rows, top1_share=share, seed=1)
    for t, n in enumerate(rows):
        assert top1_share(chunk.sparse.indices[t], n) == pytest.approx(share, abs=0.01)


def test_default_skew_is_the_historical_half():
    assert skew_exponent(DEFAULT_TOP1_SHARE) == pytest.approx(6.64)
    ids = sample_rows(10_000, 200_000, np.random.default_rng(2), skewed=True)
    assert top1_share(ids, 10_000) == pytest.approx(0.5, abs=0.02)
    ids = sample_rows(10_000, 200_000, np.random.default_rng(2), skewed=True, top1_share=0.3)
    assert top1_share(ids, 10_000) == pytest.approx(0.3, abs=0.02)


def test_uniform_control():
    # 200 accesses per row: the top 1% of a uniform sample holds barely more than 1%
    for ids in (sample_rows(2_000, 400_000, np.random.default_rng(3), skewed=False),
                criteo_synthetic(400_000, rows=[2_000], top1_share=0.01, seed=3).sparse.indices[0]):
        assert 0.01 <= top1_share(ids, 2_000) < 0.013
        assert np.bincount(ids, minlength=2_000).min() > 100   # every row is read


def test_hot_rows_are_scattered():
    ids = criteo_synthetic(50_000, rows=[100_000], seed=4).sparse.indices[0]
    hottest = np.argsort(np.bincount(ids, minlength=100_000))[-50:]
    assert np.ptp(hottest) > 50_000   # not a block at the start of the table


def test_seeds_reproduce():
    a = criteo_synthetic(500, cap=1000, pooling=(1, 4), seed=7)
    b = criteo_synthetic(500, cap=1000, pooling=(1, 4), seed=7)
    c = criteo_synthetic(500, cap=1000, pooling=(1, 4), seed=8)
    np.testing.assert_array_equal(a.dense["dense_x"], b.dense["dense_x"])
    np.testing.assert_array_equal(a.labels, b.labels)
    for t in range(26):
        np.testing.assert_array_equal(a.sparse.indices[t], b.sparse.indices[t])
        np.testing.assert_array_equal(a.sparse.offsets[t], b.sparse.offsets[t])
    assert not np.array_equal(a.sparse.indices[2], c.sparse.indices[2])


@pytest.mark.parametrize("pooling", [1, 3, (0, 5), (2, 7)])
def test_criteo_shape_ranges_and_bag_sizes(pooling):
    cap = 5_000
    chunk = criteo_synthetic(2_000, cap=cap, pooling=pooling, seed=5, dense_name="d")
    rows = criteo_rows(cap)
    assert rows == [min(n, cap) for n in CRITEO_KAGGLE_CARDINALITIES] and max(rows) == cap
    assert chunk.size == 2_000 and chunk.sparse.num_tables == 26
    lo, hi = (pooling, pooling) if isinstance(pooling, int) else pooling
    for t, n in enumerate(rows):
        idx, off = chunk.sparse.indices[t], chunk.sparse.offsets[t]
        assert idx.min(initial=0) >= 0 and idx.max(initial=0) < n
        sizes = np.diff(off)
        assert off[0] == 0 and off[-1] == idx.size
        assert sizes.min() >= lo and sizes.max() <= hi
        if hi > lo:
            assert len(np.unique(sizes)) > 1
    dense = chunk.dense["d"]
    assert dense.shape == (2_000, 13) and dense.dtype == np.float32
    assert np.isfinite(dense).all() and dense.min() == 0.0 and dense.max() > 1.0
    assert set(np.unique(chunk.labels)) == {0.0, 1.0}
    assert chunk.labels.mean() == pytest.approx(0.256, abs=0.04)


def test_uncapped_criteo_tables_reach_their_cardinality():
    chunk = criteo_synthetic(20_000, top1_share=0.01, seed=6)
    biggest = int(np.argmax(CRITEO_KAGGLE_CARDINALITIES))
    assert chunk.sparse.indices[biggest].max() > CRITEO_KAGGLE_CARDINALITIES[biggest] * 0.9


@pytest.mark.parametrize("call,message", [
    (lambda: skew_exponent(1.0), "top1_share"), (lambda: skew_exponent(0.001), "top1_share"),
    (lambda: criteo_rows(0), "cap"), (lambda: criteo_synthetic(10, pooling=(3, 2)), "pooling"),
    (lambda: criteo_synthetic(-1), "num_samples")])
def test_bad_arguments(call, message):
    with pytest.raises(InvalidInputError, match=message):
        call()
