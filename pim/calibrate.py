"""MEASURED CPU baseline of the cost model: how fast updlrm's own CPU kernel pools a workload here.

The planner keeps a table on the host when that is faster, and the PIM backend pools a whole batch
on the host when the cost model says so. Both compare against :class:`~updlrm.pim.cost_model.CpuModel`,
whose default rate is a reference figure for 8 tables of 2 M rows (every lookup a DRAM miss). A
real model differs: the Criteo Kaggle shape has many tables that fit in cache, and a power-law
trace hits the same rows again. On this project's 2-vCPU VM the kernel pooled B=4,096 Criteo
batches (pooling 20-80) at about 390 M lookups/s uniform and 470 M/s power-law, ten times the
reference rate, so a plan made with the reference rate puts tables on the DPUs that the host
pools faster. The rate is therefore measured on the model's own tables and a sample of its
requests, on the host that will run it.
"""
from __future__ import annotations

import itertools
import statistics
import time
from typing import Iterable, Sequence

from ..embedding_bag import embedding_bags
from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from .cost_model import DEFAULT_CPU_REF_DIM, CpuModel

#: Batches of a sample the rate is measured on (each is timed ``repeats`` times).
MEASURE_BATCHES = 4


def measure_cpu_rate(tables: Sequence[EmbeddingTable], batches: Iterable[SparseBatch], *,
                     max_batches: int = MEASURE_BATCHES, repeats: int = 3, threads: int | None = None,
                     ref_dim: int = DEFAULT_CPU_REF_DIM) -> float:
    """MEASURED lookups per second of updlrm's CPU kernel over the first ``max_batches`` of
    ``batches``, in the cost model's units (a lookup of a ``dim``-wide table counts
    ``dim / ref_dim``): the ``lookups_per_s`` of a :class:`~updlrm.pim.cost_model.CpuModel`.

    Each batch is validated first and pooled once untimed; the rate is the units of all the
    batches over the median time of ``repeats`` passes over them. Give distinct batches that
    together read more than the caches hold, as real requests do: one small batch timed again
    and again finds its rows in cache.
    """
    sample = list(itertools.islice(batches, max_batches))
    if not sample:
        raise InvalidInputError("measuring the CPU rate needs at least one batch")
    if repeats < 1:
        raise InvalidInputError(f"repeats must be >= 1, got {repeats}")
    model, units = CpuModel(ref_dim=ref_dim), 0.0
    for batch in sample:
        batch.validate(tables)
        units += model.batch_units(batch, tables)
        embedding_bags(tables, batch, threads=threads)
    if units == 0:
        raise InvalidInputError("the sample batches have no lookups")
    passes = []
    for _ in range(repeats):
        start = time.perf_counter()
        for batch in sample:
            embedding_bags(tables, batch, threads=threads)
        passes.append(time.perf_counter() - start)
    return units / statistics.median(passes)

