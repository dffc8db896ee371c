"""Turning a model's own feeds (ORT-style ``{input name: array}``) into a :class:`SparseBatch`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch

if TYPE_CHECKING:
    from .model import ImportedBag, ImportedModel


def _take(arrays: Mapping[str, np.ndarray], name: str, row: int | None, ndim: int, what: str,
          table: str) -> np.ndarray:
    """Input ``name`` (row ``row`` of it when stacked) as an array of ``ndim`` dimensions."""
    if name not in arrays:
        raise InvalidInputError(f"missing input {name!r} ({what} of table {table!r})")
    arr = arrays[name]
    if row is not None:
        if arr.ndim != 2:
            raise InvalidInputError(
                f"input {name!r} ({what} of table {table!r}) must be stacked 2-D [tables, n], "
                f"got shape {arr.shape}")
        if not 0 <= row < arr.shape[0]:
            raise InvalidInputError(
                f"input {name!r} ({what} of table {table!r}) has {arr.shape[0]} rows, the model reads row {row}")
        arr = arr[row]
    if arr.ndim != ndim:
        raise InvalidInputError(
            f"input {name!r} ({what} of table {table!r}) must be {ndim}-D, got shape {arr.shape}")
    kind = arr.dtype.kind
    if what == "weights":
        if kind != "f":
            raise InvalidInputError(f"input {name!r} (weights of table {table!r}) must be float, got {arr.dtype}")
    elif kind not in "iu":
        raise InvalidInputError(f"input {name!r} ({what} of table {table!r}) must be integer, got {arr.dtype}")
    return arr


def _stacked_batch(bags: "list[ImportedBag]", arrays: Mapping[str, np.ndarray]) -> SparseBatch | None:
    """The batch in a few whole-array steps when bag ``t`` reads row ``t`` of one stacked
    ``[T, n]`` indices input and row ``t`` of one stacked offsets input, unweighted, both int32
    or both int64 (the reference DLRM's ``lS_i`` / ``lS_o``); else None, and the bag-by-bag path
    takes (or words the problem with) the feeds. A Python step per table costs microseconds a
    batch that small batches feel."""
    first = bags[0].source
    for t, bag in enumerate(bags):
        src = bag.source
        if (src.indices_row != t or src.offsets_row != t or src.fixed or src.weights is not None
                or src.indices != first.indices or src.offsets != first.offsets
                or src.include_last_offset != first.include_last_offset):
            return None
    idx, off = arrays.get(first.indices), arrays.get(first.offsets)
    n_tables = len(bags)
    if (idx is None or off is None or idx.ndim != 2 or off.ndim != 2 or idx.dtype != off.dtype
            or idx.dtype not in (np.int32, np.int64) or min(idx.shape[0], off.shape[0]) < n_tables):
        return None
    idx = np.ascontiguousarray(idx[:n_tables])
    if first.include_last_offset:
        ends = np.ascontiguousarray(off[:n_tables])
    else:
        ends = np.empty((n_tables, off.shape[1] + 1), off.dtype)
        ends[:, :-1] = off[:n_tables]
        ends[:, -1] = idx.shape[1]
    return SparseBatch(list(idx), list(ends))


def sparse_batch_from_feeds(model: "ImportedModel", feeds: Mapping[str, np.ndarray]) -> SparseBatch:
    """One entry per bag of ``model``, in bag order; offsets normalised to ``B + 1`` entries."""
    bags = model.bags
    arrays = {name: np.asarray(value) for name, value in feeds.items()}  # stacked inputs: once
    stacked = _stacked_batch(bags, arrays) if bags else None
    if stacked is not None:
        return stacked
    if bags and all(b.source.fixed for b in bags):
        fixed = [_take(arrays, b.source.indices, b.source.indices_row, 2, "indices", b.table.name) for b in bags]
        weights = [None if b.source.weights is None else
                   _take(arrays, b.source.weights, b.source.weights_row, 2, "weights", b.table.name)
                   for b in bags]
        return SparseBatch.from_fixed(fixed, weights if any(w is not None for w in weights) else None)
    indices, offsets, weights = [], [], []
    for b in bags:
        src, name = b.source, b.table.name
        if src.fixed:
            bags2d = _take(arrays, src.indices, src.indices_row, 2, "indices", name)
            n, length = bags2d.shape
            idx = bags2d.reshape(-1)
            off = np.arange(0, n * length + 1, length, dtype=idx.dtype) if length else np.zeros(n + 1, idx.dtype)
            w = None if src.weights is None else _take(arrays, src.weights, src.weights_row, 2, "weights", name).reshape(-1)
        else:
            idx = _take(arrays, src.indices, src.indices_row, 1, "indices", name)
            off = _take(arrays, src.offsets, src.offsets_row, 1, "offsets", name)
            if not src.include_last_offset:
                ends = np.empty(off.size + 1, off.dtype)
                ends[:-1] = off
                ends[-1] = idx.size
                off = ends
            w = None if src.weights is None else _take(arrays, src.weights, src.weights_row, 1, "weights", name)
        indices.append(idx)
        offsets.append(off)
        weights.append(w)
    return SparseBatch.from_jagged(indices, offsets, weights, include_last_offset=True)
