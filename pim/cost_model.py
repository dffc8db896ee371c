"""Calibrated performance model of one embedding-bag batch on a UPMEM server (MODELLED times).

Per batch::

    T = T_scatter + T_h2d + T_launch + max_dpu(T_kernel) + T_d2h + T_reduce

* ``T_h2d`` / ``T_d2h``: one push per symbol, ``c_call + n_dpus * bytes_per_dpu / BW(size, ranks)``
  (the per-DPU length of a push is padded to the largest DPU's, so the *max* per-DPU bytes count).
* ``T_kernel`` per DPU: ``max(T_dma, T_issue, slowest tasklet)``: DMAs of one DPU are serialised
  (``alpha + beta * bytes`` cycles each); a tasklet issues at most one instruction every 11 cycles,
  so below 11 active tasklets the issue rate drops to ``active / 11`` per cycle; fp32 adds are
  soft-float (~71 instructions), int32 adds ~6.
* ``T_scatter`` / ``T_reduce``: host work (Cython scatter: per read routed — one per index and
  column slice of a table that is not whole — per index of a whole table copied to one tile, per
  partial sum created; C reduction per pulled byte); their rates are parameters, by default
  MEASURED on this project's 2-vCPU VM with the backend's own code (``benchmarks/bench_scatter.py``,
  ``benchmarks/eval_pim_e2e.py --calibrate-host``).

Every constant carries its published source (``shared/reference/upmem.md`` section and its
confidence tag: [V] read in a stored source, [S] secondary source, [R] recalled from the PrIM paper,
[D] derived). Everything this module returns is a model, never a measurement.

Work comes in as a :class:`BatchWork` (per-DPU counts), filled either from the emulator's counters
(:meth:`BatchWork.from_counters`) or analytically by the partitioner.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np

from updlrm.errors import InvalidInputError

ValueMode = Literal["fp32", "int32"]
Direction = Literal["to_dpu", "from_dpu"]

# ---- hardware (upmem.md §3) ---------------------------------------------------------------- #
FREQ_HZ = 350e6            # v1A DPU clock; DOC table "v1A 350 MHz" [V] (upmem.md §2.1, §3)
DPUS_PER_RANK = 64         # 8 chips x 8 DPUs; SDK25 dpu_types.h DPU_MAX_NR_CIS/…PER_CI [V] (§3)
MRAM_BYTES = 64 << 20      # MRAM per DPU; SDK20 dpu.lds "mram LENGTH = 64M" [V] (§3)
MAX_DMA_BYTES = 2048       # mram_read/mram_write size limit (8..2048, multiple of 8); SDK25 mram.h [V] (§2.3)
DMA_ALIGN = 8              # MRAM address and DMA size granularity; SDK25 mram.h [V] (§2.3)
REVOLVER_CYCLES = 11       # a thread dispatches once every 11 cycles -> >= 11 tasklets for 1 instr/cycle;
                           # uPIMulator main.go num_revolver_scheduling_cycles [V] (§3)

# ---- MRAM DMA latency, cycles = alpha + beta * bytes (upmem.md §4.2) ---------------------- #
DMA_ALPHA_READ = 77.0      # PrIM §3.2.1 via upmem-swap simulator/LATENCY_MODEL.md [S]/[R]
DMA_ALPHA_WRITE = 61.0     # same source [S]/[R]
DMA_BETA = 0.5             # cycles per byte; same source [S]/[R] (= 2 B/cycle theoretical max, §4.2 [S])

# ---- instruction counts ---------------------------------------------------------------------- #
# PrIM Fig. 4: INT32 ADD 58.56 MOPS at 350 MHz with >= 11 tasklets; the loop is 6 instructions
# per element (350/6 = 58.3) [R] + course notes [S] (upmem.md §4.2).
INSTR_PER_ADD_INT32 = 6.0
# PrIM Fig. 4: FLOAT ADD 4.91 MOPS (soft-float) [R] -> 350 / 4.91 = 71.3 instructions per element [D].
INSTR_PER_ADD_FP32 = FREQ_HZ / 4.91e6
# Loop / address / DMA-issue overhead per looked-up row: "~20-40 instr per index" [D] (upmem.md §4.3).
INSTR_PER_LOOKUP = 30.0
# Per output bag: loop, offsets, accumulator bookkeeping (not published; [D] same order as a lookup).
INSTR_PER_BAG = 40.0
# Zeroing the WRAM accumulator: one 8-byte store per 2 elements (8-B store = 1 cycle, §3 WRAM row) [D].
INSTR_PER_ZERO_ELEMENT = 0.5

# ---- host <-> DPU transfers (upmem.md §4.2, LIGHT results/UPMEM_1.txt [V]) ------------------- #
# 32 ranks / 2,048 DPUs, SDK 2024.2, dpu_push_xfer, GiB/s for 1 KiB ... 1 MiB per DPU.
LIGHT_NR_DPUS = 2048
LIGHT_SIZES = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], dtype=np.float64) * 1024
LIGHT_GIBPS = {
    "to_dpu": np.array([3.46, 5.01, 6.28, 8.41, 11.6, 13.7, 14.2, 17.8, 20.7, 22.6, 20.2]),
    "from_dpu": np.array([1.84, 2.78, 3.43, 4.13, 5.19, 5.89, 8.19, 10.2, 11.1, 11.0, 9.8]),
}
# PrIM Fig. 10: one rank (64 DPUs), 32 MB per DPU: CPU->DPU 6.68 GB/s [S]/[R], DPU->CPU 4.74 GB/s [R].
PRIM_RANK_GBPS = {"to_dpu": 6.68, "from_dpu": 4.74}
PRIM_RANK_BYTES_PER_DPU = 32e6
# Default launch cost: not published (upmem.md §4.2 "measure"); assumed ~ one small SDK-bypass
# command round trip on the LIGHT server (0.09 ms, results/direct_1.txt [V]).
DEFAULT_LAUNCH_S = 0.1e-3

# ---- host-side work: MEASURED on this project's 2-vCPU VM with the backend's own Cython code
# (benchmarks/bench_scatter.py: BatchScatter on two threads, plans for the Criteo Kaggle
# cardinalities uncapped and capped at 2 M and 50k rows, 2,560 DPUs, uniform and popularity with
# every table on the DPUs plus the planner's own hybrid popularity plans, B=4096, 20-80 power-law
# indices per bag, median of 9; least squares over the eight plans, each within 6%) ----------- #
DEFAULT_SCATTER_S_PER_READ = 4.43e-9      # route + job gathering of one read (index x column slice) of a routed table
DEFAULT_SCATTER_S_PER_PARTIAL = 3.92e-9   # per partial sum (sub-bag) of a routed table
DEFAULT_SCATTER_S_PER_HOST_ROW = 6.35e-9  # per index of a hybrid table routed to the host (cold row)
DEFAULT_COPY_S_PER_LOOKUP = 0.39e-9       # whole table: a replica's bag range copied (copy_count/copy_fill), per index
# C reduction of pulled partial sums (benchmarks/eval_pim_e2e.py --calibrate-host: 26 Criteo tables
# capped at 50k rows, 64 emulated DPUs, six plans, median; the emulator's pull is not included)
DEFAULT_REDUCE_BYTES_PER_S = 14.4e9
# CPU-only baseline: torch F.embedding_bag, 2 threads, dim 64, B=4096, L=32: 40 M lookups/s
# (reference/baselines.md headline table, measured on this project's 2-vCPU VM).
DEFAULT_CPU_LOOKUPS_PER_S = 40e6
DEFAULT_CPU_REF_DIM = 64


@dataclass(frozen=True)
class TransferModel:
    """Host<->DPU push time: ``c_call + n_dpus * size / BW(size, ranks)``.

    Calibrated from a table of whole-call bandwidths measured at ``ref_dpus`` DPUs (default:
    LIGHT, 32 ranks, SDK 2024.2). ``c_call`` is the zero-size intercept of the line through the two
    smallest points [D] (0.35 ms to the DPUs, 0.72 ms back); ``BW`` is what is left once it is taken
    out, interpolated in log(size) and held at the table's ends. With ``R`` ranks the aggregate is
    ``min(R * per_rank, 1) * BW``: the reference curve is taken as host-limited (32 ranks reach
    22.6 GiB/s, far below 32 x 6.68 GB/s, upmem.md §4.3) and ``per_rank`` is PrIM's one-rank figure
    (6.68 / 4.74 GB/s at 32 MB per DPU) as a share of it. ``c_call`` is taken as independent of
    the rank count (ranks are served by parallel host threads). Re-calibrate on a real server by
    passing its own measured tables.
    """

    sizes: tuple = tuple(LIGHT_SIZES)
    gibps: dict = field(default_factory=lambda: {d: tuple(v) for d, v in LIGHT_GIBPS.items()})
    ref_dpus: int = LIGHT_NR_DPUS
    rank_gbps: dict = field(default_factory=lambda: dict(PRIM_RANK_GBPS))
    rank_bytes_per_dpu: float = PRIM_RANK_BYTES_PER_DPU
    dpus_per_rank: int = DPUS_PER_RANK

    def _call_seconds(self, direction: Direction) -> np.ndarray:
        sizes = np.asarray(self.sizes, np.float64)
        return self.ref_dpus * sizes / (np.asarray(self.gibps[direction], np.float64) * 2.0**30)

    def call_cost(self, direction: Direction) -> float:
        """Fixed seconds of one push (``c_call``)."""
        t = self._call_seconds(direction)
        slope = (t[1] - t[0]) / (self.sizes[1] - self.sizes[0])
        return float(t[0] - slope * self.sizes[0])

    def _streaming(self, bytes_per_dpu: float, direction: Direction) -> float:
        sizes = np.asarray(self.sizes, np.float64)
        bw = self.ref_dpus * sizes / (self._call_seconds(direction) - self.call_cost(direction))
        size = float(np.clip(bytes_per_dpu, sizes[0], sizes[-1]))
        return float(np.interp(np.log(size), np.log(sizes), bw))

    def bandwidth(self, bytes_per_dpu: float, nr_ranks: int, direction: Direction) -> float:
        """Aggregate streaming bandwidth in bytes/s for a push of ``bytes_per_dpu`` per DPU."""
        rank_share = self.rank_gbps[direction] * 1e9 / self._streaming(self.rank_bytes_per_dpu, direction)
        return min(nr_ranks * rank_share, 1.0) * self._streaming(bytes_per_dpu, direction)

    def seconds(self, bytes_per_dpu: float, nr_dpus: int, direction: Direction) -> float:
        """Modelled seconds of one push moving ``bytes_per_dpu`` to/from each of ``nr_dpus``."""
        if bytes_per_dpu <= 0 or nr_dpus <= 0:
            return 0.0
        ranks = -(-nr_dpus // self.dpus_per_rank)
        return self.call_cost(direction) + nr_dpus * bytes_per_dpu / self.bandwidth(bytes_per_dpu, ranks, direction)


@dataclass(frozen=True)
class DpuModel:
    """One DPU's timing constants (cycles, instructions); defaults from upmem.md §3-§4."""

    freq_hz: float = FREQ_HZ
    nr_tasklets: int = 16
    dma_alpha_read: float = DMA_ALPHA_READ
    dma_alpha_write: float = DMA_ALPHA_WRITE
    dma_beta: float = DMA_BETA
    instr_per_lookup: float = INSTR_PER_LOOKUP
    instr_per_bag: float = INSTR_PER_BAG
    instr_per_zero_element: float = INSTR_PER_ZERO_ELEMENT
    instr_per_add: dict = field(default_factory=lambda: {"int32": INSTR_PER_ADD_INT32,
                                                         "fp32": INSTR_PER_ADD_FP32})

    def dma_cycles(self, nbytes: float | np.ndarray, write: bool = False) -> float | np.ndarray:
        """Cycles of DMA transfers of ``nbytes`` each (split into <= 2,048-byte calls)."""
        nbytes = np.asarray(nbytes, dtype=np.float64)
        padded = np.ceil(nbytes / DMA_ALIGN) * DMA_ALIGN
        calls = np.maximum(np.ceil(padded / MAX_DMA_BYTES), 1)
        alpha = self.dma_alpha_write if write else self.dma_alpha_read
        return calls * alpha + self.dma_beta * padded

    def mram_bandwidth(self, dma_bytes: int, write: bool = False) -> float:
        """Sustained bytes/s of back-to-back DMAs of ``dma_bytes`` (one DPU)."""
        return dma_bytes * self.freq_hz / float(self.dma_cycles(dma_bytes, write))

    def issue_rate(self, active_tasklets: np.ndarray | float) -> np.ndarray:
        """Instructions per cycle with ``active_tasklets`` runnable tasklets (revolver pipeline)."""
        return np.minimum(1.0, np.asarray(active_tasklets, dtype=np.float64) / REVOLVER_CYCLES)

    def add_throughput(self, mode: ValueMode, active_tasklets: int) -> float:
        """Element adds per second of one DPU (the PrIM arithmetic-throughput microbenchmark)."""
        return self.freq_hz * float(self.issue_rate(active_tasklets)) / self.instr_per_add[mode]


@dataclass
class BatchWork:
    """What one batch asks of each DPU (arrays of length ``nr_dpus``) and of the host.

    Fill it from the emulator (:meth:`from_counters`) or analytically (the partitioner).
    ``instructions`` may be given directly; otherwise it is derived from ``rows``, ``elements``
    and ``bags`` by :meth:`CostModel.instructions`. ``tasklet_*`` (``[nr_dpus, nr_tasklets]``),
    when known, add the slowest-tasklet bound.
    """

    dma_read_calls: np.ndarray
    dma_read_bytes: np.ndarray
    dma_write_calls: np.ndarray
    dma_write_bytes: np.ndarray
    rows: np.ndarray            # rows accumulated (lookups served) per DPU
    elements: np.ndarray        # element adds per DPU (rows x columns of each row slice)
    bags: np.ndarray            # output bags (partial sums written) per DPU
    push_bytes: np.ndarray      # host->DPU bytes per DPU for this batch (before padding)
    pull_bytes: np.ndarray      # DPU->host bytes per DPU
    push_calls: int = 1
    pull_calls: int = 1
    launches: int = 1
    host_routed_reads: int = 0  # reads the host routes one by one (per index and column slice; tables not whole)
    host_copy_lookups: int = 0  # indices of whole tables: their bags are copied to one tile as they are
    host_row_lookups: float = 0.0  # indices of hybrid tables routed to the host (their cold rows)
    host_partials: float = 0.0  # partial sums (sub-bags of kernel jobs) the scatter of routed tables creates
    host_reduce_bytes: float | None = None   # bytes the host reduces (default: sum of pull_bytes)
    cpu_lookup_units: float = 0.0  # lookups x (dim / ref_dim) done by the CPU for CPU-resident tables
    value_mode: ValueMode = "fp32"
    instructions: np.ndarray | None = None
    tasklet_instructions: np.ndarray | None = None
    tasklet_dma_cycles: np.ndarray | None = None
    # one record per host<->DPU call, when known (emulator): fields direction (0 to DPU,
    # 1 from DPU), bytes_per_dpu, nr_dpus; replaces push/pull_bytes x calls in the model.
    transfer_calls: np.ndarray | None = None

    @property
    def nr_dpus(self) -> int:
        return int(len(self.rows))

    @classmethod
    def zeros(cls, nr_dpus: int, value_mode: ValueMode = "fp32") -> "BatchWork":
        z = lambda: np.zeros(nr_dpus, dtype=np.float64)  # noqa: E731 - seven identical fields
        return cls(z(), z(), z(), z(), z(), z(), z(), z(), z(), value_mode=value_mode)

    @classmethod
    def from_counters(cls, dpu_counters: np.ndarray, *, rows: np.ndarray, elements: np.ndarray,
                      bags: np.ndarray, value_mode: ValueMode = "fp32", host_routed_reads: int = 0,
                      launches: int = 1, transfers: np.ndarray | None = None,
                      tasklet_counters: np.ndarray | None = None) -> "BatchWork":
        """Work of one batch from emulator counters (``DpuCounters.dpus`` of that batch alone,
        i.e. the difference of two snapshots, or after ``reset_counters()``).

        ``rows``/``elements``/``bags`` come from the host scatter (it knows what it routed);
        DMA calls/bytes and host<->DPU bytes come from the emulator. ``transfers``
        (``DpuCounters.transfers`` of this batch: direction, bytes_per_dpu, nr_dpus per call)
        times each call separately. ``tasklet_counters`` (``DpuCounters.last_launch``) adds
        per-tasklet DMA cycles.
        """
        dma = dpu_counters["dma"]
        push_calls = max(int(dpu_counters["to_dpu_calls"].max(initial=0)), 1)
        pull_calls = max(int(dpu_counters["from_dpu_calls"].max(initial=0)), 1)
        work = cls(
            dma_read_calls=dma["read_calls"].astype(np.float64),
            dma_read_bytes=dma["read_bytes"].astype(np.float64),
            dma_write_calls=dma["write_calls"].astype(np.float64),
            dma_write_bytes=dma["write_bytes"].astype(np.float64),
            rows=np.asarray(rows, dtype=np.float64), elements=np.asarray(elements, dtype=np.float64),
            bags=np.asarray(bags, dtype=np.float64),
            push_bytes=dpu_counters["to_dpu_bytes"].astype(np.float64) / push_calls,
            pull_bytes=dpu_counters["from_dpu_bytes"].astype(np.float64) / pull_calls,
            push_calls=push_calls, pull_calls=pull_calls, launches=launches,
            host_routed_reads=host_routed_reads, value_mode=value_mode, transfer_calls=transfers,
        )
        if tasklet_counters is not None:
            work.tasklet_dma_cycles = tasklet_counters["modelled_cycles"].astype(np.float64)
        return work


@dataclass(frozen=True)
class StageTimes:
    """MODELLED seconds per stage of one batch (never measurements)."""

    scatter: float
    h2d: float
    launch: float
    kernel: float
    d2h: float
    reduce: float
    cpu_tables: float = 0.0   # CPU-resident tables, overlapped with the DPU kernel
    kernel_per_dpu: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def total(self) -> float:
        """Batch latency: serial host stages plus max(DPU kernel, CPU-side tables)."""
        return self.scatter + self.h2d + self.launch + max(self.kernel, self.cpu_tables) + self.d2h + self.reduce

    def as_dict(self) -> dict[str, float]:
        return {"scatter": self.scatter, "h2d": self.h2d, "launch": self.launch, "kernel": self.kernel,
                "d2h": self.d2h, "reduce": self.reduce, "cpu_tables": self.cpu_tables, "total": self.total}


@dataclass(frozen=True)
class CpuModel:
    """CPU-only embedding-bag time from a lookup rate at a reference dimension.

    Gathers are memory-bound, so by default time scales with row bytes: ``lookups *
    dim/ref_dim / rate``. A table with a MEASURED rate of its own in ``table_rates`` (lookups/s
    by table name, :func:`updlrm.pim.calibrate.measure_cpu_rates`) costs ``lookups / rate_t``
    instead: a table that fits in cache pools many times faster than one whose every lookup
    misses, which one rate for all tables hides.
    """

    lookups_per_s: float = DEFAULT_CPU_LOOKUPS_PER_S
    ref_dim: int = DEFAULT_CPU_REF_DIM
    table_rates: Mapping[str, float] = field(default_factory=dict)

    def seconds_units(self, lookup_units: float) -> float:
        """Seconds for ``lookup_units`` (see :meth:`units`)."""
        return float(lookup_units) / self.lookups_per_s

    def units(self, table: Any, lookups: float) -> float:
        """Lookup units of ``lookups`` rows of ``table`` (anything with ``name`` and ``dim``):
        ``lookups * dim / ref_dim``, or for a table with a rate of its own the units that take
        as long at ``lookups_per_s``."""
        rate = self.table_rates.get(table.name)
        if rate:
            return float(lookups) * self.lookups_per_s / rate
        return float(lookups) * table.dim / self.ref_dim

    def batch_units(self, batch: Any, tables: Sequence[Any], which: Iterable[int] | None = None) -> float:
        """Lookup units of a ``SparseBatch`` over ``tables``, or over the tables numbered
        ``which`` only."""
        which = range(len(tables)) if which is None else which
        return sum(self.units(tables[t], batch.indices[t].size) for t in which)


@dataclass(frozen=True)
class CpuRates:
    """The CPU baseline's rates and where they come from: ``lookups_per_s`` over all tables, in
    :class:`CpuModel`'s units, ``table_rates``, lookups/s of each table (by name; empty: the
    overall rate for every table), and ``source``, said in reports (e.g. what
    :func:`updlrm.pim.calibrate.measure_cpu_rates` measured them on)."""

    lookups_per_s: float
    table_rates: dict[str, float] = field(default_factory=dict)
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.lookups_per_s > 0 or any(not r > 0 for r in self.table_rates.values()):
            raise InvalidInputError(f"CPU lookup rates must be > 0, got {self.lookups_per_s} and {self.table_rates}")


@dataclass(frozen=True)
class CostModel:
    """The whole-server model: DPUs, transfers, launch, host work, CPU fallback rate."""

    dpu: DpuModel = field(default_factory=DpuModel)
    transfer: TransferModel = field(default_factory=TransferModel)
    launch_s: float = DEFAULT_LAUNCH_S
    scatter_s_per_read: float = DEFAULT_SCATTER_S_PER_READ
    copy_s_per_lookup: float = DEFAULT_COPY_S_PER_LOOKUP
    scatter_s_per_partial: float = DEFAULT_SCATTER_S_PER_PARTIAL
    scatter_s_per_host_row: float = DEFAULT_SCATTER_S_PER_HOST_ROW
    reduce_bytes_per_s: float = DEFAULT_REDUCE_BYTES_PER_S
    cpu: CpuModel = field(default_factory=CpuModel)

    def with_(self, **changes) -> "CostModel":
        """A copy with some fields replaced (``dpu``/``cpu`` may be given as dicts of changes)."""
        for key in ("dpu", "cpu", "transfer"):
            if isinstance(changes.get(key), dict):
                changes[key] = replace(getattr(self, key), **changes[key])
        return replace(self, **changes)

    def with_cpu_rates(self, rates: CpuRates | None) -> "CostModel":
        """A copy with the CPU baseline's rates replaced (``self`` when ``rates`` is None)."""
        if rates is None:
            return self
        return self.with_(cpu={"lookups_per_s": float(rates.lookups_per_s), "table_rates": dict(rates.table_rates)})

    def instructions(self, work: BatchWork) -> np.ndarray:
        """Instructions per DPU: given, or from rows, element adds and bags."""
        if work.instructions is not None:
            return np.asarray(work.instructions, dtype=np.float64)
        d = self.dpu
        if work.value_mode not in d.instr_per_add:
            raise InvalidInputError(f"unknown value mode {work.value_mode!r}; expected one of {sorted(d.instr_per_add)}")
        per_elem = d.instr_per_add[work.value_mode]
        # zeroing the accumulator touches as many elements per bag as the adds do per row.
        cols = np.divide(work.elements, np.maximum(work.rows, 1))
        return (work.rows * d.instr_per_lookup + work.elements * per_elem
                + work.bags * (d.instr_per_bag + cols * d.instr_per_zero_element))

    def kernel_seconds(self, work: BatchWork) -> np.ndarray:
        """MODELLED kernel seconds per DPU: max(serialised DMA, instruction issue, slowest tasklet)."""
        d = self.dpu
        dma = (work.dma_read_calls * d.dma_alpha_read + work.dma_write_calls * d.dma_alpha_write
               + d.dma_beta * (work.dma_read_bytes + work.dma_write_bytes))
        instr = self.instructions(work)
        # tasklets split the bags; a DPU with fewer bags than tasklets runs fewer of them.
        active = np.clip(work.bags, 1, d.nr_tasklets)
        issue = instr / d.issue_rate(active)
        cycles = np.maximum(dma, issue)
        if work.tasklet_instructions is not None or work.tasklet_dma_cycles is not None:
            t_instr = work.tasklet_instructions if work.tasklet_instructions is not None else 0.0
            t_dma = work.tasklet_dma_cycles if work.tasklet_dma_cycles is not None else 0.0
            # one tasklet issues at most once per REVOLVER_CYCLES and waits for its own DMAs.
            slowest = np.max(np.asarray(t_instr) * REVOLVER_CYCLES + np.asarray(t_dma), axis=-1)
            cycles = np.maximum(cycles, slowest)
        busy = (work.rows > 0) | (work.bags > 0) | (work.dma_read_calls > 0)
        return np.where(busy, cycles / d.freq_hz, 0.0)

    def transfer_seconds(self, work: BatchWork) -> tuple[float, float]:
        """MODELLED (host->DPU, DPU->host) seconds: per recorded call, or one push each way (padded
        to the largest DPU's bytes, over the DPUs that have any) repeated ``push_calls``/``pull_calls``
        times."""
        if work.transfer_calls is not None:
            out = [0.0, 0.0]
            for rec in work.transfer_calls:
                direction = int(rec["direction"])
                out[direction] += self.transfer.seconds(float(rec["bytes_per_dpu"]), int(rec["nr_dpus"]),
                                                        "from_dpu" if direction else "to_dpu")
            return out[0], out[1]
        # DPUs without a prepared buffer are skipped by a push (upmem.md §1.4): idle DPUs cost nothing
        push = _pad8(float(np.max(work.push_bytes)))
        pull = _pad8(float(np.max(work.pull_bytes)))
        return (work.push_calls * self.transfer.seconds(push, int(np.count_nonzero(work.push_bytes)), "to_dpu"),
                work.pull_calls * self.transfer.seconds(pull, int(np.count_nonzero(work.pull_bytes)), "from_dpu"))

    def stages(self, work: BatchWork) -> StageTimes:
        """MODELLED per-stage seconds of one batch."""
        n = work.nr_dpus
        on_dpus = n > 0 and (work.rows.sum() > 0 or work.bags.sum() > 0)
        if not on_dpus:
            return StageTimes(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, self.cpu.seconds_units(work.cpu_lookup_units))
        per_dpu = self.kernel_seconds(work)
        h2d, d2h = self.transfer_seconds(work)
        reduce_bytes = work.host_reduce_bytes if work.host_reduce_bytes is not None else float(work.pull_bytes.sum())
        return StageTimes(
            scatter=(work.host_routed_reads * self.scatter_s_per_read + work.host_copy_lookups * self.copy_s_per_lookup
                     + work.host_partials * self.scatter_s_per_partial
                     + work.host_row_lookups * self.scatter_s_per_host_row),
            h2d=h2d,
            launch=work.launches * self.launch_s,
            kernel=float(per_dpu.max()),
            d2h=d2h,
            reduce=reduce_bytes / self.reduce_bytes_per_s,
            cpu_tables=self.cpu.seconds_units(work.cpu_lookup_units),
            kernel_per_dpu=per_dpu,
        )


def pel_cloud8_work() -> BatchWork:
    """The validation workload of upmem.md §7.1 as per-DPU work: PIM-Embedding-Lookup's 'cloud8'
    run (30 tables x 14 M rows x 64 int32 columns, one column of one table per DPU = 1,920 DPUs,
    32 bags x 128 indices, 16 tasklets, logged 3.3-4.6 ms per batch). Each DPU reads every index
    of its table with an 8-byte DMA and writes 32 bag results; three pushes (indices, offsets,
    lengths) and one pull of its 32 results."""
    n, lookups, bags = 1920, 32 * 128, 32
    w = BatchWork.zeros(n, "int32")
    w.dma_read_calls[:], w.dma_read_bytes[:] = lookups, lookups * 8
    w.dma_write_calls[:], w.dma_write_bytes[:] = bags, bags * 8
    w.rows[:], w.elements[:], w.bags[:] = lookups, lookups, bags
    w.transfer_calls = np.array([(0, lookups * 4, n), (0, bags * 4, n), (0, 8, n), (1, bags * 4, n)],
                                dtype=[("direction", "u4"), ("bytes_per_dpu", "u8"), ("nr_dpus", "u4")])
    w.host_reduce_bytes = 30 * bags * 64 * 4
    return w


def _pad8(nbytes: float) -> float:
    return float(np.ceil(nbytes / DMA_ALIGN) * DMA_ALIGN)
