"""MEASURED CPU baseline of the cost model: how fast updlrm's own CPU kernel pools a workload here.

The planner keeps a table on the host when that is faster, and the PIM backend pools a whole batch
on the host when the cost model says so. Both compare against :class:`~updlrm.pim.cost_model.CpuModel`,
whose default rate is a reference figure for 8 tables of 2 M rows (every lookup a DRAM miss). A
real model differs: the Criteo Kaggle shape has many tables that fit in cache, and a power-law
trace hits the same rows again. On this project's 2-vCPU VM the kernel pooled B=4,096 Criteo
batches (pooling 20-80, the real cardinalities) at 340-390 M lookups/s uniform and 455-470 M/s
power-law, ten times the reference rate, so a plan made with the reference rate puts tables on
the DPUs that the host pools faster. The rates are therefore measured on the model's own tables
and a sample of its requests, on the host that will run it: the whole batch's, and each table's
share of it (a 10 M-row table whose lookups miss the caches costs several times what a cached
one does).
"""
from __future__ import annotations

import dataclasses
import itertools
import statistics
from time import perf_counter
from typing import Iterable, Sequence

import numpy as np

from ..embedding_bag import PreparedTables
from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from .cost_model import DEFAULT_CPU_REF_DIM, CpuModel, CpuRates
from .partitioner import PlannerConfig
from .profile import AccessProfile

#: Batches of a sample the rates are measured on (each is timed ``repeats`` times).
MEASURE_BATCHES = 4


def measure_cpu_rates(tables: Sequence[EmbeddingTable], batches: Iterable[SparseBatch], *,
                      max_batches: int = MEASURE_BATCHES, repeats: int = 3, threads: int | None = None,
                      ref_dim: int = DEFAULT_CPU_REF_DIM, source: str = "MEASURED here on a sample") -> CpuRates:
    """Time updlrm's CPU kernel on the first ``max_batches`` of ``batches``: all tables in one
    call, as a session pools them, and each table alone. The overall rate is the units of all
    the batches over the median time of ``repeats`` passes; each table's rate is its lookups over
    its share of that time, the shares in proportion to its own median pass (so the tables'
    modelled times add up to the measured whole).

    ``source`` says in reports what the rates were measured on. Each batch is validated first
    and pooled once untimed. Give distinct batches that together read more than the caches hold,
    as real requests do: one small batch timed again and again finds its rows in cache.
    """
    sample = list(itertools.islice(batches, max_batches))
    if not sample:
        raise InvalidInputError("measuring the CPU rate needs at least one batch")
    if repeats < 1:
        raise InvalidInputError(f"repeats must be >= 1, got {repeats}")
    model = CpuModel(ref_dim=ref_dim)
    units = 0.0
    for batch in sample:
        batch.validate(tables)
        units += model.batch_units(batch, tables)
    if units == 0:
        raise InvalidInputError("the sample batches have no lookups")
    single = [[SparseBatch.from_jagged([b.indices[t]], [b.offsets[t]], [b.weights[t]], include_last_offset=True)
               for b in sample] for t in range(len(tables))]
    for t, table in enumerate(tables):
        for sub in single[t]:
            sub.validate([table])

    def pass_time(tabs: Sequence[EmbeddingTable], work: Sequence[SparseBatch]) -> float:
        prepared = PreparedTables(tabs)  # as a CPU backend pools them
        start = perf_counter()
        for batch in work:
            prepared.pool(batch, threads=threads)
        return perf_counter() - start

    pass_time(tables, sample)                       # warm-up
    whole = statistics.median(pass_time(tables, sample) for _ in range(repeats))
    alone = [statistics.median(pass_time([table], single[t]) for _ in range(repeats))
             for t, table in enumerate(tables)]
    lookups = [sum(b.indices[t].size for b in sample) for t in range(len(tables))]
    scale = whole / sum(alone)
    table_rates = {table.name: lookups[t] / (alone[t] * scale)
                   for t, table in enumerate(tables) if lookups[t] and alone[t] > 0}
    return CpuRates(units / whole, table_rates, source)


def measure_uniform_cpu_rates(tables: Sequence[EmbeddingTable], batch_size: int, pooling: float = 1.0, *,
                              seed: int = 0, threads: int | None = None) -> CpuRates:
    """:func:`measure_cpu_rates` on synthetic batches of ``batch_size`` bags of about ``pooling``
    uniformly drawn rows: the planner's own assumption when it has no sample of requests."""
    from ..datasets.synthetic import random_batch

    rng = np.random.default_rng(seed)
    lookups = max(1, round(pooling))
    batches = [random_batch(tables, batch_size, pooling=lookups, rng=rng, index_dtype=np.int32)
               for _ in range(MEASURE_BATCHES)]
    return measure_cpu_rates(tables, batches, threads=threads,
                             source="MEASURED here on uniform synthetic batches (no request sample)")


def with_cpu_rates(cfg: PlannerConfig, tables: Sequence[EmbeddingTable],
                   profile: AccessProfile | None) -> PlannerConfig:
    """``cfg`` as it is when it or ``profile`` carries CPU rates, else with rates measured on
    uniform synthetic batches of its reference batch (:func:`measure_uniform_cpu_rates`), so
    that a plan made without a measured profile is not made against the reference figure."""
    if cfg.cpu_rates is not None or (profile is not None and profile.cpu_rates is not None):
        return cfg
    return dataclasses.replace(cfg, cpu_rates=measure_uniform_cpu_rates(tables, cfg.batch_size, cfg.pooling))
