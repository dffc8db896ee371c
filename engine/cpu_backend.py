"""The CPU embedding backend: tables on huge pages, bags pooled by the Cython/C kernel."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from .backend import BackendStats
from .embedding_bag import PreparedTables, default_threads
from .errors import UpdlrmError
from .hugepages import HugePagesPolicy, place_table
from .sparse import SparseBatch
from .tables import EmbeddingTable


class CpuBackend:
    """:class:`~updlrm.backend.EmbeddingBackend` that pools on this machine's cores.

    ``threads``: threads per lookup (the caller and helpers) (default: the CPUs this process may use).
    ``hugepages``: ``"auto"`` (default), ``True`` or ``False``; see :mod:`updlrm.hugepages`.
    """

    name = "cpu"

    def __init__(self, threads: int | None = None, hugepages: HugePagesPolicy = "auto") -> None:
        if hugepages not in (True, False, "auto"):
            raise ValueError(f"hugepages must be True, False or 'auto', got {hugepages!r}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = default_threads() if threads is None else int(threads)
        self.hugepages = hugepages
        self._prepared: PreparedTables | None = None
        self._stats = BackendStats(backend=self.name)

    def load(self, tables: Sequence[EmbeddingTable], *, profile: Any | None = None) -> None:
        """Take the tables, copying large ones onto huge pages as the policy says.

        ``profile`` (an access profile) is accepted for the protocol and not needed here.
        """
        start = time.perf_counter()
        placed = []
        for table in tables:
            weight = place_table(table.weight, self.hugepages)
            placed.append(table if weight is table.weight else dataclasses.replace(table, weight=weight))
        self._prepared = PreparedTables(placed)
        self._stats = BackendStats(
            backend=self.name,
            measured_s={"load": time.perf_counter() - start, "lookup": 0.0},
            extra={
                "threads": self.threads,
                "huge_page_copies": [new.name for new, old in zip(placed, tables) if new is not old],
            },
        )

    @property
    def tables(self) -> list[EmbeddingTable]:
        """The tables as loaded (huge-page copies where the policy made them)."""
        return self._loaded().tables

    def lookup(self, batch: SparseBatch) -> list[np.ndarray]:
        """Pool every table's bags: one float32 ``[B, dim_t]`` array per table.

        A batch not yet validated against these tables is validated first.
        """
        prepared = self._loaded()
        start = time.perf_counter()
        out = prepared.pool(batch, threads=self.threads)
        self._stats.measured_s["lookup"] += time.perf_counter() - start
        self._stats.batches += 1
        self._stats.lookups += batch.num_lookups
        return out

    def _loaded(self) -> PreparedTables:
        if self._prepared is None:
            raise UpdlrmError("CpuBackend: load() the tables before using them")
        return self._prepared

    def stats(self) -> BackendStats:
        """Measured seconds (``load``, ``lookup``), batches and lookups since :meth:`load`."""
        return dataclasses.replace(self._stats, measured_s=dict(self._stats.measured_s),
                                   extra=dict(self._stats.extra))
