"""Quality metrics for scores against labels."""
from __future__ import annotations

import numpy as np

from .errors import InvalidInputError


def _as_column(values, what: str) -> np.ndarray:
    """``values`` as 1-D: shape ``(N,)`` or ``(N, 1)`` (a model's ``[B, 1]`` output)."""
    arr = np.asarray(values)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise InvalidInputError(f"{what} must have shape (N,) or (N, 1), got {arr.shape}")
    return arr


def roc_auc(labels, scores) -> float:
    """Exact area under the ROC curve, as a float64.

    Computed as the Mann-Whitney U statistic over ranks, tied scores sharing their average rank
    (so a tie between a positive and a negative counts one half). ``labels`` hold 0/1 (or
    False/True); ``scores`` any finite real values, higher meaning more likely positive.
    Raises :class:`~updlrm.errors.InvalidInputError` on a length mismatch, a label other than
    0/1, a NaN or infinite score, or labels of one class only (the AUC is then undefined).
    """
    y = _as_column(labels, "labels")
    s = _as_column(scores, "scores")
    if y.shape != s.shape:
        raise InvalidInputError(f"labels have {y.shape[0]} entries, scores {s.shape[0]}")
    if s.dtype.kind not in "fiub":
        raise InvalidInputError(f"scores must be numbers, got dtype {s.dtype}")
    s = s.astype(np.float64)
    bad = ~np.isfinite(s)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(f"scores hold {int(bad.sum())} NaN/inf value(s), first {s[first]} at {first}")
    if y.dtype.kind not in "fiub":
        raise InvalidInputError(f"labels must be 0/1, got dtype {y.dtype}")
    positive = y == 1
    odd = ~(positive | (y == 0))
    if odd.any():
        first = int(np.flatnonzero(odd)[0])
        raise InvalidInputError(f"labels must be 0 or 1, got {y[first]!r} at {first}")
    n_pos = int(positive.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        raise InvalidInputError(f"labels hold one class only ({n_pos} positive, {n_neg} negative): "
                                "the AUC is undefined")
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    # Tie groups in sorted order; a group spanning 1-based ranks first..last has average rank
    # (first + last) / 2, so twice the rank is an integer and the rank sum stays exact.
    starts = np.flatnonzero(np.r_[True, sorted_s[1:] != sorted_s[:-1]])
    ends = np.r_[starts[1:], s.size]
    twice_rank = np.repeat(starts + 1 + ends, ends - starts)
    twice_rank_sum = int(twice_rank[positive[order]].sum())
    return (twice_rank_sum - n_pos * (n_pos + 1)) / (2.0 * n_pos * n_neg)
