"""A placement plan of embedding tables on DPUs: plain data, saved as JSON + .npz, versioned.

What an executor needs, per table placed on the DPUs (``TablePlan.placement == "pim"``):

* ``col_bounds``: the table's columns are cut into slices ``[col_bounds[j], col_bounds[j+1])``.
* rows are grouped: ``row_group[r]`` is the group of row ``r`` and ``row_local[r]`` its row number
  inside every tile of that group. A *hybrid* table keeps some rows on the host:
  ``row_group[r] == -1`` (and ``row_local[r] == -1``) marks such a row (``n_host_rows`` of them;
  never a cache member, never in a MAX-pooled table). Rows ``num_rows .. num_rows + n_cache - 1`` are *cache rows*:
  cache row ``num_rows + e`` holds the sum of the rows ``cache_rows[cache_ptr[e]:cache_ptr[e+1]]``
  (``row_cache[r]`` = the entry row ``r`` belongs to, or -1; entries are disjoint).
* group ``g`` has ``group_replicas[g]`` replicas; its tiles are
  ``group_tiles[group_ptr[g] + replica * n_slices + slice]`` (indices into ``Plan.tiles``).
  Replicas split the bags of a batch into contiguous ranges: replica ``j`` of group ``g`` serves
  the bags ``b`` with ``replica_cut[replica_ptr[g] + j - 1] <= pos(b) < replica_cut[replica_ptr[g] + j]``
  (cuts are cumulative shares, the last one is 1), so shares need not be equal: the planner sizes
  them to balance the DPUs. ``pos(b)`` is where the bag lies in its batch, by the table's
  ``split_by``: ``"bags"``, its bag position ``(b + 0.5) / B`` (each replica gets its share of
  the bags, so of the partial sums to pull); ``"lookups"``, the middle of its indices,
  ``(offsets[b] + offsets[b+1]) / 2 / offsets[B]`` (offsets from 0; each replica gets its share of
  the lookups, so of the DPU reads, whatever the bags' sizes; the bag position if the batch has no
  indices).
* a :class:`Tile` says on which DPU it lives, at which MRAM offset (bytes from the start of the
  table region, which is ``[0, Plan.table_region_bytes)``; the kernel's I/O buffers live above it),
  and its row stride (bytes, multiple of 8). Local row ``l`` of a tile is at
  ``mram_offset + l * row_stride`` and holds columns ``col_start .. col_stop-1`` of that row.

Routing one bag ``b`` (its index within the batch) of a PIM table (implemented once, in
:func:`updlrm.pim._scatter.route`; :meth:`Plan.route` calls it):

1. cache substitution: for every cache entry all of whose member rows occur in the bag, one
   occurrence of each member is replaced by the entry's single cache row;
2. each remaining row ``r`` goes to group ``g = row_group[r]``, to the replica whose bag range
   holds ``b``, and to every column slice of it; the DPU adds the rows of the bag that reach a tile into one
   partial sum per (tile, bag), and the host adds the partials into ``out[b, col_start:col_stop]``;
3. a host-resident row (``g == -1``) goes to the table's host list instead; the CPU kernel pools
   those rows per bag (sum, with the bag's per-sample weights) while the DPUs work, and the host
   adds that partial to ``out[b]``. MEAN pooling divides the sum of both parts by the *whole*
   bag's length.

Weighted bags and MAX pooling never get cache entries (a pre-summed row cannot carry
per-sample weights or a max). Tables with ``placement == "cpu"`` stay on the host.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from updlrm.errors import InvalidInputError

from . import _scatter
from .cost_model import BatchWork, CostModel, CpuModel, CpuRates, StageTimes
from .profile import read_versioned_json, write_versioned

PLAN_FORMAT = "updlrm.pim_plan"
PLAN_VERSION = 2     # 2: hybrid tables (row_group == -1: host-resident rows); optional split_by
SPLIT_BY = ("bags", "lookups")   # TablePlan.split_by; a plan without it splits by bags (any split is exact)
VALUE_BYTES = 4     # fp32 and int32 values both take 4 bytes in MRAM

# arrays of a TablePlan that live in the .npz, not the JSON
_TABLE_ARRAYS = ("row_group", "row_local", "group_replicas", "group_ptr", "group_tiles",
                 "replica_ptr", "replica_cut", "cache_ptr", "cache_rows", "row_cache")


@dataclass(frozen=True)
class TableSpec:
    """What the planner needs to know of a table (an ``EmbeddingTable`` without its weights)."""

    name: str
    rows: int
    dim: int
    dtype: str = "float32"
    pooling: str = "sum"
    weighted: bool = False

    @classmethod
    def of(cls, table: Any) -> "TableSpec":
        """From an :class:`~updlrm.tables.EmbeddingTable` (or another ``TableSpec``)."""
        if isinstance(table, TableSpec):
            return table
        pooling = getattr(table.pooling, "value", table.pooling)
        return cls(table.name, int(table.rows), int(table.dim), str(np.dtype(table.weight.dtype)),
                   str(pooling), bool(table.weighted))


@dataclass
class Tile:
    """A block of one table (a row group's replica x a column slice) stored on one DPU.

    ``bag_share`` is the share of each batch's bags its replica serves; ``expected_reads`` /
    ``expected_bags`` are the planner's expectations per reference batch (rows read, partial sums
    written).
    """

    table: int
    group: int
    replica: int
    col_start: int
    col_stop: int
    num_rows: int
    row_stride: int
    dpu: int = -1
    mram_offset: int = -1
    bag_share: float = 1.0
    expected_reads: float = 0.0
    expected_bags: float = 0.0

    @property
    def width(self) -> int:
        return self.col_stop - self.col_start

    @property
    def nbytes(self) -> int:
        return self.num_rows * self.row_stride


@dataclass
class TablePlan:
    """Placement of one table; see the module docstring for the meaning of the arrays."""

    spec: TableSpec
    placement: str                    # "pim" or "cpu"
    value_mode: str = "fp32"          # "fp32" (soft-float adds) or "int32" (fixed point)
    col_bounds: list[int] = field(default_factory=list)
    n_host_rows: int = 0              # rows kept on the host (row_group == -1): a hybrid table
    row_group: np.ndarray | None = None      # [rows + n_cache] int32
    row_local: np.ndarray | None = None      # [rows + n_cache] int32
    group_replicas: np.ndarray | None = None  # [n_groups] int32
    group_ptr: np.ndarray | None = None       # [n_groups + 1] int64
    group_tiles: np.ndarray | None = None     # [sum replicas x slices] int32
    replica_ptr: np.ndarray | None = None     # [n_groups + 1] int64
    replica_cut: np.ndarray | None = None     # [sum replicas] float64, cumulative bag shares
    cache_ptr: np.ndarray | None = None       # [n_cache + 1] int64
    cache_rows: np.ndarray | None = None      # member rows of every cache entry
    row_cache: np.ndarray | None = None       # [rows] int32, entry of each row or -1 (None: no cache)
    split_by: str = "bags"                    # how replicas split a batch: "bags" or "lookups"

    @property
    def n_slices(self) -> int:
        return len(self.col_bounds) - 1

    @property
    def n_cache(self) -> int:
        return 0 if self.cache_ptr is None else len(self.cache_ptr) - 1

    @property
    def n_groups(self) -> int:
        return 0 if self.group_replicas is None else len(self.group_replicas)


@dataclass
class Routed:
    """Where one table's lookups of a batch go: one entry per (row read, column slice), and the
    host-resident rows of each bag (hybrid tables)."""

    tile: np.ndarray       # int32 tile id
    local_row: np.ndarray  # int32 row within the tile
    bag: np.ndarray        # int32 bag within the batch
    cache_hits: int        # cache entries used (each replaced >= 2 reads by one)
    reads_saved: int       # row reads (per column slice) the cache saved
    host_rows: np.ndarray      # int64 host-resident rows, bag by bag
    host_offsets: np.ndarray   # int64 [B+1]: bag b's host rows are host_rows[host_offsets[b]:host_offsets[b+1]]


@dataclass
class TableRoute:
    """One PIM table's routing arrays in the dtypes :func:`updlrm.pim._scatter.route` takes.

    The row map is ``row_loc`` ``[rows + n_cache, 2]`` (group, local row) — or, for a hybrid
    table (no cache), a compact one: a bit per row saying whether it is on the DPUs
    (``dpu_bits``, with the rank of each 64-row word in ``dpu_rank``) and ``row_loc`` for those
    rows only: a 10 M-row table's map drops from 80 MB (a cache miss per index) to 2 MB.
    """

    num_rows: int
    n_slices: int
    row_cache: np.ndarray
    cache_ptr: np.ndarray
    cache_rows: np.ndarray
    row_loc: np.ndarray          # [rows + n_cache, 2] int32, or [rows on the DPUs, 2] when compact
    dpu_bits: np.ndarray         # [ceil(rows / 64)] uint64 (empty: row_loc is dense)
    dpu_rank: np.ndarray         # [ceil(rows / 64)] int32
    replica_ptr: np.ndarray
    replica_cut: np.ndarray
    group_ptr: np.ndarray
    group_tiles: np.ndarray
    by_lookups: bool = False     # replicas split the bags by lookups (``TablePlan.split_by``)

    @classmethod
    def of(cls, tp: "TablePlan") -> "TableRoute":
        i32 = lambda a: np.ascontiguousarray(a, np.int32)  # noqa: E731
        i64 = lambda a: np.ascontiguousarray(a, np.int64)  # noqa: E731
        cached = tp.n_cache > 0
        if tp.n_host_rows and not cached:
            on_dpus = tp.row_group >= 0
            words = -(-len(on_dpus) // 64)
            packed = np.zeros(words * 8, np.uint8)
            packed[:-(-len(on_dpus) // 8)] = np.packbits(on_dpus, bitorder="little")
            bits = packed.view("<u8").astype(np.uint64)
            per_word = np.add.reduceat(on_dpus.astype(np.int32), np.arange(0, len(on_dpus), 64))
            rank = i32(np.concatenate([[0], np.cumsum(per_word)[:-1]]))
            row_loc = np.stack([tp.row_group[on_dpus], tp.row_local[on_dpus]], axis=1).astype(np.int32)
        else:
            bits, rank = np.zeros(0, np.uint64), np.zeros(0, np.int32)
            row_loc = np.stack([tp.row_group, tp.row_local], axis=1).astype(np.int32)
        return cls(tp.spec.rows, tp.n_slices,
                   i32(tp.row_cache) if cached else np.zeros(0, np.int32),
                   i64(tp.cache_ptr) if cached else np.zeros(1, np.int64),
                   i64(tp.cache_rows) if cached else np.zeros(0, np.int64),
                   row_loc, bits, rank, i64(tp.replica_ptr),
                   np.ascontiguousarray(tp.replica_cut, np.float64), i64(tp.group_ptr), i32(tp.group_tiles),
                   tp.split_by == "lookups")

    def route(self, indices: np.ndarray, offsets: np.ndarray, out: Sequence[np.ndarray],
              host: Sequence[np.ndarray]) -> tuple[int, int, int, int]:
        """:func:`updlrm.pim._scatter.route` into ``out`` = (tile, local, bag, pos) and ``host`` =
        (rows, offsets, pos); returns ``(m, cache_hits, reads_saved per slice, n_host)``."""
        return _scatter.route(indices, offsets, self.num_rows, self.row_cache, self.cache_ptr, self.cache_rows,
                              self.row_loc, self.dpu_bits, self.dpu_rank, self.replica_ptr, self.replica_cut,
                              self.group_ptr, self.group_tiles, self.n_slices, *out, *host, self.by_lookups)


@dataclass
class Plan:
    """Where every table lives on a set of DPUs, and what the planner expects of it."""

    level: str
    nr_dpus: int
    dpus_per_rank: int
    mram_bytes: int
    mram_reserve: int
    batch_size: int
    tables: list[TablePlan]
    tiles: list[Tile]
    predicted: dict[str, float] = field(default_factory=dict)   # MODELLED seconds per stage
    notes: dict[str, Any] = field(default_factory=dict)
    _tile_columns: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def table_region_bytes(self) -> int:
        """Bytes of MRAM per DPU that tiles may use (the rest is the kernel's I/O reserve)."""
        return self.mram_bytes - self.mram_reserve

    # ------------------------------------------------------------------ checks
    def check(self, tables: Sequence[Any]) -> None:
        """Raise :class:`InvalidInputError` unless ``tables`` (EmbeddingTable or TableSpec) are the
        tables this plan was made for (names, shapes, dtypes, pooling, weighting, order)."""
        if len(tables) != len(self.tables):
            raise InvalidInputError(f"plan is for {len(self.tables)} tables, the model has {len(tables)}")
        for i, (tp, table) in enumerate(zip(self.tables, tables)):
            got, want = TableSpec.of(table), tp.spec
            for fld in ("name", "rows", "dim", "dtype", "pooling", "weighted"):
                if getattr(got, fld) != getattr(want, fld):
                    raise InvalidInputError(f"table #{i} ({want.name!r}): plan has {fld}={getattr(want, fld)!r}, "
                                            f"the model has {fld}={getattr(got, fld)!r}")

    def validate(self) -> None:
        """Internal consistency: every row mapped once, tiles inside MRAM and not overlapping,
        group/tile tables coherent. Raises :class:`InvalidInputError` naming what is wrong."""
        region = self.table_region_bytes
        spans: dict[int, list[tuple[int, int]]] = {}
        for i, tile in enumerate(self.tiles):
            if not 0 <= tile.dpu < self.nr_dpus:
                raise InvalidInputError(f"tile {i}: DPU {tile.dpu} outside 0..{self.nr_dpus - 1}")
            if tile.row_stride % 8 or tile.mram_offset % 8 or tile.mram_offset < 0:
                raise InvalidInputError(f"tile {i}: offset {tile.mram_offset} / stride {tile.row_stride} not 8-aligned")
            if tile.mram_offset + tile.nbytes > region:
                raise InvalidInputError(f"tile {i}: ends at {tile.mram_offset + tile.nbytes} B, past the "
                                        f"{region} B table region of DPU {tile.dpu}")
            spans.setdefault(tile.dpu, []).append((tile.mram_offset, tile.mram_offset + tile.nbytes))
        for dpu, sp in spans.items():
            sp.sort()
            for (a0, a1), (b0, _) in zip(sp, sp[1:]):
                if b0 < a1:
                    raise InvalidInputError(f"DPU {dpu}: tiles overlap at MRAM offset {b0}")
        for t, tp in enumerate(self.tables):
            if tp.placement != "pim":
                continue
            name = tp.spec.name
            n_all = tp.spec.rows + tp.n_cache
            if tp.row_group.shape != (n_all,) or tp.row_local.shape != (n_all,):
                raise InvalidInputError(f"table {name!r}: row maps must have {n_all} entries")
            if tp.col_bounds[0] != 0 or tp.col_bounds[-1] != tp.spec.dim or np.any(np.diff(tp.col_bounds) <= 0):
                raise InvalidInputError(f"table {name!r}: bad column bounds {tp.col_bounds}")
            if tp.split_by not in SPLIT_BY:
                raise InvalidInputError(f"table {name!r}: split_by {tp.split_by!r} is not one of {SPLIT_BY}")
            host = tp.row_group < 0
            if np.any(tp.row_group < -1) or int(host.sum()) != tp.n_host_rows or np.any(host[tp.spec.rows:]) or \
               np.any(tp.row_local[host] != -1):
                raise InvalidInputError(f"table {name!r}: {int(host.sum())} rows marked host-resident (-1), "
                                        f"the plan says {tp.n_host_rows}; cache rows must be on the DPUs")
            if tp.n_host_rows and (tp.spec.pooling == "max" or
                                   (tp.n_cache and np.any(host[tp.cache_rows]))):
                raise InvalidInputError(f"table {name!r}: host-resident rows in a MAX-pooled table or a cache entry")
            on_dpus = ~host
            grp, loc = tp.row_group[on_dpus], tp.row_local[on_dpus]
            sizes = np.bincount(grp, minlength=tp.n_groups)
            # (group, local) pairs must be a bijection onto 0..size_g-1 within every group
            key = grp.astype(np.int64) * n_all + loc
            if np.unique(key).size != grp.size or np.any(loc < 0) or np.any(loc >= sizes[grp]):
                raise InvalidInputError(f"table {name!r}: row_local is not a numbering of each group's rows")
            expect_ptr = np.concatenate([[0], np.cumsum(tp.group_replicas.astype(np.int64) * tp.n_slices)])
            if not np.array_equal(tp.group_ptr, expect_ptr) or len(tp.group_tiles) != expect_ptr[-1]:
                raise InvalidInputError(f"table {name!r}: group_ptr does not match group_replicas")
            rep_ptr = np.concatenate([[0], np.cumsum(tp.group_replicas.astype(np.int64))])
            cut = tp.replica_cut
            same_group = np.diff(np.repeat(np.arange(tp.n_groups), tp.group_replicas)) == 0
            if not np.array_equal(tp.replica_ptr, rep_ptr) or len(cut) != rep_ptr[-1] or np.any(cut < 0) or \
               np.any(cut[rep_ptr[1:] - 1] != 1.0) or np.any(np.diff(cut)[same_group] < 0):
                raise InvalidInputError(f"table {name!r}: replica cuts must rise to 1 within every group")
            for g in range(tp.n_groups):
                for rep in range(int(tp.group_replicas[g])):
                    for j in range(tp.n_slices):
                        tile = self.tiles[int(tp.group_tiles[tp.group_ptr[g] + rep * tp.n_slices + j])]
                        if (tile.table, tile.group, tile.replica) != (t, g, rep) or \
                           (tile.col_start, tile.col_stop) != (tp.col_bounds[j], tp.col_bounds[j + 1]) or \
                           tile.num_rows != sizes[g]:
                            raise InvalidInputError(f"table {name!r}: tile of group {g} replica {rep} slice {j} "
                                                    f"does not describe that block")

    def tile_arrays(self) -> dict[str, np.ndarray]:
        """The tiles as parallel NumPy arrays (for a Cython scatter): ``table``, ``group``,
        ``replica``, ``dpu``, ``mram_offset``, ``row_stride``, ``col_start``, ``col_stop``,
        ``num_rows`` (int64) and ``bag_share`` (float64), indexed by tile id."""
        ints = ("table", "group", "replica", "dpu", "mram_offset", "row_stride", "col_start", "col_stop", "num_rows")
        out = {name: np.fromiter((getattr(t, name) for t in self.tiles), np.int64, len(self.tiles)) for name in ints}
        out["bag_share"] = np.fromiter((t.bag_share for t in self.tiles), np.float64, len(self.tiles))
        return out

    # ------------------------------------------------------------------ routing
    def route(self, table: int, indices: np.ndarray, offsets: np.ndarray) -> Routed:
        """Route one table's bags (``offsets`` in ``B+1`` form) as an executor must (module doc)."""
        tp = self.tables[table]
        if tp.placement != "pim":
            raise InvalidInputError(f"table {tp.spec.name!r} is CPU-resident in this plan")
        idx = np.ascontiguousarray(indices, dtype=np.int64)
        off = np.ascontiguousarray(offsets, dtype=np.int64)
        # the Cython routing trusts its input (the backend validates batches first)
        if idx.size and (idx.min() < 0 or idx.max() >= tp.spec.rows):
            raise InvalidInputError(f"table {tp.spec.name!r}: indices must lie in 0..{tp.spec.rows - 1}")
        if off.size < 1 or off[0] < 0 or np.any(np.diff(off) < 0) or off[-1] > idx.size:
            raise InvalidInputError(f"table {tp.spec.name!r}: offsets must rise from 0 to at most {idx.size}")
        cap = idx.size * tp.n_slices
        tile, local, bag = (np.empty(cap, np.int32) for _ in range(3))
        host_rows, host_off = np.empty(idx.size, np.int64), np.empty(off.size, np.int64)
        no_pos = np.zeros(0, np.int64)
        m, hits, saved, n_host = TableRoute.of(tp).route(idx, off, (tile, local, bag, no_pos),
                                                         (host_rows, host_off, no_pos))
        return Routed(tile[:m], local[:m], bag[:m], hits, saved * tp.n_slices, host_rows[:n_host], host_off)

    def tile_image(self, tile_id: int, weight: np.ndarray) -> np.ndarray:
        """The rows of a tile as the executor writes them to MRAM (float32 ``[num_rows, width]``,
        cache rows as the sums of their members), before any integer quantisation."""
        tile = self.tiles[tile_id]
        tp = self.tables[tile.table]
        rows = np.flatnonzero(tp.row_group == tile.group)
        order = np.empty(len(rows), np.int64)
        order[tp.row_local[rows]] = rows
        out = np.empty((len(rows), tile.width), np.float32)
        base = order < tp.spec.rows
        cols = slice(tile.col_start, tile.col_stop)
        out[base] = weight[order[base], cols]
        for pos in np.flatnonzero(~base):
            e = int(order[pos]) - tp.spec.rows
            members = tp.cache_rows[tp.cache_ptr[e]:tp.cache_ptr[e + 1]]
            out[pos] = weight[members, cols].astype(np.float64).sum(axis=0)
        return out

    # ------------------------------------------------------------------ work and time
    def needs_row_map(self, table: int) -> bool:
        """Whether the executor must map this table's indices one by one (row groups or cache);
        otherwise whole bags are copied to one tile."""
        tp = self.tables[table]
        return tp.placement == "pim" and (tp.n_groups > 1 or tp.n_cache > 0 or tp.n_host_rows > 0)

    def is_whole(self, table: int) -> bool:
        """Whether a PIM table's bags are copied to their replica as they are (one group numbered
        as the table, one column slice, no cache, no host rows): the scatter needs no routing."""
        tp = self.tables[table]
        return (tp.placement == "pim" and not self.needs_row_map(table) and tp.n_slices == 1
                and np.array_equal(tp.row_local, np.arange(tp.spec.rows, dtype=tp.row_local.dtype)))

    def routed_tiles(self) -> np.ndarray:
        """Mask of the tiles whose tables the scatter routes read by read (not whole)."""
        return self._columns()[3]

    def _columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per tile: its DPU, row stride, width and whether it is routed (read-only). Kept until
        ``tiles`` is replaced: the backend models every batch with them, and on a Criteo plan
        building them took 2 ms."""
        if self._tile_columns is None or self._tile_columns[0] is not self.tiles:
            whole = {t: self.is_whole(t) for t in {tile.table for tile in self.tiles}}
            columns = (np.array([t.dpu for t in self.tiles], np.int64),
                       np.array([t.row_stride for t in self.tiles], np.float64),
                       np.array([t.width for t in self.tiles], np.float64),
                       np.array([not whole[tile.table] for tile in self.tiles], bool))
            for a in columns:
                a.setflags(write=False)
            self._tile_columns = (self.tiles, columns)
        return self._tile_columns[1]

    def work_from_tile_counts(self, reads: np.ndarray, bags: np.ndarray, *, host_routed_reads: int,
                              cpu_lookup_units: float, host_copy_lookups: int = 0, host_row_lookups: float = 0.0,
                              host_add_bytes: float = 0.0) -> BatchWork:
        """Per-DPU :class:`BatchWork` from per-tile rows read and partial sums written.
        ``cpu_lookup_units`` counts the CPU-resident tables and the host rows of hybrid tables;
        ``host_add_bytes``: the hybrid tables' host partials the host adds to the DPUs' result."""
        n = self.nr_dpus
        value_mode = self.tables[self.tiles[0].table].value_mode if self.tiles else "fp32"
        work = BatchWork.zeros(n, value_mode)
        if self.tiles:
            dpu, stride, width, _ = self._columns()
            calls = np.ceil(stride / 2048)
            acc = lambda x: np.bincount(dpu, weights=x, minlength=n).astype(np.float64)  # noqa: E731
            work.dma_read_calls = acc(reads * calls)
            work.dma_read_bytes = acc(reads * stride)
            work.dma_write_calls = acc(bags * calls)
            work.dma_write_bytes = acc(bags * stride)
            work.rows = acc(reads)
            work.elements = acc(reads * width)
            work.bags = acc(bags)
            # one packed push: 4-byte local row per read, 4-byte offset per partial, 8-byte tile header
            work.push_bytes = acc(reads * 4.0 + bags * 4.0 + 8.0)
            work.pull_bytes = acc(bags * stride)
        work.host_routed_reads = host_routed_reads
        work.host_copy_lookups = host_copy_lookups
        work.host_row_lookups = host_row_lookups
        work.host_partials = float(np.sum(np.asarray(bags, np.float64)[self.routed_tiles()]))
        work.cpu_lookup_units = cpu_lookup_units
        if host_add_bytes:
            work.host_reduce_bytes = float(work.pull_bytes.sum()) + host_add_bytes
        return work

    def host_add_bytes(self, batch_size: int) -> float:
        """Bytes of host partials (hybrid tables) added to the DPUs' result per batch."""
        return float(sum(batch_size * tp.spec.dim * VALUE_BYTES for tp in self.tables
                         if tp.placement == "pim" and tp.n_host_rows))

    def work(self, indices: Sequence[np.ndarray], offsets: Sequence[np.ndarray],
             cpu: CpuModel | None = None) -> tuple[BatchWork, dict[str, int]]:
        """Route a whole batch (per-table indices and ``B+1`` offsets); returns the per-DPU work
        (host lookups in ``cpu``'s units) and cache statistics (``reads``: row reads per column
        slice after the cache, ``reads_saved``, ``cache_hits``)."""
        cpu = cpu or CpuModel()
        nt = len(self.tables)
        reads = np.zeros(len(self.tiles))
        bags = np.zeros(len(self.tiles))
        routed = copied = host_rows = 0
        cpu_units = 0.0
        stats = {"reads": 0, "reads_saved": 0, "cache_hits": 0}
        for t in range(nt):
            tp = self.tables[t]
            n_idx = len(indices[t])
            if tp.placement != "pim":
                cpu_units += cpu.units(tp.spec, n_idx)
                continue
            r = self.route(t, indices[t], offsets[t])
            if self.is_whole(t):
                copied += n_idx
            else:
                routed += len(r.tile)
            cpu_units += cpu.units(tp.spec, len(r.host_rows))
            host_rows += len(r.host_rows)
            reads += np.bincount(r.tile, minlength=len(self.tiles))
            pairs = np.unique(r.tile.astype(np.int64) * (len(offsets[t]) + 1) + r.bag)
            bags += np.bincount(pairs // (len(offsets[t]) + 1), minlength=len(self.tiles))
            stats["reads"] += len(r.tile)
            stats["reads_saved"] += r.reads_saved
            stats["cache_hits"] += r.cache_hits
        return self.work_from_tile_counts(reads, bags, host_routed_reads=routed, cpu_lookup_units=cpu_units,
                                          host_row_lookups=host_rows,
                                          host_copy_lookups=copied,
                                          host_add_bytes=self.host_add_bytes(len(offsets[0]) - 1 if nt else 0)), stats

    def expected_work(self) -> BatchWork:
        """Per-DPU work of the reference batch as the planner expects it (from the profile)."""
        reads = np.array([t.expected_reads for t in self.tiles])
        bags = np.array([t.expected_bags for t in self.tiles])
        per_table = self.notes.get("expected_lookups", [0.0] * len(self.tables))
        copied = sum(n for t, n in enumerate(per_table) if self.is_whole(t))
        cpu_units = float(self.notes.get("expected_cpu_units", 0.0))
        return self.work_from_tile_counts(reads, bags, host_routed_reads=int(reads[self.routed_tiles()].sum()),
                                          cpu_lookup_units=cpu_units,
                                          host_row_lookups=float(self.notes.get("expected_host_row_lookups", 0.0)),
                                          host_copy_lookups=int(copied), host_add_bytes=self.host_add_bytes(self.batch_size))

    @property
    def cpu_rates(self) -> CpuRates | None:
        """The CPU baseline the plan was made with (None: a plan from before it was recorded)."""
        rates = self.notes.get("cpu_rates")
        return None if rates is None else CpuRates(**rates)

    def predict(self, cost: CostModel | None = None) -> StageTimes:
        """MODELLED stage times of the reference batch."""
        return (cost or CostModel()).stages(self.expected_work())

    def mram_used(self) -> np.ndarray:
        """Bytes of table region used per DPU."""
        used = np.zeros(self.nr_dpus, np.int64)
        for t in self.tiles:
            used[t.dpu] = max(used[t.dpu], t.mram_offset + t.nbytes)
        return used

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.json`` (everything but the big arrays) and ``<path>.npz`` (row maps)."""
        arrays = {}
        tables_meta = []
        for i, tp in enumerate(self.tables):
            tables_meta.append({"spec": asdict(tp.spec), "placement": tp.placement,
                                "value_mode": tp.value_mode, "col_bounds": list(map(int, tp.col_bounds)),
                                "n_host_rows": int(tp.n_host_rows), "split_by": tp.split_by})
            for name in _TABLE_ARRAYS:
                arr = getattr(tp, name)
                if arr is not None:
                    arrays[f"t{i}_{name}"] = arr
        meta = {"level": self.level, "nr_dpus": self.nr_dpus,
                "dpus_per_rank": self.dpus_per_rank, "mram_bytes": self.mram_bytes,
                "mram_reserve": self.mram_reserve, "batch_size": self.batch_size,
                "predicted_modelled_s": self.predicted, "notes": self.notes,
                "tables": tables_meta, "tiles": [asdict(t) for t in self.tiles]}
        return write_versioned(path, PLAN_FORMAT, PLAN_VERSION, meta, arrays, _json_default)

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        """Read a plan written by :meth:`save` (and check its internal consistency)."""
        meta, npz_path = read_versioned_json(path, PLAN_FORMAT, PLAN_VERSION, "a PIM plan")
        tables = []
        with np.load(npz_path) as z:
            for i, tm in enumerate(meta["tables"]):
                arrays = {name: z[f"t{i}_{name}"] for name in _TABLE_ARRAYS if f"t{i}_{name}" in z}
                tables.append(TablePlan(TableSpec(**tm["spec"]), tm["placement"], tm["value_mode"],
                                        tm["col_bounds"], tm["n_host_rows"], **arrays,
                                        split_by=tm.get("split_by", "bags")))
        plan = cls(meta["level"], meta["nr_dpus"], meta["dpus_per_rank"], meta["mram_bytes"], meta["mram_reserve"],
                   meta["batch_size"], tables, [Tile(**t) for t in meta["tiles"]],
                   meta["predicted_modelled_s"], meta["notes"])
        plan.validate()
        return plan


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__}")

