"""Host-side scatter of a plan: a batch's bags -> kernel jobs on the plan's segments.

:class:`BatchScatter` drives the Cython loops of :mod:`updlrm.pim._scatter` table by table:
whole tables (one group, one slice) have their bag ranges copied to their replicas
(``copy_count`` / ``copy_fill``); the other tables are routed by the plan's rule (``route``:
cache substitution, row group, replica by bag range, column slices; host-resident rows of
hybrid tables go to a per-table host list) and their reads gathered into jobs (``count_jobs`` /
``fill_jobs``), one per *segment* — all tiles of one table and column slice on one DPU, stored
back to back so the kernel sees one tile — pooling every bag that reads the segment (a partial
sum).

Two passes over the tables: count (route and size every table's share of the batch CSR), then,
once every table's place in the CSR is known, fill. With ``threads=2`` a worker thread takes
tables of each pass alongside the calling thread (the loops release the GIL); jobs land in table
order either way, so the result does not depend on the thread count.
"""
from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from updlrm.errors import InvalidInputError
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable

from . import _scatter
from .plan import Plan, TableRoute


@dataclasses.dataclass
class Segments:
    """Tiles grouped by (table, column slice, DPU); arrays indexed by segment id (table-major)."""

    tile_seg: np.ndarray        # [n_tiles] int32, segment of each plan tile (-1: not on a DPU)
    tile_row_base: np.ndarray   # [n_tiles] int32, first row of the tile inside its segment
    tiles: list[list[int]]      # plan tiles of each segment, in MRAM order
    first_tile: np.ndarray      # [n_segs] int64, the first of them
    dpu: np.ndarray             # [n_segs] int64
    table: np.ndarray           # [n_segs] int64
    col_start: np.ndarray       # [n_segs] int64
    width: np.ndarray           # [n_segs] int64
    rows: np.ndarray            # [n_segs] int64
    lo: dict[int, int]          # table -> first segment
    hi: dict[int, int]          # table -> one past its last segment

    @classmethod
    def of(cls, plan: Plan) -> "Segments":
        keyed: dict[tuple[int, int, int], list[int]] = {}
        for i, tile in enumerate(plan.tiles):
            if plan.tables[tile.table].placement == "pim":
                keyed.setdefault((tile.table, tile.col_start, tile.dpu), []).append(i)
        keys = sorted(keyed)
        tile_seg = np.full(len(plan.tiles), -1, np.int32)
        tile_row_base = np.zeros(len(plan.tiles), np.int32)
        tiles, rows = [], []
        lo: dict[int, int] = {}
        hi: dict[int, int] = {}
        for s, key in enumerate(keys):
            members = sorted(keyed[key])
            base = 0
            for i in members:
                tile_seg[i] = s
                tile_row_base[i] = base
                base += plan.tiles[i].num_rows
            tiles.append(members)
            rows.append(base)
            lo.setdefault(key[0], s)
            hi[key[0]] = s + 1
        col = lambda k: np.array([key[k] for key in keys], np.int64)  # noqa: E731
        width = np.array([plan.tiles[m[0]].width for m in tiles], np.int64)
        return cls(tile_seg, tile_row_base, tiles, np.array([m[0] for m in tiles], np.int64), col(2), col(0), col(1),
                   width, np.array(rows, np.int64), lo, hi)

    def __len__(self) -> int:
        return len(self.tiles)


@dataclasses.dataclass
class Jobs:
    """One batch as kernel jobs: a CSR of sub-bags (``off``/``idx``/``w``) with one destination
    row per sub-bag, and jobs ``j`` = sub-bags ``bag_ptr[j] .. bag_ptr[j+1]-1`` of segment ``seg[j]``."""

    seg: np.ndarray
    bag_ptr: np.ndarray
    off: np.ndarray
    idx: np.ndarray
    w: np.ndarray | None
    bag_row: np.ndarray
    reads_routed: int        # reads routed one by one (per index and column slice, after the cache)
    lookups_copied: int      # indices of whole tables, copied as they are
    lookups_to_host: int     # indices of hybrid tables routed to the host (cold rows)
    partials_routed: int     # sub-bags (partial sums) of the routed tables' jobs
    cache_hits: int
    reads_saved: int
    host: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]]  # hybrid table -> its host bags

    @property
    def nnz(self) -> np.ndarray:
        return self.off[self.bag_ptr[1:]] - self.off[self.bag_ptr[:-1]]

    @property
    def n_bags(self) -> np.ndarray:
        return np.diff(self.bag_ptr)


class BatchScatter:
    """The scatter of one plan; call it on a validated batch to get its :class:`Jobs`.

    Args:
        plan: the plan whose PIM tables are scattered.
        tables: the tables, in the plan's order (their dims and weighting matter here).
        threads: 1 (all in the calling thread) or 2 (a worker thread shares each pass, see the module).
    """

    def __init__(self, plan: Plan, tables: Sequence[EmbeddingTable], *, threads: int = 2) -> None:
        if threads not in (1, 2):
            raise InvalidInputError(f"the scatter runs on 1 or 2 threads, got {threads}")
        self.plan = plan
        self.tables = list(tables)
        self.pim = [t for t, tp in enumerate(plan.tables) if tp.placement == "pim"]
        self.routes = {t: TableRoute.of(plan.tables[t]) for t in self.pim}
        self.hybrid = [t for t in self.pim if plan.tables[t].n_host_rows]
        self.segs = Segments.of(plan)
        # the tile of each replica of a whole table (its bags are copied to their replica)
        self.whole = {t: np.ascontiguousarray(plan.tables[t].group_tiles, np.int32)
                      for t in self.pim if plan.is_whole(t)}
        # with one dim for every PIM table, table k's bags are rows k*B .. k*B+B-1 of a [T*B, dim]
        # output (views, no copy); otherwise one [B, sum(dims)] output
        self.stacked = len({self.tables[t].dim for t in self.pim}) <= 1
        self._rank = {t: k for k, t in enumerate(self.pim)}
        self._buffers: dict[str, np.ndarray] = {}
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="updlrm-scatter") if threads == 2 else None

    def close(self) -> None:
        """Stop the worker thread (a closed scatter still works, on one thread)."""
        if self._worker is not None:
            self._worker.shutdown()
            self._worker = None

    def _buffer(self, name: str, size: int, dtype) -> np.ndarray:
        """A reusable scratch array of at least ``size`` entries (no page faults on fresh memory
        from batch to batch: only one batch is ever incomplete, and a batch's CSR is not needed
        once it is)."""
        buf = self._buffers.get(name)
        if buf is None or buf.size < size:
            buf = np.empty(max(size, 16), dtype)
            self._buffers[name] = buf
        return buf

    def _route(self, t: int, batch: SparseBatch) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...], tuple]:
        """Route table ``t`` into its own buffers: (routed reads, host lists, route's counts)."""
        route, n_idx, B = self.routes[t], batch.indices[t].size, batch.batch_size
        cap = n_idx * route.n_slices
        weighted = self.tables[t].weighted
        no_pos = np.zeros(0, np.int64)
        routed = (self._buffer(f"tile{t}", cap, np.int32), self._buffer(f"local{t}", cap, np.int32),
                  self._buffer(f"bag{t}", cap, np.int32),
                  self._buffer(f"pos{t}", cap, np.int64) if weighted else no_pos)
        host = (self._buffer(f"host_idx{t}", n_idx, np.int64), self._buffer(f"host_off{t}", B + 1, np.int64),
                self._buffer(f"host_pos{t}", n_idx, np.int64) if weighted else no_pos)
        return routed, host, route.route(batch.indices[t], batch.offsets[t], routed, host)

    def _each(self, fn, items: Sequence[int]) -> None:
        """``fn(item)`` for every item, shared by this thread and the worker (if any)."""
        todo = iter(items)   # next() on one iterator from two threads is safe under the GIL

        def drain() -> None:
            for item in todo:
                fn(item)

        if self._worker is None or len(items) < 2:
            drain()
            return
        helper = self._worker.submit(drain)
        try:
            drain()
        finally:
            error = helper.exception()   # wait: the batch's buffers must not change under it
        if error is not None:
            raise error

    def __call__(self, batch: SparseBatch) -> Jobs:
        segs, B = self.segs, batch.batch_size
        nnz_cap = sum(batch.indices[t].size * self.routes[t].n_slices for t in self.pim)
        bags_cap = nnz_cap   # a sub-bag holds at least one read
        weighted = any(self.tables[t].weighted for t in self.pim)
        off = self._buffer("off", bags_cap + 1, np.int64)
        idx = self._buffer("idx", nnz_cap, np.int32)
        w = self._buffer("w", nnz_cap, np.float32) if weighted else np.zeros(0, np.float32)
        bag_row = self._buffer("bag_row", bags_cap, np.int64)
        seg = self._buffer("job_seg", len(segs), np.int64)
        bag_ptr = self._buffer("job_bag_ptr", len(segs) + 1, np.int64)
        bag_ptr[0] = 0
        off[0] = 0
        counted: dict[int, tuple] = {}
        no_w = np.zeros(0, np.float32)

        def scratch(t: int) -> list[np.ndarray]:
            n_segs = segs.hi[t] - segs.lo[t]
            return [self._buffer(f"seg{k}_{t}", n_segs, np.int64) for k in range(3)]

        def count(t: int) -> None:
            if t in self.whole:
                rep_first = self._buffer(f"rep_first{t}", len(self.whole[t]) + 1, np.int64)
                sizes = _scatter.copy_count(batch.offsets[t], self.routes[t].replica_cut, self.whole[t],
                                            segs.tile_seg, segs.lo[t], segs.hi[t], rep_first, *scratch(t)[:2],
                                            self.routes[t].by_lookups)
                counted[t] = (sizes, rep_first)
            else:
                reads, host_out, routed = self._route(t, batch)
                sizes = _scatter.count_jobs(routed[0], reads[0], reads[2], segs.tile_seg, segs.lo[t], segs.hi[t],
                                            *scratch(t))
                counted[t] = (sizes, reads, host_out, routed)

        def fill(t: int) -> None:
            src_w = batch.weights[t] if self.tables[t].weighted else no_w
            row_base = self._rank[t] * B if self.stacked else 0
            csr = (off, idx, w, bag_row, seg, bag_ptr, *starts[t])
            if t in self.whole:
                _scatter.copy_fill(batch.indices[t], batch.offsets[t], self.whole[t], segs.tile_seg,
                                   segs.tile_row_base, segs.lo[t], segs.hi[t], row_base, src_w, counted[t][1],
                                   *scratch(t)[:2], *csr)
            else:
                reads, m = counted[t][1], counted[t][3][0]
                _scatter.fill_jobs(m, *reads, segs.tile_seg, segs.tile_row_base, segs.lo[t], segs.hi[t], row_base,
                                   src_w, *scratch(t), *csr)

        # the biggest tables first, so that the two threads end together
        order = sorted(self.pim, key=lambda t: -batch.indices[t].size * self.routes[t].n_slices)
        self._each(count, order)
        starts: dict[int, tuple[int, int, int]] = {}
        n_jobs = n_bags = nnz = 0
        n_routed = copied = to_host = partials = hits = saved = 0
        host: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
        for t in self.pim:   # jobs in table order, whoever fills them
            starts[t] = (n_jobs, n_bags, nnz)
            sizes = counted[t][0]
            n_jobs, n_bags, nnz = n_jobs + sizes[0], n_bags + sizes[1], nnz + sizes[2]
            if t in self.whole:
                copied += batch.indices[t].size
                continue
            host_out, (m, h, sv, n_host) = counted[t][2], counted[t][3]
            n_routed += m
            partials += sizes[1]
            to_host += n_host
            hits += h
            saved += sv * self.routes[t].n_slices
            if t in self.hybrid:
                # the host lists live until the batch completes (the CPU kernel reads them)
                host[t] = (host_out[0][:n_host], host_out[1][:B + 1],
                           batch.weights[t][host_out[2][:n_host]] if self.tables[t].weighted else None)
        self._each(fill, order)
        return Jobs(seg[:n_jobs], bag_ptr[:n_jobs + 1], off[:n_bags + 1], idx[:nnz], w[:nnz] if weighted else None,
                    bag_row[:n_bags], n_routed, copied, to_host, partials, hits, saved, host)
