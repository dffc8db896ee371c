"""The PIM embedding backend: executes a :class:`~updlrm.pim.plan.Plan` on DPUs (emulated or real).

Load: make the plan (or load and check a saved one), store every table's tiles in DPU MRAM —
cache rows included, quantised in integer modes — and keep the tables the plan leaves on the
host in an internal :class:`~updlrm.cpu_backend.CpuBackend`.

Per batch (:meth:`PimBackend.submit` / :meth:`PimHandle.result`, or :meth:`PimBackend.lookup`):

1. scatter (:class:`~updlrm.pim.scatter.BatchScatter`, Cython loops on two threads): route every index by the plan's rule (cache
   substitution, row group, replica by bag range, column slices) into kernel jobs, one per
   *segment* — all tiles of one table and column slice on one DPU, stored back to back so the
   kernel sees one tile — pooling every bag that reads the segment (a partial sum); a whole table
   (one group, one slice) has its bag ranges copied without a row map; the host-resident rows of
   a hybrid table go to a per-table host list (rows + per-bag offsets);
2. one packed push of every DPU's request, asynchronous launch;
3. the CPU-resident tables and the hybrid tables' host lists are pooled on the host (CPU kernel,
   per-sample weights included) while the DPUs work;
4. wait, one pull, reduction in C (partial sums added, column slices placed, integers
   dequantised), the hybrid tables' host partials added, then mean division (by the whole bag's
   length) and MAX fix-ups on the host.

With ``cpu_fallback=True`` (the default) a batch the cost model predicts faster on the host (plans
are tuned for one batch size) is pooled there instead, after the scatter that sized it.

A batch whose jobs do not fit one launch (more than the kernel's 64 jobs on a DPU, or a request
or output larger than the DPU's MRAM areas) runs in several rounds; a batch with a single job too
large for those areas is pooled as two halves.

Values: ``f32`` is exact fp32 (only the order of additions differs from the CPU backend:
partial sums per segment); ``i32`` / ``i8`` store each segment quantised with its own scale and
are off by at most the bound of :func:`updlrm.pim.emb_host.int_error_bound` per segment read.
MAX pooling and per-sample weights run on the DPUs (the kernel supports both; the plan never
gives such tables cache rows).

:meth:`PimBackend.stats` keeps measured host seconds (``measured_s``) apart from the MODELLED
seconds a real UPMEM server would take (``modelled_s``: the cost model fed with the emulator's
counters of the batches actually run).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from updlrm.backend import BackendStats
from updlrm.errors import CapacityError, InvalidInputError, UpdlrmError
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable, Pooling

from . import _emb_pack
from ._dpu import DpuSet
from .calibrate import with_cpu_rates
from .cost_model import BatchWork, CostModel
from .counters import CountersUnavailableError
from .emb_host import MRAM_BYTES, EmbKernelRunner, PoolOp, ValueMode, make_tile, mean_from_sum
from .partitioner import Level, PlannerConfig, make_plan, report
from .scatter import BatchScatter, Jobs
from .plan import Plan
from .profile import AccessProfile

log = logging.getLogger(__name__)

VALUE_MODES = {"f32": ValueMode.F32, "i32": ValueMode.I32, "i8": ValueMode.I8}
_PLAN_VALUE_MODE = {"f32": "fp32", "i32": "int32", "i8": "int32"}   # what the cost model assumes
MIN_AREA_BYTES = 64 << 10        # smallest request / output area worth running a batch with
TILE_LOAD_CHUNK_BYTES = 256 << 20  # host memory for tile images while loading
MEASURED_STAGES = ("scatter", "push", "cpu_tables", "wait", "pull_reduce")
MODELLED_STAGES = ("h2d", "launch", "kernel", "d2h", "host", "cpu_tables", "total")


class PimHandle:
    """A batch submitted to :class:`PimBackend`; :meth:`result` waits for it."""

    def __init__(self, backend: "PimBackend", state: dict[str, Any]) -> None:
        self._backend = backend
        self._state: dict[str, Any] | None = state
        self._result: list[np.ndarray] | None = None

    def done(self) -> bool:
        """Whether :meth:`result` would return at once."""
        return self._result is not None

    def result(self) -> list[np.ndarray]:
        """The pooled bags: one float32 C-contiguous ``[B, dim_t]`` array per table."""
        if self._result is None:
            state, self._state = self._state, None
            self._result = self._backend._complete(state)
        return self._result


class PimBackend:
    """:class:`~updlrm.backend.EmbeddingBackend` running embedding bags on UPMEM DPUs.

    Args:
        nr_dpus: DPUs to plan for and allocate (default: the plan's, else 64).
        level: partitioning level when the backend makes the plan: ``"uniform"``,
            ``"popularity"`` or ``"cache"`` (see :mod:`updlrm.pim.partitioner`).
        plan: a :class:`Plan`, or the path of one saved by ``Plan.save`` / ``updlrm plan``
            (checked against the tables at load).
        value_mode: ``"f32"`` (exact fp32), ``"i32"`` or ``"i8"`` (fixed point, per-segment
            scale, dequantised on the host).
        dpu_profile: libdpu's profile string for the allocation.
        planner_config: full :class:`PlannerConfig` (its ``nr_dpus`` and ``level`` win; an
            ``nr_dpus`` given as well must agree with it).
        cpu_threads: threads of the CPU backend that pools the CPU-resident tables.
        scatter_threads: threads of the host scatter (1 or 2; see :mod:`updlrm.pim.scatter`).
        i32_headroom: rows an ``i32`` bag may sum without overflowing int32 (sets the scale).
        cpu_fallback: pool a batch on the host instead when the cost model says the CPU would
            be faster for it (plans are tuned for one batch size; small batches rarely pay the
            fixed transfer and launch costs). On by default, so PIM never makes the engine
            slower than the CPU backend by the model's account; ``False`` runs every batch on
            the DPUs.
        cost: the cost model behind ``stats().modelled_s`` and the CPU fallback (default: the
            reference model with the CPU rate the plan was made with).
    """

    name = "pim"

    def __init__(self, nr_dpus: int | None = None, level: str | Level = "cache", plan: Plan | str | Path | None = None,
                 value_mode: str = "f32", dpu_profile: str = "", planner_config: PlannerConfig | None = None,
                 cpu_threads: int | None = None, i32_headroom: int = 1024, cost: CostModel | None = None,
                 cpu_fallback: bool = True, scatter_threads: int = 2) -> None:
        if value_mode not in VALUE_MODES:
            raise InvalidInputError(f"value_mode must be one of {sorted(VALUE_MODES)}, got {value_mode!r}")
        if nr_dpus is not None and nr_dpus < 1:
            raise InvalidInputError(f"nr_dpus must be >= 1, got {nr_dpus}")
        if nr_dpus is not None and planner_config is not None and planner_config.nr_dpus != nr_dpus:
            # the config would win silently: 2,560 planned DPUs instead of a few emulated ones
            raise InvalidInputError(f"nr_dpus={nr_dpus} but planner_config.nr_dpus={planner_config.nr_dpus}; "
                                    "give one of them")
        self.level = Level(level)
        self.value_mode = value_mode
        self.dpu_profile = dpu_profile
        self.planner_config = planner_config
        self.cpu_threads = cpu_threads
        self.cpu_fallback = cpu_fallback
        self.scatter_threads = scatter_threads
        self._scatter: BatchScatter | None = None
        self.i32_headroom = int(i32_headroom)
        self._cost_given = cost
        self.cost = cost or CostModel()
        self._nr_dpus = nr_dpus
        self._plan_source = plan
        self.plan: Plan | None = None
        self.dpus: DpuSet | None = None
        self.runner: EmbKernelRunner | None = None
        self._pending: PimHandle | None = None
        self._stats = BackendStats(backend=self.name)

    # ------------------------------------------------------------------ load
    def load(self, tables: Sequence[EmbeddingTable], *, profile: AccessProfile | str | Path | None = None) -> None:
        """Plan (or check the given plan), store the tiles on the DPUs, keep CPU tables on the host."""
        start = time.perf_counter()
        self.close()
        self.tables = list(tables)
        plan = self._make_plan(self.tables, profile)
        self.plan = plan
        # decide CPU fallbacks against the CPU rates the plan was made with (measured, if they were)
        self.cost = self._cost_given or CostModel().with_cpu_rates(plan.cpu_rates)
        self._pim = [t for t, tp in enumerate(plan.tables) if tp.placement == "pim"]
        self._cpu = [t for t, tp in enumerate(plan.tables) if tp.placement != "pim"]
        for t in self._cpu:
            log.info("table %r stays on the CPU (plan decision)", self.tables[t].name)
        self._scatter = BatchScatter(plan, self.tables, threads=self.scatter_threads)
        self._hybrid = self._scatter.hybrid
        self._segs = self._scatter.segs
        self._stacked = self._scatter.stacked
        self._ops = {t: self._op(self.tables[t]) for t in self._pim}
        dims = [self.tables[t].dim for t in self._pim]
        self._col_base = dict(zip(self._pim, [0] * len(dims) if self._stacked else np.cumsum([0] + dims[:-1]).tolist()))
        self._seg_col = np.array([self._col_base[int(t)] + int(c) for t, c in zip(self._segs.table, self._segs.col_start)],
                                 np.int64)
        self._seg_op = np.array([int(self._ops[int(t)]) for t in self._segs.table], np.uint8)
        self._cpu_backend = None
        if self._cpu:
            from updlrm.cpu_backend import CpuBackend
            self._cpu_backend = CpuBackend(threads=self.cpu_threads)
            self._cpu_backend.load([self.tables[t] for t in self._cpu])
        if self._pim:
            self._store_tiles(plan)
        self._summary = report(plan, self.cost).as_dict()
        self._reset_stats(time.perf_counter() - start)

    def _make_plan(self, tables: list[EmbeddingTable], profile: Any) -> Plan:
        source = self._plan_source
        if source is not None:
            plan = source if isinstance(source, Plan) else Plan.load(source)
            plan.check(tables)
            if self._nr_dpus is not None and self._nr_dpus != plan.nr_dpus:
                raise InvalidInputError(f"the plan is for {plan.nr_dpus} DPUs, nr_dpus={self._nr_dpus} was asked")
            return plan
        if isinstance(profile, (str, Path)):
            profile = AccessProfile.load(profile)
        cfg = self.planner_config        # a config given is planned with as it is
        if cfg is None:
            cfg = with_cpu_rates(PlannerConfig(nr_dpus=self._nr_dpus or 64, level=self.level,
                                               value_mode=_PLAN_VALUE_MODE[self.value_mode]), tables, profile)
        return make_plan(tables, profile, cfg)

    @staticmethod
    def _op(table: EmbeddingTable) -> PoolOp:
        if table.pooling is Pooling.MAX:
            return PoolOp.MAX
        return PoolOp.WSUM if table.weighted else PoolOp.SUM

    def _store_tiles(self, plan: Plan) -> None:
        reserve = MRAM_BYTES - plan.table_region_bytes
        if reserve < 2 * MIN_AREA_BYTES:
            raise CapacityError(f"the plan leaves {reserve} B of MRAM per DPU for the kernel's request and "
                                f"output areas; at least {2 * MIN_AREA_BYTES} B are needed (raise mram_reserve)")
        request_cap = (reserve // 2) & ~7
        self.dpus = DpuSet(plan.nr_dpus, profile=self.dpu_profile)
        self.runner = EmbKernelRunner(self.dpus, request_capacity=request_cap,
                                      output_capacity=(reserve - request_cap) & ~7)
        segs, mode = self._segs, VALUE_MODES[self.value_mode]
        placement = np.empty(len(segs), np.int64)
        chunk: list[int] = []
        chunk_bytes = 0
        for s in range(len(segs) + 1):
            if s == len(segs) or (chunk and chunk_bytes + segs.rows[s] * segs.width[s] * 4 > TILE_LOAD_CHUNK_BYTES):
                images = [self._segment_tile(plan, c, mode) for c in chunk]
                placement[chunk] = self.runner.load_tiles(images, segs.dpu[chunk])
                chunk, chunk_bytes = [], 0
            if s < len(segs):
                chunk.append(s)
                chunk_bytes += int(segs.rows[s] * segs.width[s] * 4)
        self._seg_placement = placement

    def _segment_tile(self, plan: Plan, s: int, mode: ValueMode):
        weight = self.tables[int(self._segs.table[s])].weight
        image = np.concatenate([plan.tile_image(i, weight) for i in self._segs.tiles[s]])
        return make_tile(image, mode, headroom=self.i32_headroom)

    def close(self) -> None:
        """Free the DPUs (the backend can be loaded again)."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            try:
                pending.result()
            except UpdlrmError:
                log.warning("a batch in flight failed while closing the PIM backend", exc_info=True)
        if self._scatter is not None:
            self._scatter.close()
        if self.dpus is not None:
            self.dpus.free()
        self.dpus = None
        self.runner = None

    # ------------------------------------------------------------------ batches
    def lookup(self, batch: SparseBatch) -> list[np.ndarray]:
        """Pool every table's bags: one float32 ``[B, dim_t]`` array per table."""
        return self.submit(batch).result()

    def submit(self, batch: SparseBatch) -> PimHandle:
        """Scatter, push and launch ``batch`` on the DPUs without waiting for them; the CPU-resident
        tables and the reduction run in :meth:`PimHandle.result`. A batch still in flight is
        completed first (one batch at a time on the DPUs)."""
        if self.plan is None:
            raise UpdlrmError("PimBackend: load() the tables first")
        if self._pending is not None:
            self._pending.result()
        if not batch.is_validated_for(self.tables):
            batch.validate(self.tables)
        state: dict[str, Any] = {"batch": batch, "t": dict.fromkeys(MEASURED_STAGES, 0.0)}
        if self._pim:
            t0 = time.perf_counter()
            jobs = self._scatter(batch)
            if self.cpu_fallback and self._cpu_is_faster(jobs, batch):
                state["fallback"] = True
                state["t"]["scatter"] = time.perf_counter() - t0
                return self._pend(PimHandle(self, state))
            try:
                rounds = self._rounds(jobs)
            except _JobTooLarge:
                if batch.batch_size == 1:
                    raise
                return self._split(batch)
            t1 = time.perf_counter()
            state.update(jobs=jobs, rounds=rounds, dst=self._destination(batch.batch_size))
            self._reset_counters()
            self._launch(jobs, rounds[0])
            state["t"]["scatter"] = t1 - t0
            state["t"]["push"] = time.perf_counter() - t1
        return self._pend(PimHandle(self, state))

    def _pend(self, handle: PimHandle) -> PimHandle:
        self._pending = handle
        return handle

    def _cpu_is_faster(self, jobs: Jobs, batch: SparseBatch) -> bool:
        """Whether the cost model predicts this batch faster on the host than on the DPUs (the
        planner's own work estimate, fed with this batch's routed reads and partial sums)."""
        plan = self.plan
        first_tile = self._segs.first_tile[jobs.seg]     # a segment costs what its tiles' reads cost
        reads = np.bincount(first_tile, weights=jobs.nnz, minlength=len(plan.tiles))
        bags = np.bincount(first_tile, weights=jobs.n_bags, minlength=len(plan.tiles))
        work = plan.work_from_tile_counts(reads, bags, host_routed_reads=jobs.reads_routed,
                                          cpu_lookup_units=self._units(batch, self._cpu) + self._host_units(jobs),
                                          host_copy_lookups=jobs.lookups_copied, host_row_lookups=jobs.lookups_to_host,
                                          host_add_bytes=plan.host_add_bytes(batch.batch_size))
        on_dpus = self.cost.stages(work).total
        return self.cost.cpu.seconds_units(self._units(batch, self._pim + self._cpu)) < on_dpus

    def _split(self, batch: SparseBatch) -> PimHandle:
        """Pool a batch too large for the DPUs' MRAM areas as two halves (stats count both)."""
        half = batch.batch_size // 2
        parts = [self.lookup(batch.slice(0, half)),
                 self.lookup(batch.slice(half, batch.batch_size))]
        handle = PimHandle(self, None)
        handle._result = [np.concatenate(pair) for pair in zip(*parts)]
        log.info("batch of %d split in two: its jobs exceed the DPUs' request/output areas", batch.batch_size)
        return handle

    def _rounds(self, jobs: Jobs) -> list[np.ndarray]:
        """Jobs per launch: one round unless a DPU would get more than the kernel's job limit or
        more request/output bytes than its areas hold (then greedy first-fit rounds)."""
        segs, runner = self._segs, self.runner
        n_bags, nnz = jobs.n_bags, jobs.nnz
        wsum = self._seg_op[jobs.seg] == PoolOp.WSUM
        req = 48 + _round8(4 * (n_bags + 1)) + _round8(4 * nnz) * np.where(wsum, 2, 1)
        out = n_bags * _round8(4 * segs.width[jobs.seg])
        dpu = segs.dpu[jobs.seg]
        n = self.plan.nr_dpus
        req_cap = runner.request_capacity - 32
        out_cap = runner.output_capacity - _emb_pack.STATUS_BYTES
        if (np.bincount(dpu, minlength=n).max(initial=0) <= _emb_pack.MAX_JOBS
                and np.bincount(dpu, weights=req, minlength=n).max(initial=0) <= req_cap
                and np.bincount(dpu, weights=out, minlength=n).max(initial=0) <= out_cap):
            return [np.arange(len(jobs.seg))]
        big = np.flatnonzero((req > req_cap) | (out > out_cap))
        if big.size:
            j = int(big[0])
            raise _JobTooLarge(f"one job (table {self.tables[int(segs.table[jobs.seg[j]])].name!r}, DPU {int(dpu[j])}) "
                                f"needs {int(req[j])} B of request and {int(out[j])} B of output area, more than "
                                f"the {req_cap} / {out_cap} B a DPU has (raise the plan's mram_reserve)")
        rounds: list[list[int]] = []
        used: list[dict[int, list[int]]] = []
        for j in range(len(jobs.seg)):
            d = int(dpu[j])
            for r, u in enumerate(used):
                c = u.setdefault(d, [0, 0, 0])
                if c[0] < _emb_pack.MAX_JOBS and c[1] + req[j] <= req_cap and c[2] + out[j] <= out_cap:
                    break
            else:
                rounds.append([])
                used.append({d: [0, 0, 0]})
                r, c = len(rounds) - 1, used[-1][d]
            c[0] += 1
            c[1] += int(req[j])
            c[2] += int(out[j])
            rounds[r].append(j)
        log.info("batch split into %d DPU launches (job or MRAM area limits)", len(rounds))
        return [np.array(r, np.int64) for r in rounds]

    def _launch(self, jobs: Jobs, round_jobs: np.ndarray) -> None:
        """Push and launch one round: its jobs as a contiguous CSR (re-gathered unless it is all of them)."""
        if len(round_jobs) == len(jobs.seg):
            seg, bag_ptr, off, idx, w = jobs.seg, jobs.bag_ptr, jobs.off, jobs.idx, jobs.w
            self._round_rows = jobs.bag_row
        else:
            seg, bag_ptr, off, idx, w, self._round_rows = _subset(jobs, round_jobs)
        self._round_seg = seg
        self.runner.submit(self._seg_placement[seg], self._seg_op[seg], bag_ptr, off, idx, w)

    def _destination(self, B: int) -> np.ndarray:
        dims = [self.tables[t].dim for t in self._pim]
        dst = np.zeros((len(dims) * B, dims[0]) if self._stacked else (B, sum(dims)), np.float32)
        for k, t in enumerate(self._pim):
            if self._ops[t] is PoolOp.MAX:
                self._table_view(dst, k, t, B)[...] = -np.inf
        return dst

    def _table_view(self, dst: np.ndarray, k: int, t: int, B: int) -> np.ndarray:
        if self._stacked:
            return dst[k * B:(k + 1) * B]
        c = self._col_base[t]
        return dst[:, c:c + self.tables[t].dim]

    def _complete(self, state: dict[str, Any]) -> list[np.ndarray]:
        """Pool the CPU tables, wait for the DPUs, reduce; record stats."""
        self._pending = None   # only the newest batch can be incomplete: this one
        batch, times = state["batch"], state["t"]
        B = batch.batch_size
        out: list[np.ndarray | None] = [None] * len(self.tables)
        fallback = state.get("fallback", False)
        t = time.perf_counter()
        if self._cpu:
            for i, res in zip(self._cpu, self._cpu_backend.lookup(_tables_of(batch, self._cpu))):
                out[i] = res
        host_parts = {} if fallback else self._pool_host_rows(state["jobs"].host) if self._hybrid else {}
        if fallback:
            from updlrm.embedding_bag import embedding_bags
            pooled = embedding_bags([self.tables[i] for i in self._pim], _tables_of(batch, self._pim),
                                    threads=self.cpu_threads)
            for i, res in zip(self._pim, pooled):
                out[i] = res
        times["cpu_tables"] = time.perf_counter() - t
        on_dpus = bool(self._pim) and not fallback
        work = None if on_dpus else self._host_only_work(batch)
        self._fallbacks += fallback
        if on_dpus:
            jobs, rounds, dst = state["jobs"], state["rounds"], state["dst"]
            for r, round_jobs in enumerate(rounds):
                if r:
                    t = time.perf_counter()
                    self._launch(jobs, round_jobs)
                    times["push"] += time.perf_counter() - t
                t = time.perf_counter()
                self.dpus.sync()
                t1 = time.perf_counter()
                self.runner.collect_into(dst, self._round_rows, self._seg_col[self._round_seg])
                times["wait"] += t1 - t
                times["pull_reduce"] += time.perf_counter() - t1
            t = time.perf_counter()
            for k, i in enumerate(self._pim):
                view = self._table_view(dst, k, i, B)
                if i in host_parts:
                    view += host_parts[i]
                lengths = np.diff(batch.offsets[i])      # the whole bag: DPU and host rows
                table = self.tables[i]
                if table.pooling is Pooling.MAX:
                    view[lengths == 0] = 0.0
                elif table.pooling is Pooling.MEAN:
                    mean_from_sum(view, lengths)
                out[i] = view if self._stacked else np.ascontiguousarray(view)
            times["pull_reduce"] += time.perf_counter() - t
            work = self._work(jobs, len(rounds), batch)
        self._record(batch, times, work, state["jobs"] if on_dpus else None)
        return out

    # ------------------------------------------------------------------ stats
    def _reset_counters(self) -> None:
        try:
            self.dpus.reset_counters()
        except CountersUnavailableError:
            pass

    def _pool_host_rows(self, host: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> dict[int, np.ndarray]:
        """Sum-pool the host-resident rows of each hybrid table's bags with the CPU kernel (the
        per-sample weights ride along; MEAN division waits for the whole bag)."""
        from updlrm.embedding_bag import embedding_bag
        return {t: embedding_bag(self.tables[t].weight, rows, off, weights=w, mode="sum", include_last_offset=True,
                                 threads=self.cpu_threads)
                for t, (rows, off, w) in host.items()}

    def _host_units(self, jobs: Jobs) -> float:
        """Lookup units the CPU kernel pools for the hybrid tables' host rows."""
        return sum(self.cost.cpu.units(self.tables[t], len(rows)) for t, (rows, _, _) in jobs.host.items())

    def _units(self, batch: SparseBatch, tables: Sequence[int]) -> float:
        """The cost model's CPU work units (``CpuModel.units``) of some tables' lookups."""
        return self.cost.cpu.batch_units(batch, self.tables, tables)

    def _host_only_work(self, batch: SparseBatch) -> BatchWork:
        """A batch pooled entirely on the host (no PIM table, or a CPU fallback)."""
        work = BatchWork.zeros(self.plan.nr_dpus)
        work.cpu_lookup_units = self._units(batch, self._pim + self._cpu)
        return work

    def _work(self, jobs: Jobs, launches: int, batch: SparseBatch) -> BatchWork | None:
        """This batch's per-DPU work for the cost model: DMA and transfer counts from the
        emulator, rows / element adds / partial sums from the scatter. None on real hardware."""
        try:
            counters = self.dpus.counters()
        except CountersUnavailableError:
            return None
        n = self.plan.nr_dpus
        dpu = self._segs.dpu[jobs.seg]
        nnz = jobs.nnz.astype(np.float64)
        work = BatchWork.from_counters(
            counters.dpus, rows=np.bincount(dpu, weights=nnz, minlength=n),
            elements=np.bincount(dpu, weights=nnz * self._segs.width[jobs.seg], minlength=n),
            bags=np.bincount(dpu, weights=jobs.n_bags.astype(np.float64), minlength=n),
            value_mode=_PLAN_VALUE_MODE[self.value_mode], host_routed_reads=jobs.reads_routed, launches=launches,
            transfers=counters.transfers, tasklet_counters=counters.last_launch if launches == 1 else None)
        work.host_copy_lookups = jobs.lookups_copied
        work.host_row_lookups = jobs.lookups_to_host
        work.host_partials = float(jobs.partials_routed)
        work.cpu_lookup_units = self._units(batch, self._cpu) + self._host_units(jobs)
        if self._hybrid:
            work.host_reduce_bytes = float(work.pull_bytes.sum()) + self.plan.host_add_bytes(batch.batch_size)
        return work

    def _reset_stats(self, load_s: float) -> None:
        self._stats = BackendStats(backend=self.name, measured_s={"load": load_s, **dict.fromkeys(MEASURED_STAGES, 0.0)},
                                   modelled_s=dict.fromkeys(MODELLED_STAGES, 0.0))
        self._dpu_reads = np.zeros(self.plan.nr_dpus)
        self._dpu_kernel_s = np.zeros(self.plan.nr_dpus)
        self._hits = self._saved = self._pim_lookups = self._fallbacks = 0

    def _record(self, batch: SparseBatch, times: dict[str, float], work: BatchWork | None, jobs: Jobs | None) -> None:
        st = self._stats
        st.batches += 1
        st.lookups += batch.num_lookups
        for k, v in times.items():
            st.measured_s[k] += v
        if jobs is not None:
            self._hits += jobs.cache_hits
            self._saved += jobs.reads_saved
            self._pim_lookups += sum(batch.indices[t].size for t in self._pim)
        if work is None:
            return
        stages = self.cost.stages(work)
        m = st.modelled_s
        m["h2d"] += stages.h2d
        m["launch"] += stages.launch
        m["kernel"] += stages.kernel
        m["d2h"] += stages.d2h
        m["host"] += stages.scatter + stages.reduce
        m["cpu_tables"] += stages.cpu_tables
        m["total"] += stages.total
        self._dpu_reads += work.rows
        if stages.kernel_per_dpu is not None:
            self._dpu_kernel_s += stages.kernel_per_dpu

    def stats(self) -> BackendStats:
        """Measured host seconds per stage (``scatter``, ``push``, ``cpu_tables`` — CPU-resident
        tables and CPU-fallback batches —, ``wait``, ``pull_reduce``, ``load``) and MODELLED seconds a real UPMEM server would take for the same
        batches (``h2d``, ``launch``, ``kernel`` = slowest DPU, ``d2h``, ``host``, ``cpu_tables``,
        ``total``), summed over the batches served. ``extra``: the plan's summary (modelled),
        per-DPU imbalance (max/mean) of the rows read and of the modelled kernel time, and the
        observed cache hit rate (cache rows read / lookups of the PIM tables run on the DPUs) and
        the number of batches pooled on the host by ``cpu_fallback``."""
        st = self._stats
        if self.plan is None:
            return dataclasses.replace(st)
        extra = {"plan": self._summary, "value_mode": self.value_mode, "nr_dpus": self.plan.nr_dpus,
                 "tables_on_cpu": [self.tables[t].name for t in self._cpu],
                 "imbalance": {"reads": _imbalance(self._dpu_reads),
                               "kernel_modelled": _imbalance(self._dpu_kernel_s)},
                 "cache_hit_rate": self._hits / self._pim_lookups if self._pim_lookups else 0.0,
                 "reads_saved": self._saved, "cpu_fallback_batches": self._fallbacks}
        return dataclasses.replace(st, measured_s=dict(st.measured_s), modelled_s=dict(st.modelled_s), extra=extra)


class _JobTooLarge(CapacityError):
    """One job alone exceeds a DPU's request or output area (smaller batches fit)."""


def _tables_of(batch: SparseBatch, tables: Sequence[int]) -> SparseBatch:
    """The bags of some tables of ``batch``."""
    return SparseBatch([batch.indices[t] for t in tables], [batch.offsets[t] for t in tables],
                       [batch.weights[t] for t in tables])


def _round8(x: np.ndarray) -> np.ndarray:
    return (np.asarray(x, np.int64) + 7) & ~7


def _imbalance(x: np.ndarray) -> float:
    mean = float(x.mean()) if x.size else 0.0
    return float(x.max()) / mean if mean > 0 else 1.0


def _subset(jobs: Jobs, chosen: np.ndarray):
    """The CSR of some jobs only, re-gathered contiguously: (seg, bag_ptr, off, idx, w, bag_row)."""
    lo, hi = jobs.bag_ptr[chosen], jobs.bag_ptr[chosen + 1]
    bags = _ranges(lo, hi)
    starts, stops = jobs.off[bags], jobs.off[bags + 1]
    items = _ranges(starts, stops)
    bag_ptr = np.concatenate([[0], np.cumsum(hi - lo)])
    off = np.concatenate([[0], np.cumsum(stops - starts)])
    return (jobs.seg[chosen], bag_ptr, off, jobs.idx[items], None if jobs.w is None else jobs.w[items],
            jobs.bag_row[bags])


def _ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[k], hi[k])`` over k."""
    lengths = hi - lo
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths)
    return starts + np.arange(total)
