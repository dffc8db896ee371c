"""The sparse half of a request: per-table bags of row indices, in EmbeddingBag layout.

A :class:`SparseBatch` holds, for every table, a flat 1-D ``indices`` array (int32 or int64),
``offsets`` normalised to ``B + 1`` entries (bag ``b`` is ``indices[offsets[b]:offsets[b+1]]``,
same dtype as ``indices``) and optional float32 per-sample ``weights`` (one per index).

Conversions are lossless (small integer types widen to int32, uint32 to int64, float16 weights
to float32). The one documented rounding: float64 weights become float32, the precision the
kernels pool in. Anything else that does not fit (floats or bools as indices, uint64, 2-D
arrays, ...) raises :class:`~updlrm.errors.InvalidInputError` naming the table.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence

import numpy as np

from . import _embedding_bag as _kernel
from .errors import InvalidInputError

if TYPE_CHECKING:
    from .tables import EmbeddingTable

_INDEX_DTYPES = (np.dtype(np.int32), np.dtype(np.int64))
_INT32_MAX = np.iinfo(np.int32).max


def _where(table: int, name: str | None = None) -> str:
    return f"table {name!r} (#{table})" if name is not None else f"table #{table}"


def _as_index_array(values: Any, table: int, what: str) -> np.ndarray:
    """1-D int32/int64 view (or lossless widening copy) of ``values``."""
    if type(values) is np.ndarray and values.dtype in _INDEX_DTYPES and values.ndim == 1 \
            and values.flags.c_contiguous:
        return values  # already canonical: the common case, without a NumPy call
    arr = np.asarray(values)
    if arr.size == 0 and not isinstance(values, np.ndarray):
        arr = arr.astype(np.int64)  # np.asarray([]) is float64; an empty list means "no ids"
    if arr.ndim != 1:
        raise InvalidInputError(f"{_where(table)}: {what} must be 1-D, got shape {arr.shape}")
    kind, size = arr.dtype.kind, arr.dtype.itemsize
    if kind == "i" or (kind == "u" and size <= 4):
        # uint32 needs int64 to keep its top half; everything else fits the same-or-next width.
        wide = size > 4 or (kind == "u" and size == 4)
        return np.ascontiguousarray(arr, dtype=np.int64 if wide else np.int32)
    raise InvalidInputError(
        f"{_where(table)}: {what} must be int32 or int64 (or a smaller integer type), got {arr.dtype}"
    )


def _as_weight_array(values: Any, table: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InvalidInputError(f"{_where(table)}: per-sample weights must be 1-D, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise InvalidInputError(f"{_where(table)}: per-sample weights must be floating point, got {arr.dtype}")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _unify_dtypes(indices: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Give offsets the dtype of indices without losing a value (widen indices if needed)."""
    if indices.dtype == offsets.dtype:
        return indices, offsets
    if offsets.dtype == np.int32:
        return indices, offsets.astype(np.int64)
    # int32 indices with int64 offsets: narrow the offsets only if every value fits.
    if offsets.size == 0 or (offsets.min() >= 0 and offsets.max() <= _INT32_MAX):
        return indices, offsets.astype(np.int32)
    return indices.astype(np.int64), offsets


def _per_table(values: Any, what: str) -> list:
    """Split a per-table argument: a list/tuple (one entry per table) or a stacked 2-D array."""
    if isinstance(values, np.ndarray):
        if values.ndim != 2:
            raise InvalidInputError(
                f"{what}: pass one 1-D array per table (a list) or a stacked 2-D [tables, n] array, "
                f"got an array of shape {values.shape}"
            )
        return list(values)
    if isinstance(values, (list, tuple)):
        return list(values)
    raise InvalidInputError(f"{what}: expected a list with one entry per table, got {type(values).__name__}")


class SparseBatch:
    """Per-table bags for one batch of ``B`` samples (see the module docstring for the layout).

    Build one with :meth:`from_jagged` or :meth:`from_fixed`; the constructor takes arrays
    already in canonical form (``B + 1`` offsets of the indices' dtype).
    """

    __slots__ = ("indices", "offsets", "weights", "_validated_for")

    def __init__(
        self,
        indices: Sequence[np.ndarray],
        offsets: Sequence[np.ndarray],
        weights: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        if weights is None:
            weights = [None] * len(indices)
        if not (len(indices) == len(offsets) == len(weights)):
            raise InvalidInputError(
                f"indices, offsets and weights must have one entry per table, got "
                f"{len(indices)}, {len(offsets)} and {len(weights)}"
            )
        self.indices: tuple[np.ndarray, ...] = tuple(indices)
        self.offsets: tuple[np.ndarray, ...] = tuple(offsets)
        self.weights: tuple[np.ndarray | None, ...] = tuple(weights)
        self._validated_for: tuple | None = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_jagged(
        cls,
        indices: Sequence[Any] | np.ndarray,
        offsets: Sequence[Any] | np.ndarray,
        weights: Sequence[Any] | np.ndarray | None = None,
        include_last_offset: bool = False,
    ) -> "SparseBatch":
        """Bags given as flat indices plus offsets, one entry per table (or stacked ``[T, n]``).

        ``offsets`` follow ``torch.nn.EmbeddingBag``: ``B`` bag starts, or ``B + 1`` entries
        ending with ``len(indices)`` when ``include_last_offset`` is true. ``weights`` is None,
        or one entry per table (None for unweighted tables), or a stacked 2-D array.
        """
        idx_list = _per_table(indices, "indices")
        off_list = _per_table(offsets, "offsets")
        if len(idx_list) != len(off_list):
            raise InvalidInputError(
                f"got indices for {len(idx_list)} tables but offsets for {len(off_list)}"
            )
        w_list = [None] * len(idx_list) if weights is None else _per_table(weights, "weights")
        if len(w_list) != len(idx_list):
            raise InvalidInputError(f"got weights for {len(w_list)} tables but indices for {len(idx_list)}")
        out_idx, out_off, out_w = [], [], []
        for t, (idx, off, w) in enumerate(zip(idx_list, off_list, w_list)):
            idx = _as_index_array(idx, t, "indices")
            off = _as_index_array(off, t, "offsets")
            if not include_last_offset:
                off = np.concatenate([off, np.array([idx.size], dtype=off.dtype)])
            elif off.size == 0:
                raise InvalidInputError(
                    f"{_where(t)}: include_last_offset=True needs at least one offset (the end)"
                )
            idx, off = _unify_dtypes(idx, off)
            out_idx.append(idx)
            out_off.append(off)
            out_w.append(None if w is None else _as_weight_array(w, t))
        return cls(out_idx, out_off, out_w)

    @classmethod
    def from_fixed(
        cls,
        bags: Sequence[Any] | np.ndarray,
        weights: Sequence[Any] | np.ndarray | None = None,
    ) -> "SparseBatch":
        """Fixed-size bags: one ``[B, L]`` integer array per table (or stacked ``[T, B, L]``).

        C-contiguous inputs are flattened without a copy. ``weights``: None, or one ``[B, L]``
        float array per table (None for unweighted tables).
        """
        bag_list = list(bags)
        w_list = [None] * len(bag_list) if weights is None else list(weights)
        if len(w_list) != len(bag_list):
            raise InvalidInputError(f"got weights for {len(w_list)} tables but bags for {len(bag_list)}")
        out_idx, out_off, out_w = [], [], []
        for t, (b2, w) in enumerate(zip(bag_list, w_list)):
            b2 = np.asarray(b2)
            if b2.ndim != 2:
                raise InvalidInputError(f"{_where(t)}: fixed-size bags must be 2-D [B, L], got shape {b2.shape}")
            n_bags, length = b2.shape
            idx = _as_index_array(b2.reshape(-1), t, "indices")
            out_idx.append(idx)
            out_off.append(np.arange(0, n_bags * length + 1, max(length, 1), dtype=idx.dtype)
                           if length else np.zeros(n_bags + 1, dtype=idx.dtype))
            if w is None:
                out_w.append(None)
                continue
            w = np.asarray(w)
            if w.shape != b2.shape:
                raise InvalidInputError(
                    f"{_where(t)}: weights shape {w.shape} differs from the bags' shape {b2.shape}"
                )
            out_w.append(_as_weight_array(w.reshape(-1), t))
        return cls(out_idx, out_off, out_w)

    # ------------------------------------------------------------------ shape
    @property
    def num_tables(self) -> int:
        """Number of tables this batch has bags for."""
        return len(self.indices)

    @property
    def batch_size(self) -> int:
        """Number of samples ``B`` (bags per table); 0 for a batch without tables."""
        return len(self.offsets[0]) - 1 if self.offsets else 0

    @property
    def num_lookups(self) -> int:
        """Total number of row lookups over all tables."""
        return int(sum(i.size for i in self.indices))

    def slice(self, start: int, stop: int) -> "SparseBatch":
        """Samples ``start:stop``; indices and weights are views, offsets rebased to 0."""
        indices, offsets, weights = [], [], []
        for t in range(self.num_tables):
            off = self.offsets[t]
            lo, hi = int(off[start]), int(off[stop])
            indices.append(self.indices[t][lo:hi])
            offsets.append(off[start:stop + 1] - off[start])
            w = self.weights[t]
            weights.append(None if w is None else w[lo:hi])
        return SparseBatch.from_jagged(indices, offsets, weights, include_last_offset=True)

    def __repr__(self) -> str:
        return f"SparseBatch(num_tables={self.num_tables}, batch_size={self.batch_size}, lookups={self.num_lookups})"

    # ------------------------------------------------------------------ validation
    def validate(self, tables: Sequence["EmbeddingTable"]) -> None:
        """Check the batch against ``tables``; raise :class:`InvalidInputError` on the first problem.

        Checks table count, dtypes and shapes, equal batch size across tables, offsets (start at
        0, non-decreasing, end at ``len(indices)``), weights present exactly for weighted tables
        and as long as the indices, and every index in ``[0, rows)``. The message names the
        table (name and position), the bag and the offending value.
        """
        if len(tables) != self.num_tables:
            raise InvalidInputError(f"batch has bags for {self.num_tables} tables, the model has {len(tables)}")
        token = tables_token(tables)
        found = _kernel.check_bags(self.indices, self.offsets, self.weights, token, self.batch_size,
                                   _INDEX_DTYPES)
        if found is not None:
            t, problem, position = found
            raise InvalidInputError(_explain(problem, position, tables[t], t, self))
        self._validated_for = token

    def is_validated_for(self, tables: Sequence["EmbeddingTable"]) -> bool:
        """Whether :meth:`validate` already passed for exactly these tables."""
        return self._validated_for is not None and self._validated_for == tables_token(tables)

    @property
    def validated_token(self) -> tuple | None:
        """The :func:`tables_token` of the tables :meth:`validate` last passed for, or None."""
        return self._validated_for


def tables_token(tables: Sequence["EmbeddingTable"]) -> tuple:
    """What validating a batch depends on, per table: ``(rows, weighted)``.

    Equal tokens mean a batch valid for one set of tables is valid for the other, so a
    backend's relocated copy of a table (same rows, new memory) needs no second validation.
    """
    return tuple((t.rows, t.weighted) for t in tables)


class _Found(NamedTuple):
    """A problem's table: its arrays in the batch, the offending position, what it must match."""

    indices: Any
    offsets: Any
    weights: Any
    pos: int
    batch_size: int
    rows: int


#: What each problem ``_kernel.check_bags`` reports means, worded from the table's arrays.
_PROBLEM_TEXT: dict[str, Callable[[_Found], str]] = {
    "indices_type": lambda f: f"indices must be a 1-D int32 or int64 array, got {_describe(f.indices)}",
    "indices_layout": lambda f: "indices must be contiguous",
    "offsets_type": lambda f: f"offsets must be a 1-D int32 or int64 array, got {_describe(f.offsets)}",
    "offsets_layout": lambda f: "offsets must be contiguous",
    "dtype_mismatch": lambda f: f"offsets dtype {f.offsets.dtype} differs from indices dtype {f.indices.dtype}",
    "no_offsets": lambda f: "offsets are empty (need B + 1 entries)",
    "batch_size": lambda f: (f"has {f.offsets.size - 1} bags, table #0 has {f.batch_size} (every table "
                             "needs the same batch size)"),
    "first_offset": lambda f: f"bag 0 starts at offset {int(f.offsets[0])} (offsets[0] must be 0)",
    "offset_beyond": lambda f: (f"bag {f.pos} starts at offset {int(f.offsets[f.pos])} (position {f.pos}), "
                                f"beyond len(indices) = {f.indices.size}"),
    "offset_decrease": lambda f: (f"offsets decrease at position {f.pos + 1} ({int(f.offsets[f.pos])} -> "
                                  f"{int(f.offsets[f.pos + 1])}), so bag {f.pos} would have negative length"),
    "last_offset": lambda f: (f"last offset (position {f.offsets.size - 1}) is {int(f.offsets[-1])}, "
                              f"must equal len(indices) = {f.indices.size}"),
    "weights_missing": lambda f: "table is weighted but the batch has no per-sample weights for it",
    "weights_type": lambda f: ("per-sample weights must be a contiguous 1-D float32 array, got "
                               f"{_describe(f.weights)}"),
    "weights_count": lambda f: f"{f.weights.size} per-sample weights for {f.indices.size} indices",
    "weights_unexpected": lambda f: "table is not weighted but the batch carries per-sample weights for it",
    "index_range": lambda f: (f"bag {int(np.searchsorted(f.offsets, f.pos, side='right')) - 1} has index "
                              f"{int(f.indices[f.pos])} (position {f.pos} in indices), out of range "
                              f"[0, {f.rows})"),
}


def _explain(problem: str, pos: int, table: "EmbeddingTable", t: int, batch: SparseBatch) -> str:
    """The message for a problem ``_kernel.check_bags`` found in table ``t`` of ``batch``."""
    found = _Found(batch.indices[t], batch.offsets[t], batch.weights[t], pos, batch.batch_size, table.rows)
    return f"{_where(t, table.name)}: {_PROBLEM_TEXT[problem](found)}"


def _describe(arr: Any) -> str:
    if isinstance(arr, np.ndarray):
        return f"{arr.dtype} array of shape {arr.shape}"
    return type(arr).__name__
