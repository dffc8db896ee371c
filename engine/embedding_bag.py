"""Embedding-bag pooling on the CPU: the Python face of the Cython/C kernel.

:class:`PreparedTables` pools every table of a :class:`~updlrm.sparse.SparseBatch` in one call
(work items of all tables shared by the calling thread and helper threads, FBGEMM-TBE style);
:func:`embedding_bags` does the same for tables given per call; :func:`embedding_bag` is the
single-table convenience with ``torch.nn.functional.embedding_bag``'s argument order. Semantics match
PyTorch: sum, mean or max over each bag, computed in float32 (float16 tables are widened),
per-sample weights multiply rows before pooling, and an empty bag gives zeros in every mode.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Sequence

import numpy as np

from . import _embedding_bag as _kernel
from .sparse import SparseBatch, tables_token
from .tables import EmbeddingTable, Pooling

#: Pooling mode numbers shared with the C kernel (``enum ebag_mode`` in kernels/embedding_bag.h).
MODES = {Pooling.SUM: 0, Pooling.MEAN: 1, Pooling.MAX: 2}

#: Batches with fewer lookups (all tables together) run on the calling thread: below this,
#: handing items to helper threads costs more than the second core saves
#: (benchmarks/bench_kernel.py --overhead on the 2-vCPU dev VM: with 8 cached tables the
#: helpers win from about 2k lookups; at 512 the calling thread alone is faster).
SERIAL_BELOW_LOOKUPS = 2048

#: Work items (a range of one table's bags) hold about this many lookups: small enough that the
#: threads stay balanced and a helper descheduled on a shared VM holds up little work (~40 us),
#: big enough to amortise claiming an item and the item's prefetch warm-up (4096 beat 1024 by
#: 1-7% at B = 64..4096, pooling 1 and 20-80, in-process A/B on the 2-vCPU dev VM; 256 lost 5%).
ITEM_LOOKUPS = 4096


def default_threads() -> int:
    """Threads the kernel uses by default: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0))


#: Per thread, the buffer of the last outputs :func:`allocate_outputs` made.
_last_outputs = threading.local()


def _output_buffer(floats: int) -> np.ndarray:
    """A float32 buffer of ``floats`` entries that starts on a 64-byte cache line (large
    NumPy allocations are only 16-byte aligned): the last one this thread handed out when every
    view of it has been dropped (the caller is done with the previous batch), else a new one.
    Reusing it saves a fresh allocation's cold cache lines (5% of a B=1024 batch at pooling
    20-80 here), as torch's outputs, freed and reallocated at once, come back cache-hot."""
    raw = getattr(_last_outputs, "raw", None)
    # references: this frame's, the thread-local's and getrefcount's argument: no views left
    # (views of views keep the first array as their base, so counting raw's covers them all)
    if raw is None or raw.size < floats + 16 or sys.getrefcount(raw) > 3:
        raw = _last_outputs.raw = np.empty(floats + 16, dtype=np.float32)
        _last_outputs.skip = (-raw.ctypes.data % 64) // 4
    return raw[_last_outputs.skip:_last_outputs.skip + floats]


def allocate_outputs(batch_size: int, dims: Sequence[int]) -> list[np.ndarray]:
    """One C-contiguous float32 ``[batch_size, dim]`` array per table, views into one buffer.

    The buffer starts on a 64-byte cache line, so 64-column output rows do not straddle lines.
    It is the previous call's buffer (on this thread) when none of that call's arrays is alive
    any more.
    """
    total = batch_size * int(sum(dims))
    buffer = _output_buffer(total)
    if dims and all(dim == dims[0] for dim in dims):
        return list(buffer.reshape(len(dims), batch_size, dims[0]))  # one reshape, not one a table
    outs, start = [], 0
    for dim in dims:
        outs.append(buffer[start:start + batch_size * dim].reshape(batch_size, dim))
        start += batch_size * dim
    return outs


class PreparedTables:
    """Tables set up once for pooling many batches: the weights, pooling modes, output widths
    and validation token every call needs. Working them out per call cost about 4 us of Python
    for 8 tables (a B = 1, one-lookup call took 8.9 us, now 5). A backend keeps one;
    :func:`embedding_bags` makes one per call."""

    def __init__(self, tables: Sequence[EmbeddingTable]) -> None:
        self.tables = list(tables)
        self._weights = [t.weight for t in self.tables]
        self._modes = np.array([MODES[t.pooling] for t in self.tables], dtype=np.int32)
        self._dims = [t.dim for t in self.tables]
        self._token = tables_token(self.tables)

    def pool(
        self,
        batch: SparseBatch,
        out: list[np.ndarray] | None = None,
        threads: int | None = None,
    ) -> list[np.ndarray]:
        """Pool every table's bags of ``batch``; one float32 ``[B, dim_t]`` array per table.

        ``batch`` is validated against the tables unless it already was
        (``SparseBatch.validate``). ``out`` may supply the output arrays (e.g. from
        :func:`allocate_outputs`) to reuse them. ``threads`` defaults to :func:`default_threads`.
        """
        if batch.validated_token != self._token:
            batch.validate(self.tables)
        if out is None:
            out = allocate_outputs(batch.batch_size, self._dims)
        _kernel.pool(
            self._weights,
            list(batch.indices),
            list(batch.offsets),
            list(batch.weights),
            self._modes,
            out,
            default_threads() if threads is None else int(threads),
            SERIAL_BELOW_LOOKUPS,
            ITEM_LOOKUPS,
        )
        return out


def embedding_bags(
    tables: Sequence[EmbeddingTable],
    batch: SparseBatch,
    out: list[np.ndarray] | None = None,
    threads: int | None = None,
) -> list[np.ndarray]:
    """Pool every table's bags of ``batch`` in one call: :meth:`PreparedTables.pool` over
    ``tables`` (keep a :class:`PreparedTables` to pool many batches)."""
    return PreparedTables(tables).pool(batch, out, threads)


def embedding_bag(
    weight: np.ndarray,
    indices: Any,
    offsets: Any,
    weights: Any | None = None,
    mode: str | Pooling = "sum",
    include_last_offset: bool = False,
    threads: int | None = None,
) -> np.ndarray:
    """Pool one table: ``weight[rows, dim]`` (float32/float16) over bags given as flat
    ``indices`` plus ``offsets`` (EmbeddingBag convention). Returns float32 ``[B, dim]``."""
    table = EmbeddingTable("weight", np.asarray(weight), pooling=Pooling(mode), weighted=weights is not None)
    batch = SparseBatch.from_jagged(
        [indices], [offsets], None if weights is None else [weights], include_last_offset=include_last_offset
    )
    return embedding_bags([table], batch, threads=threads)[0]
