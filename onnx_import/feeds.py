"""Turning a model's own feeds (ORT-style ``{input name: array}``) into a :class:`SparseBatch`."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch

if TYPE_CHECKING:
    from .model import ImportedModel


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


def sparse_batch_from_feeds(model: "ImportedModel", feeds: Mapping[str, np.ndarray]) -> SparseBatch:
    """One entry per bag of ``model``, in bag order; offsets normalised to ``B + 1`` entries."""
    bags = model.bags
    arrays = {name: np.asarray(value) for name, value in feeds.items()}  # stacked inputs: once
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
