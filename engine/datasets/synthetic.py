"""Synthetic requests for benchmarks, demos and tests: uniform or power-law row accesses, and
Criteo-shaped samples (13 dense features, 26 tables with the Criteo Kaggle cardinalities).

Power-law accesses: with ``u ~ U(0, 1)`` a table of ``N`` rows is read at hot rank
``floor(N * u**e)``, then the rank is scattered over the table by a bijection so hot rows are not
neighbours. The hottest 1% of ranks get ``P(u**e < 0.01) = 0.01**(1/e)`` of the accesses, so a
requested top-1% share ``s`` gives ``e = log(0.01) / log(s)``; ``s = 0.01`` (``e = 1``) is uniform.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from .chunk import SampleChunk

# Rows of the 26 categorical features of the Criteo Kaggle (Display Advertising Challenge) data,
# as counted by the DLRM reference reader (facebookresearch/dlrm, day-split preprocessing).
CRITEO_KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
    5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)

# With u ~ U(0, 1), rows = floor(N * u**SKEW_EXPONENT) sends ~50% of accesses to the hottest 1% of
# rows (0.01 ** (1 / 6.64) ~= 0.5); reference/baselines.md §A.1 measured 50.8%.
SKEW_EXPONENT = 6.64
DEFAULT_TOP1_SHARE = 0.01 ** (1 / SKEW_EXPONENT)

CRITEO_NUM_DENSE = 13
# Share of clicks in the Criteo Kaggle training data (~25.6%), the labels' default rate.
CRITEO_POSITIVE_RATE = 0.256


def skew_exponent(top1_share: float) -> float:
    """Exponent ``e`` of ``floor(N * u**e)`` that sends ``top1_share`` of the accesses to the
    hottest 1% of rows (0.01: uniform, e = 1)."""
    if not 0.01 <= top1_share < 1.0:
        raise InvalidInputError(f"top1_share must be in [0.01, 1), got {top1_share}")
    return math.log(0.01) / math.log(top1_share)


def scatter_rows(rows: np.ndarray, num_rows: int, salt: int) -> np.ndarray:
    """Map hot row ids (0, 1, 2, ...) to scattered ids by a bijection ``(a*r + c) mod N``, so
    hot rows are not neighbours in memory."""
    a = (2_654_435_761 + 2 * salt) % num_rows or 1
    while np.gcd(a, num_rows) != 1:
        a += 1
    return (rows.astype(np.int64) * a + 7919 * salt) % num_rows


def sample_rows(num_rows: int, count: int, rng: np.random.Generator, *, skewed: bool,
                salt: int = 0, top1_share: float | None = None) -> np.ndarray:
    """``count`` int64 row ids of a table with ``num_rows`` rows, uniform or power-law.

    ``top1_share`` (power-law only) is the share of accesses the hottest 1% of rows get;
    None keeps :data:`SKEW_EXPONENT` (~50%).
    """
    if not skewed:
        return rng.integers(0, num_rows, size=count, dtype=np.int64)
    exponent = SKEW_EXPONENT if top1_share is None else skew_exponent(top1_share)
    u = rng.random(count)
    hot_rank = np.minimum((num_rows * u ** exponent).astype(np.int64), num_rows - 1)
    return scatter_rows(hot_rank, num_rows, salt)


def _bags(rows: Sequence[int], weighted: Sequence[bool], batch_size: int, pooling: int | tuple[int, int],
          skewed: bool, top1_share: float | None, rng: np.random.Generator,
          index_dtype: np.dtype) -> SparseBatch:
    lo, hi = (pooling, pooling) if isinstance(pooling, int) else pooling
    if not 0 <= lo <= hi:
        raise InvalidInputError(f"pooling must be N >= 0 or (lo, hi) with 0 <= lo <= hi, got {pooling}")
    indices, offsets, weights = [], [], []
    for t, (n, w) in enumerate(zip(rows, weighted)):
        sizes = rng.integers(lo, hi + 1, size=batch_size)
        off = np.zeros(batch_size + 1, dtype=index_dtype)
        np.cumsum(sizes, out=off[1:])
        nnz = int(off[-1])
        indices.append(sample_rows(n, nnz, rng, skewed=skewed, salt=t, top1_share=top1_share)
                       .astype(index_dtype))
        offsets.append(off)
        weights.append(rng.random(nnz, dtype=np.float32) if w else None)
    return SparseBatch.from_jagged(indices, offsets, weights, include_last_offset=True)


def random_batch(tables: Sequence[EmbeddingTable], batch_size: int, *,
                 pooling: int | tuple[int, int] = 1, skewed: bool = False,
                 rng: np.random.Generator | None = None,
                 index_dtype: np.dtype = np.int64, top1_share: float | None = None) -> SparseBatch:
    """One batch of bags for ``tables`` (anything with ``rows`` and ``weighted``: tables or the
    partitioner's ``TableSpec``): ``pooling`` indices per bag, or a random count in the
    inclusive range ``(lo, hi)``; weighted tables get U(0, 1) per-sample weights. ``skewed``
    accesses send ``top1_share`` (default ~50%) of them to the hottest 1% of rows."""
    rng = rng if rng is not None else np.random.default_rng(0)
    return _bags([t.rows for t in tables], [t.weighted for t in tables], batch_size, pooling,
                 skewed, top1_share, rng, index_dtype)


def criteo_rows(cap: int | None = None) -> list[int]:
    """The 26 Criteo Kaggle table sizes, each capped at ``cap`` rows (MLPerf caps the Criteo
    Terabyte tables at 40 M rows the same way: ids beyond the cap are hashed into it)."""
    if cap is not None and cap < 1:
        raise InvalidInputError(f"cap must be >= 1, got {cap}")
    return [n if cap is None else min(n, cap) for n in CRITEO_KAGGLE_CARDINALITIES]


def criteo_synthetic(num_samples: int, *, rows: Sequence[int] | None = None, cap: int | None = None,
                     top1_share: float = DEFAULT_TOP1_SHARE, pooling: int | tuple[int, int] = 1,
                     seed: int | np.random.Generator = 0, dense_name: str = "dense_x",
                     positive_rate: float = CRITEO_POSITIVE_RATE) -> SampleChunk:
    """``num_samples`` Criteo-shaped samples: dense ``[n, 13]`` float32 already preprocessed like
    the Criteo reader's output (``log1p`` of geometric counts, 10% missing → 0), one bag per table
    with power-law accesses, and Bernoulli(``positive_rate``) labels (independent of the features:
    traffic for scoring and profiling, not for training).

    Args:
        rows: table sizes (default :func:`criteo_rows` of ``cap``).
        top1_share: share of each table's accesses that go to its hottest 1% of rows (0.01: uniform).
        pooling: indices per bag, or an inclusive random range ``(lo, hi)`` (multi-hot).
        seed: seed or generator; the same seed gives the same samples.
    """
    if num_samples < 0:
        raise InvalidInputError(f"num_samples must be >= 0, got {num_samples}")
    rows = criteo_rows(cap) if rows is None else [int(n) for n in rows]
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    counts = rng.geometric(0.05, size=(num_samples, CRITEO_NUM_DENSE)) - 1
    counts[rng.random(counts.shape) < 0.1] = 0
    dense = np.log1p(counts).astype(np.float32)
    sparse = _bags(rows, [False] * len(rows), num_samples, pooling, True, top1_share, rng, np.int64)
    labels = (rng.random(num_samples) < positive_rate).astype(np.float32)
    return SampleChunk({dense_name: dense}, sparse, labels)
