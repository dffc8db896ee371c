"""Synthetic requests for benchmarks, demos and tests: uniform or power-law row accesses."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..sparse import SparseBatch
from ..tables import EmbeddingTable

# Rows of the 26 categorical features of the Criteo Kaggle (Display Advertising Challenge) data,
# as counted by the DLRM reference reader (facebookresearch/dlrm, day-split preprocessing).
CRITEO_KAGGLE_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27, 14992,
    5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572,
)

# With u ~ U(0, 1), rows = floor(N * u**SKEW_EXPONENT) sends ~50% of accesses to the hottest 1% of
# rows (0.01 ** (1 / 6.64) ~= 0.5); reference/baselines.md §A.1 measured 50.8%.
SKEW_EXPONENT = 6.64


def scatter_rows(rows: np.ndarray, num_rows: int, salt: int) -> np.ndarray:
    """Map hot row ids (0, 1, 2, ...) to scattered ids by a bijection ``(a*r + c) mod N``, so
    hot rows are not neighbours in memory."""
    a = (2_654_435_761 + 2 * salt) % num_rows or 1
    while np.gcd(a, num_rows) != 1:
        a += 1
    return (rows.astype(np.int64) * a + 7919 * salt) % num_rows


def sample_rows(num_rows: int, count: int, rng: np.random.Generator, *, skewed: bool,
                salt: int = 0) -> np.ndarray:
    """``count`` int64 row ids of a table with ``num_rows`` rows, uniform or power-law."""
    if not skewed:
        return rng.integers(0, num_rows, size=count, dtype=np.int64)
    u = rng.random(count)
    hot_rank = np.minimum((num_rows * u ** SKEW_EXPONENT).astype(np.int64), num_rows - 1)
    return scatter_rows(hot_rank, num_rows, salt)


def random_batch(tables: Sequence[EmbeddingTable], batch_size: int, *,
                 pooling: int | tuple[int, int] = 1, skewed: bool = False,
                 rng: np.random.Generator | None = None,
                 index_dtype: np.dtype = np.int64) -> SparseBatch:
    """One batch of bags for ``tables``: ``pooling`` indices per bag, or a random count in the
    inclusive range ``(lo, hi)``; weighted tables get U(0, 1) per-sample weights."""
    rng = rng if rng is not None else np.random.default_rng(0)
    lo, hi = (pooling, pooling) if isinstance(pooling, int) else pooling
    indices, offsets, weights = [], [], []
    for t, table in enumerate(tables):
        sizes = rng.integers(lo, hi + 1, size=batch_size)
        off = np.zeros(batch_size + 1, dtype=index_dtype)
        np.cumsum(sizes, out=off[1:])
        nnz = int(off[-1])
        indices.append(sample_rows(table.rows, nnz, rng, skewed=skewed, salt=t).astype(index_dtype))
        offsets.append(off)
        weights.append(rng.random(nnz, dtype=np.float32) if table.weighted else None)
    return SparseBatch.from_jagged(indices, offsets, weights, include_last_offset=True)
