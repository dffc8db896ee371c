"""Slow, obviously-correct NumPy twins of updlrm's kernels, for tests to compare against."""
from __future__ import annotations

import numpy as np


def reference_embedding_bag(
    weight: np.ndarray,
    indices: np.ndarray,
    offsets_bplus1: np.ndarray,
    weights: np.ndarray | None,
    mode: str,
) -> np.ndarray:
    """Pool bag ``b`` = ``indices[offsets[b]:offsets[b+1]]`` of ``weight`` one bag at a time.

    Rows are widened to float64, multiplied by their per-sample weight (if any) and reduced with
    sum, mean or max; an empty bag gives zeros. Returns float32 ``[B, dim]``.
    """
    table = np.asarray(weight, dtype=np.float64)
    n_bags = len(offsets_bplus1) - 1
    out = np.zeros((n_bags, table.shape[1]), dtype=np.float64)
    for b in range(n_bags):
        start, end = int(offsets_bplus1[b]), int(offsets_bplus1[b + 1])
        if start == end:
            continue
        rows = table[np.asarray(indices[start:end], dtype=np.int64)]
        if weights is not None:
            rows = rows * np.asarray(weights[start:end], dtype=np.float64)[:, None]
        if mode == "sum":
            out[b] = rows.sum(axis=0)
        elif mode == "mean":
            out[b] = rows.mean(axis=0)
        elif mode == "max":
            out[b] = rows.max(axis=0)
        else:
            raise ValueError(f"unknown mode {mode!r}")
    return out.astype(np.float32)
