"""The partitioner: cut embedding tables into tiles, place them on DPUs, decide what stays on the CPU.

Three levels (UpDLRM's), selected by :attr:`PlannerConfig.level`:

``uniform``
    Tables are cut into equal contiguous row ranges (x column slices); replicas split the bags.
    Popularity is ignored: the planner assumes every row equally likely.
``popularity``
    Each row's expected accesses come from the :class:`~updlrm.pim.profile.AccessProfile`.
    Rows are remapped so every row group gets the same expected accesses (greedy LPT over rows),
    rows too hot for any one tile become single-row groups, and replicas are sized per group, so
    each DPU gets the same *expected work*, not the same rows.
``cache``
    ``popularity`` plus a partial-sum cache: disjoint groups of rows that the profile saw together
    in many bags get one extra pre-summed row each (GRACE-style); a bag holding a whole group reads
    that row instead of its members. Cache rows are balanced across DPUs together with the regular
    rows (they are rows with their own expected accesses).

Pipeline (TorchRec-like, small): for every table enumerate column cuts, pick row groups and
replicas under the MRAM budget by the cost model (:mod:`updlrm.pim.cost_model`); assign all tiles
to DPUs by greedy LPT on modelled per-tile time with MRAM capacity, then move/swap tiles off the
slowest DPU while that helps (replicas only where MRAM remains after one copy of every group);
then move tables to the CPU while that lowers the modelled batch latency (small tables, small
batches). At the popularity and cache levels a table left on the CPU (typically one too big for
the DPUs) may become *hybrid*: its hottest rows by the profile go to the DPUs as row groups, its
cold tail stays on the host and is pooled by the CPU kernel while the DPUs work; the planner tries
the cut points ``hybrid_row_shares`` per table (largest tables first) and keeps the modelled-fastest,
if it beats the table staying whole on the CPU. Everything stays on the CPU if PIM cannot win.
Every time here is MODELLED.
"""
from __future__ import annotations

import functools
import heapq
import logging
import math
import time
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any, Callable, Iterable, Mapping, Sequence

import numba
import numpy as np

from updlrm.errors import CapacityError, InvalidInputError

from .cost_model import (DEFAULT_CPU_LOOKUPS_PER_S, DPUS_PER_RANK, MAX_DMA_BYTES, MRAM_BYTES, CostModel, CpuModel,
                         CpuRates)
from .plan import SPLIT_BY, VALUE_BYTES, Plan, TablePlan, TableSpec, Tile
from .plot import write_load_png
from .profile import AccessProfile

log = logging.getLogger(__name__)


class Level(str, Enum):
    """Partitioning level (see the module docstring)."""

    UNIFORM = "uniform"
    POPULARITY = "popularity"
    CACHE = "cache"


@dataclass(frozen=True)
class PlannerConfig:
    """Knobs of :func:`make_plan`.

    Attributes:
        nr_dpus: DPUs available (real servers: ranks of <= 64, e.g. 2,560 = 40 ranks).
        level: :class:`Level` or its name.
        batch_size: the batch the plan is tuned for (expected work is per such batch).
        pooling: indices per bag assumed for tables the profile does not describe.
        value_mode: ``"fp32"`` (soft-float adds on the DPU) or ``"int32"`` (fixed point).
        mram_reserve: bytes of each DPU's MRAM kept for the kernel's index/offset/result buffers.
        max_col_parts: most column slices a table may be cut into.
        col_parts: force the number of column slices of some tables (by name).
        tiles_per_dpu: granularity: tiles are sized to about 1/tiles_per_dpu of a DPU's work.
        max_tile_fraction: a tile may fill at most this share of a DPU's table region, so every
            DPU can take several tiles (room for balancing).
        hot_fraction: a row whose single-row tile would exceed this share of a tile's target
            load becomes its own (replicated) group (popularity and cache levels).
        min_bags_per_replica: a replica serves at least this many bags of the reference batch
            (bag ranges are whole bags: finer shares would not hold).
        max_cache_entries: cache entries per table (cache level).
        min_cache_share: a group is cached only if it occurs in at least this share of bags.
        keep_caches: keep a table's cache even where the model says it costs the host more than
            it saves (a table small enough to be copied whole must then be routed index by
            index); for measuring what a cache saves on a trace.
        min_trusted_count: rows seen fewer times than this in the profile are treated as equally
            hot (their mean count): balancing on sampling noise would only overfit the sample.
        memory_fill: plan at most this share of the total table region (packing slack).
        allow_cpu: let tables stay on the CPU when the model says that is faster.
        hybrid: let a table the plan would keep on the CPU put its hottest rows on the DPUs and
            keep its cold tail on the host (popularity and cache levels, with ``allow_cpu``).
        hybrid_row_shares: the cut points tried per such table (share of its rows, hottest
            first, that go to the DPUs); the modelled-fastest is kept.
        hybrid_tables: force some tables (by name) hybrid with this share of their rows on the
            DPUs (needs a profile and a popularity or cache level; not for MAX pooling).
        improve_iters: tile moves/swaps tried after LPT.
        fewer_dpus: also plan on 1/2 and 1/4 of the DPUs (whole ranks, at least 4) and keep the
            modelled-fastest: more DPUs mean more row groups, so more partial sums to scatter,
            pull and add, which can cost the host more than the extra DPUs save.
        split_by: how the replicas of a group split each batch: ``"bags"`` (each gets its share
            of the bags), ``"lookups"`` (its share of the lookups) or ``"auto"``: whichever
            leaves the plan's critical stages less per-batch noise (:func:`_batch_noise`).
        cost: the cost model.
        cpu_rates: the CPU baseline's rates (:class:`~updlrm.pim.cost_model.CpuRates`) that
            decide what stays on the host. None takes those measured with the profile
            (``AccessProfile.cpu_rates``: the whole batch's and each table's) when it has them,
            else ``cost.cpu``'s, by default a reference figure not measured on this host
            (:mod:`updlrm.pim.calibrate` says why that matters).
    """

    nr_dpus: int = 2560
    level: Level | str = Level.POPULARITY
    batch_size: int = 4096
    pooling: float = 1.0
    value_mode: str = "fp32"
    mram_bytes: int = MRAM_BYTES
    mram_reserve: int = 8 << 20
    dpus_per_rank: int = DPUS_PER_RANK
    max_col_parts: int = 4
    col_parts: Mapping[str, int] | None = None
    tiles_per_dpu: float = 16.0
    max_tile_fraction: float = 0.25
    hot_fraction: float = 0.25
    min_bags_per_replica: int = 16
    max_cache_entries: int = 4096
    min_cache_share: float = 0.001
    keep_caches: bool = False
    min_trusted_count: int = 32
    memory_fill: float = 0.9
    allow_cpu: bool = True
    hybrid: bool = True
    hybrid_row_shares: tuple[float, ...] = (0.001, 0.004, 0.016, 0.064)
    hybrid_tables: Mapping[str, float] | None = None
    improve_iters: int = 4000
    fewer_dpus: bool = True
    split_by: str = "auto"
    cost: CostModel = field(default_factory=CostModel)
    cpu_rates: CpuRates | None = None

    @property
    def max_replicas(self) -> int:
        """Most replicas of one row group: one per DPU, each serving enough bags."""
        return max(1, min(self.nr_dpus, self.batch_size // max(1, self.min_bags_per_replica)))

    def validate(self) -> None:
        if self.nr_dpus < 1:
            raise InvalidInputError(f"nr_dpus must be >= 1, got {self.nr_dpus}")
        if self.batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 0 <= self.mram_reserve < self.mram_bytes or self.mram_reserve % 8:
            raise InvalidInputError(f"mram_reserve must be a multiple of 8 in [0, {self.mram_bytes}), "
                                    f"got {self.mram_reserve}")
        if self.value_mode not in ("fp32", "int32"):
            raise InvalidInputError(f"value_mode must be 'fp32' or 'int32', got {self.value_mode!r}")
        Level(self.level)
        if self.split_by not in ("auto", *SPLIT_BY):
            raise InvalidInputError(f"split_by must be 'auto', 'bags' or 'lookups', got {self.split_by!r}")
        if any(not 0 < share <= 1 for share in self.hybrid_row_shares):
            raise InvalidInputError(f"hybrid_row_shares must lie in (0, 1], got {self.hybrid_row_shares}")


# ---------------------------------------------------------------------------------------------
# per-table access model


@dataclass
class _TableAccess:
    """Expected reads per reference batch of every row (incl. cache rows) of one table."""

    spec: TableSpec
    lookups: float                 # expected lookups per batch (B x pooling)
    real: np.ndarray               # expected reads per row, from the profile (uniform if none)
    planning: np.ndarray           # what the planner believes (uniform at the uniform level)
    cache_ptr: np.ndarray | None = None
    cache_rows: np.ndarray | None = None
    cache_hits: float = 0.0        # expected cache-entry uses per batch
    uncached: tuple | None = None  # (real, planning) before cache rows were added
    dpu_rows: np.ndarray | None = None  # hybrid table: the rows on the DPUs (None: every row)
    host_lookups: float = 0.0      # hybrid table: expected lookups of its host-resident rows
    last_groups: tuple | None = field(default=None, repr=False)  # see _row_groups

    @property
    def n_all(self) -> int:
        return len(self.real)

    @functools.cached_property
    def top_rows(self) -> np.ndarray:
        """The (up to) 4,096 rows with the most planned reads, most first."""
        k = min(4096, self.n_all)
        top = np.argpartition(-self.planning, k - 1)[:k]
        return top[np.argsort(-self.planning[top], kind="stable")]

    @functools.cached_property
    def planning_total(self) -> float:
        return float(self.planning.sum())


def _table_access(spec: TableSpec, profile: AccessProfile | None, t: int, cfg: PlannerConfig,
                  level: Level) -> _TableAccess:
    prof = profile[t] if profile is not None else None
    pooling = prof.mean_pooling if prof is not None and prof.bags else cfg.pooling
    lookups = cfg.batch_size * pooling
    uniform = np.full(spec.rows, lookups / spec.rows)
    if prof is None or prof.lookups == 0:
        real = uniform
    else:
        counts = prof.expected_counts()
        rare = counts < cfg.min_trusted_count
        if rare.any():
            counts[rare] = counts[rare].mean()
        real = counts * (lookups / counts.sum())
    acc = _TableAccess(spec, lookups, real, uniform if level is Level.UNIFORM else real)
    if level is Level.CACHE and prof is not None and not spec.weighted and spec.pooling != "max":
        _add_cache(acc, prof, cfg)
    return acc


def _hybrid_access(acc: _TableAccess, share: float) -> _TableAccess:
    """The DPU part of a hybrid cut of a (cache-less) table: its ``share`` hottest rows by
    ``acc.planning`` (the sample's counts); expectations from ``acc.real``; the rest of its
    expected lookups stay on the host."""
    k = int(min(acc.spec.rows, max(1, round(share * acc.spec.rows))))
    top = np.argpartition(-acc.planning, k - 1)[:k]
    top = top[np.argsort(-acc.planning[top], kind="stable")]
    hot = acc.real[top]
    return _TableAccess(acc.spec, acc.lookups, hot, hot, dpu_rows=top,
                        host_lookups=max(float(acc.real.sum() - hot.sum()), 0.0))


def _drop_unprofitable_caches(accesses: Sequence[_TableAccess], coster: "_TileCoster", cfg: PlannerConfig,
                               usable: int) -> None:
    """Drop a table's cache when the DPU work it saves is worth less than what it costs the host:
    a table that would otherwise go whole to its tiles (bags copied) must then be mapped index by
    index. Saved work spreads over all DPUs (the placement balances them)."""
    cost = cfg.cost
    for acc in accesses:
        if acc.uncached is None:
            continue
        width = acc.spec.dim
        narrowest = _stride(-(-width // max(1, cfg.max_col_parts)))
        fits_whole = acc.spec.rows * narrowest <= usable * cfg.max_tile_fraction
        host = acc.lookups * (cost.scatter_s_per_read - cost.copy_s_per_lookup) if fits_whole else 0.0
        saved = acc.cache_hits * float(coster(1.0, 0.0, _stride(width), width)) / cfg.nr_dpus
        if saved <= host:
            acc.real, acc.planning = acc.uncached
            acc.uncached = acc.cache_ptr = acc.cache_rows = None
            acc.cache_hits = 0.0


def _add_cache(acc: _TableAccess, prof: Any, cfg: PlannerConfig) -> None:
    """Pick disjoint frequent pairs as cache entries; move their expected reads to cache rows."""
    used: set[int] = set()
    members, hits = [], []
    min_count = max(2, cfg.min_cache_share * prof.bags)
    for (a, b), c in zip(prof.pairs.tolist(), prof.pair_counts.tolist()):
        if c < min_count or len(members) >= cfg.max_cache_entries:
            break
        if a in used or b in used:
            continue
        used.update((a, b))
        members.append((a, b))
        hits.append(c / prof.bags * cfg.batch_size)
    if not members:
        return
    rows = np.array(members, np.int64)
    h = np.array(hits)
    acc.uncached = (acc.real, acc.planning)
    real = acc.real.copy()
    np.subtract.at(real, rows[:, 0], h)
    np.subtract.at(real, rows[:, 1], h)
    acc.real = np.concatenate([np.maximum(real, 0.0), h])
    acc.planning = acc.real
    acc.cache_ptr = np.arange(0, 2 * len(members) + 1, 2, dtype=np.int64)
    acc.cache_rows = rows.ravel()
    acc.cache_hits = float(h.sum())


# ---------------------------------------------------------------------------------------------
# modelled cost of a tile


@dataclass(frozen=True)
class _TileCoster:
    """Modelled seconds a tile adds to its DPU's part of the batch (kernel + its transfer share)."""

    cost: CostModel
    value_mode: str
    nr_dpus: int
    push_s_per_byte: float
    pull_s_per_byte: float

    def __call__(self, reads, bags, stride, width):
        kernel, push, pull = self._parts(reads, bags, stride, width)
        return kernel + push + pull

    def vector(self, reads, bags, stride, width) -> np.ndarray:
        """``[..., 3]``: kernel seconds, push seconds, pull seconds (each is maxed over DPUs)."""
        return np.stack(np.broadcast_arrays(*self._parts(reads, bags, stride, width)), axis=-1)

    def _parts(self, reads, bags, stride, width):
        # plain arithmetic, so that the planner's many scalar calls stay scalar (and cheap)
        d = self.cost.dpu
        calls = np.ceil(np.divide(stride, MAX_DMA_BYTES))
        dma = (reads * (calls * d.dma_alpha_read + d.dma_beta * stride)
               + bags * (calls * d.dma_alpha_write + d.dma_beta * stride))
        instr = (reads * (d.instr_per_lookup + width * d.instr_per_add[self.value_mode])
                 + bags * (d.instr_per_bag + width * d.instr_per_zero_element))
        kernel = np.maximum(dma, instr) / d.freq_hz
        push = (reads * 4.0 + bags * 4.0 + 8.0) * self.push_s_per_byte
        pull = bags * stride * self.pull_s_per_byte
        return kernel, push, pull


def _coster(cfg: PlannerConfig, accesses: Sequence[_TableAccess]) -> _TileCoster:
    n = cfg.nr_dpus
    # bandwidth at the per-DPU size a balanced batch would push / pull
    push = sum(a.lookups - a.host_lookups for a in accesses) * 4.0 * 2 / n
    pull = sum(cfg.batch_size * a.spec.dim * VALUE_BYTES for a in accesses) * 2.0 / n
    ranks = -(-n // cfg.dpus_per_rank)
    tm = cfg.cost.transfer
    return _TileCoster(cfg.cost, cfg.value_mode, n,
                       n / tm.bandwidth(max(push, 8.0), ranks, "to_dpu"),
                       n / tm.bandwidth(max(pull, 8.0), ranks, "from_dpu"))


def _bags_touching(reads: np.ndarray | float, batch: int, share: np.ndarray | float = 1.0):
    """Expected partial sums of a group tile whose replica serves ``share`` of the bags, when the
    whole group gets ``reads`` reads per batch (Poisson approximation: a bag reads
    ``reads/batch`` rows of the group on average)."""
    return batch * np.asarray(share, np.float64) * -np.expm1(-np.asarray(reads, np.float64) / batch)


# ---------------------------------------------------------------------------------------------
# per-table options


@dataclass
class _Option:
    """Cut of one table: column slices, regular row groups, replicas, hot single-row groups."""

    table: int
    col_bounds: list[int]
    stride: list[int]            # bytes per row of each slice
    groups: int                  # regular row groups
    replicas: int                # replicas of each regular group (planning estimate)
    hot_rows: np.ndarray         # rows given their own group
    load: float                  # modelled seconds, all tiles together
    memory: int                  # MRAM bytes, all tiles together
    min_groups: int              # fewest regular groups that fit a DPU
    split_hot: bool              # whether hot rows were given their own groups


def _col_options(spec: TableSpec, cfg: PlannerConfig) -> list[list[int]]:
    forced = (cfg.col_parts or {}).get(spec.name)
    parts = [forced] if forced else [c for c in (1, 2, 4, 8, 16) if c <= cfg.max_col_parts]
    out = []
    for c in parts:
        if c < 1 or c > spec.dim:
            raise InvalidInputError(f"table {spec.name!r}: cannot cut {spec.dim} columns into {c} slices")
        bounds = [round(j * spec.dim / c) for j in range(c + 1)]
        # a slice must be a whole number of 8-byte words unless it is the only one
        if c == 1 or all((b1 - b0) * VALUE_BYTES % 8 == 0 for b0, b1 in zip(bounds, bounds[1:])):
            out.append(bounds)
        elif forced:
            raise InvalidInputError(f"table {spec.name!r}: {c} column slices of {spec.dim} columns are "
                                    f"not multiples of 8 bytes")
    return out


def _mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.1f} MiB"


def _stride(width: int) -> int:
    return -(-width * VALUE_BYTES // 8) * 8


def _option(t: int, acc: _TableAccess, bounds: list[int], groups: int, target: float, coster: _TileCoster,
            cfg: PlannerConfig, usable: int, split_hot: bool) -> _Option:
    """Plan one cut (``groups`` regular groups) with replicas sized so tiles stay under ``target``;
    with ``split_hot``, rows too hot for a tile become single-row groups of their own."""
    strides = [_stride(b1 - b0) for b0, b1 in zip(bounds, bounds[1:])]
    widths = np.diff(bounds)
    batch = cfg.batch_size
    tile_cap = int(usable * cfg.max_tile_fraction)
    min_groups = max(1, -(-acc.n_all * max(strides) // tile_cap))
    if max(strides) > tile_cap:
        raise CapacityError(f"table {acc.spec.name!r}: one row slice ({max(strides)} B) exceeds the "
                            f"{tile_cap} B a tile may use ({cfg.max_tile_fraction:.0%} of a DPU's {usable} B "
                            f"table region) by {max(strides) - tile_cap} B")

    def group_load(reads):
        return sum(coster(reads, _bags_touching(reads, batch), s, w) for s, w in zip(strides, widths))

    hot = np.empty(0, np.int64)
    hot_load = 0.0
    hot_tiles_mem = 0
    if split_hot:
        top = acc.top_rows
        loads = group_load(acc.planning[top])
        hot = top[loads > cfg.hot_fraction * target]
        hot_load = float(loads[loads > cfg.hot_fraction * target].sum())
        k_hot = np.clip(np.ceil(loads[loads > cfg.hot_fraction * target] / target), 1, cfg.max_replicas)
        hot_tiles_mem = int(k_hot.sum()) * sum(strides)
    rest = acc.planning_total - float(acc.planning[hot].sum())
    rows = acc.n_all - len(hot)
    groups = max(1, min(groups, rows))
    per_group = group_load(rest / groups)       # one replica serving every bag
    replicas = int(min(max(1, math.ceil(per_group / target)), cfg.max_replicas))
    memory = replicas * rows * sum(strides) + hot_tiles_mem
    return _Option(t, bounds, strides, groups, replicas, hot, per_group * groups + hot_load, memory, min_groups,
                   split_hot)


def _host_seconds(opt: _Option, acc: _TableAccess, cfg: PlannerConfig) -> float:
    """Modelled host work of one table cut per reference batch: the scatter (a whole table -- one
    slice, one group in table order -- has its bags copied; any other cut routes every read once
    per column slice and files a partial sum per (group, bag) touched) and the reduction of the
    partial sums pulled back."""
    cost = cfg.cost
    slices = len(opt.col_bounds) - 1
    whole = (slices == 1 and opt.groups == 1 and len(opt.hot_rows) == 0 and acc.cache_ptr is None
             and acc.dpu_rows is None)
    reads = float(acc.real.sum())
    if whole:
        return reads * cost.copy_s_per_lookup + cfg.batch_size * sum(opt.stride) / cost.reduce_bytes_per_s
    rest = reads - float(acc.real[opt.hot_rows].sum())
    partials = (opt.groups * float(_bags_touching(rest / opt.groups, cfg.batch_size))
                + float(_bags_touching(acc.real[opt.hot_rows], cfg.batch_size).sum()))
    return (slices * (reads * cost.scatter_s_per_read + partials * cost.scatter_s_per_partial)
            + partials * sum(opt.stride) / cost.reduce_bytes_per_s)


def _choose_options(accesses: list[_TableAccess], target: float, coster: _TileCoster, cfg: PlannerConfig,
                    usable: int, level: Level) -> list[_Option]:
    """Cheapest cut per table (column slices x hot-row split, fewest row groups), then fewer
    replicas (more row groups) until the plan fits MRAM."""
    chosen = []
    hot_choices = (False,) if level is Level.UNIFORM else (False, True)
    for t, acc in enumerate(accesses):
        best = best_key = None
        for bounds in _col_options(acc.spec, cfg):
            for split_hot in hot_choices:
                probe = _option(t, acc, bounds, 1, target, coster, cfg, usable, split_hot)
                opt = _option(t, acc, bounds, probe.min_groups, target, coster, cfg, usable, split_hot)
                # DPU work spreads over all DPUs (the placement balances it); the host's
                # scatter and reduction do not
                key = (opt.load / cfg.nr_dpus + _host_seconds(opt, acc, cfg), opt.memory)
                if best is None or key < best_key:
                    best, best_key = opt, key
        chosen.append(best)
    budget = cfg.memory_fill * usable * cfg.nr_dpus
    while sum(o.memory for o in chosen) > budget:
        growable = [o for o in chosen if o.replicas > 1 and o.groups < accesses[o.table].n_all]
        if not growable:
            need = sum(o.memory for o in chosen)
            worst = max(chosen, key=lambda o: o.memory)
            raise CapacityError(
                f"tables need {_mib(need)} of MRAM without replication but {cfg.nr_dpus} DPUs offer "
                f"{_mib(budget)} ({cfg.memory_fill:.0%} of {usable} B each after the {cfg.mram_reserve} B "
                f"reserve): short by {_mib(need - budget)}; largest: {accesses[worst.table].spec.name!r} "
                f"({_mib(worst.memory)}). Remedies: 1) more DPUs, 2) a smaller mram_reserve, 3) keep large "
                f"tables on the CPU")
        o = max(growable, key=lambda o: o.memory)
        chosen[o.table] = _option(o.table, accesses[o.table], o.col_bounds, o.groups * 2, target, coster, cfg,
                                  usable, o.split_hot)
    return chosen


# ---------------------------------------------------------------------------------------------
# row groups


def _materialise(opt: _Option, acc: _TableAccess, level: Level) -> tuple[np.ndarray, np.ndarray]:
    """row_group / row_local of one table: equal contiguous ranges (uniform), or hot single-row
    groups then equal-size groups of rows by descending popularity."""
    n_all = acc.n_all
    group = np.empty(n_all, np.int32)
    local = np.empty(n_all, np.int32)
    if level is Level.UNIFORM or (opt.groups == 1 and len(opt.hot_rows) == 0):
        # (one group: the order inside it does not matter, and the table's own numbering lets the
        # executor copy whole bags without a row map)
        g = (np.arange(n_all, dtype=np.int64) * opt.groups) // n_all
        starts = np.searchsorted(g, np.arange(opt.groups))
        group[:] = g
        local[:] = np.arange(n_all) - starts[g]
        return group, local
    n_hot = len(opt.hot_rows)
    group[opt.hot_rows] = np.arange(n_hot)
    local[opt.hot_rows] = 0
    mask = np.ones(n_all, bool)
    mask[opt.hot_rows] = False
    rest = np.flatnonzero(mask)
    # hottest first, cut into equal-size groups: hot rows share groups (a bag touches few groups,
    # so few partial sums), and replicas sized per group balance the load.
    vals = acc.planning[rest]
    above = vals > vals.min()          # rows above the flat floor; the floor keeps row order
    order = np.concatenate([rest[above][np.argsort(-vals[above], kind="stable")], rest[~above]])
    g = (np.arange(len(order), dtype=np.int64) * opt.groups) // len(order)
    starts = np.searchsorted(g, np.arange(opt.groups))
    group[order] = g + n_hot
    local[order] = np.arange(len(order)) - starts[g]
    return group, local


def _row_groups(opt: _Option, acc: _TableAccess, level: Level) -> tuple[np.ndarray, ...]:
    """Read-only row maps of one table cut (``row_group``, ``row_local``; of the whole table for a
    hybrid one) and per group its rows and expected reads (real, planned). The last result is
    kept on ``acc``: the hybrid search re-plans every table to change one, and these maps of
    multi-million-row tables were half the planner's time."""
    key = (level, opt.groups, opt.hot_rows.tobytes())
    if acc.last_groups is not None:
        last_key, real_in, planning_in, out = acc.last_groups
        if last_key == key and real_in is acc.real and planning_in is acc.planning:
            return out
    group, local = _materialise(opt, acc, level)
    n_groups = int(group.max()) + 1
    size = np.bincount(group, minlength=n_groups)
    real = np.bincount(group, weights=acc.real, minlength=n_groups)
    planned = np.bincount(group, weights=acc.planning, minlength=n_groups)
    if acc.dpu_rows is not None:
        group, local = _expand_rows(group, local, acc.dpu_rows, acc.spec.rows)
    group.setflags(write=False)
    local.setflags(write=False)
    out = (group, local, size, real, planned)
    acc.last_groups = (key, acc.real, acc.planning, out)
    return out


def _expand_rows(group: np.ndarray, local: np.ndarray, dpu_rows: np.ndarray, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row maps of a hybrid table's DPU part (indexed by position in ``dpu_rows``) as maps of
    the whole table, -1 for the host-resident rows."""
    full_group = np.full(rows, -1, np.int32)
    full_local = np.full(rows, -1, np.int32)
    full_group[dpu_rows] = group
    full_local[dpu_rows] = local
    return full_group, full_local


# ---------------------------------------------------------------------------------------------
# tiles to DPUs


@numba.njit(cache=True, nogil=True)
def _lpt_tiles(order, load, nbytes, nr_dpus, capacity, out_dpu):
    """Tiles in ``order`` (heaviest first) each to the DPU with room where it raises the
    objective ``sum_c max_d load[d, c]`` least (ties: the least filled); returns the first tile
    that fits nowhere, or -1."""
    nc = load.shape[1]
    dpu_load = np.zeros((nr_dpus, nc))
    peak = np.zeros(nc)
    free = np.full(nr_dpus, capacity, np.int64)
    for i in range(order.shape[0]):
        t = order[i]
        best = -1
        best_inc = np.inf
        best_fill = np.inf
        for d in range(nr_dpus):
            if free[d] < nbytes[t]:
                continue
            inc = 0.0
            fill = 0.0
            for c in range(nc):
                v = dpu_load[d, c] + load[t, c]
                if v > peak[c]:
                    inc += v - peak[c]
                fill += v
            if inc < best_inc or (inc == best_inc and fill < best_fill):
                best, best_inc, best_fill = d, inc, fill
        if best < 0:
            return t
        out_dpu[t] = best
        free[best] -= nbytes[t]
        for c in range(nc):
            dpu_load[best, c] += load[t, c]
            peak[c] = max(peak[c], dpu_load[best, c])
    return -1


@numba.njit(cache=True, nogil=True)
def _top3(col):
    """Indices of the three largest entries of ``col`` (-1 where there are fewer)."""
    top = np.full(3, -1, np.int64)
    for d in range(col.shape[0]):
        v = col[d]
        if top[0] < 0 or v > col[top[0]]:
            top[2], top[1], top[0] = top[1], top[0], d
        elif top[1] < 0 or v > col[top[1]]:
            top[2], top[1] = top[1], d
        elif top[2] < 0 or v > col[top[2]]:
            top[2] = d
    return top


@numba.njit(cache=True, nogil=True)
def _improve(load, nbytes, dpu, nr_dpus, capacity, iters):
    """Move single tiles off a DPU that sets some component's maximum, to the DPU where the
    objective ``sum_c max_d load[d, c]`` drops most; stop when no move helps."""
    nc = load.shape[1]
    dpu_load = np.zeros((nr_dpus, nc))
    used = np.zeros(nr_dpus, np.int64)
    for t in range(load.shape[0]):
        for c in range(nc):
            dpu_load[dpu[t], c] += load[t, c]
        used[dpu[t]] += nbytes[t]
    tops = np.empty((nc, 3), np.int64)
    for _ in range(iters):
        f = 0.0
        for c in range(nc):
            tops[c] = _top3(dpu_load[:, c])
            f += dpu_load[tops[c, 0], c]
        best_f = f * (1 - 1e-12)
        best_a = -1
        best_d = -1
        for c0 in range(nc):
            hi = tops[c0, 0]
            for a in range(load.shape[0]):
                if dpu[a] != hi:
                    continue
                for d in range(nr_dpus):
                    if d == hi or used[d] + nbytes[a] > capacity:
                        continue
                    g = 0.0
                    for c in range(nc):
                        rest = 0.0
                        for k in range(3):
                            j = tops[c, k]
                            if j >= 0 and j != hi and j != d:
                                rest = dpu_load[j, c]
                                break
                        g += max(rest, dpu_load[hi, c] - load[a, c], dpu_load[d, c] + load[a, c])
                    if g < best_f:
                        best_f, best_a, best_d = g, a, d
        if best_a < 0:
            break
        src = dpu[best_a]
        for c in range(nc):
            dpu_load[src, c] -= load[best_a, c]
            dpu_load[best_d, c] += load[best_a, c]
        used[src] -= nbytes[best_a]
        used[best_d] += nbytes[best_a]
        dpu[best_a] = best_d


# ---------------------------------------------------------------------------------------------
# the planner


def make_plan(tables: Sequence[Any], profile: AccessProfile | None = None,
              config: PlannerConfig | None = None) -> Plan:
    """Plan the placement of ``tables`` (EmbeddingTable or TableSpec) on ``config.nr_dpus`` DPUs.

    With ``config.fewer_dpus`` the plan may leave DPUs idle (it then says how many it uses in
    ``notes["dpus_planned"]``; ``nr_dpus`` stays the DPUs given). Raises :class:`CapacityError`
    if the tables cannot fit (naming the table and the shortfall).
    """
    cfg = config or PlannerConfig()
    cfg.validate()
    cost, rates = planner_cost(cfg, profile)
    cfg = replace(cfg, cost=cost)

    def noisy_total(plan: Plan) -> float:
        split, extra = _batch_noise(plan, profile, cfg.split_by)
        for tp in plan.tables:
            tp.split_by = split
        plan.notes["batch_noise_s"] = extra
        return plan.predicted["total"] + extra

    best, best_n = _plan_on_count(tables, profile, cfg), cfg.nr_dpus
    best_total = noisy_total(best)
    for n in _fewer_dpu_counts(cfg):
        try:
            plan = _plan_on_count(tables, profile, replace(cfg, nr_dpus=n))
        except CapacityError:
            break
        total = noisy_total(plan)
        if total < best_total:
            plan.nr_dpus = cfg.nr_dpus      # the other DPUs stay idle (they cost nothing)
            best, best_n, best_total = plan, n, total
    best.notes["dpus_planned"] = best_n
    best.notes["cpu_rates"] = asdict(rates)
    return best


def planner_cost(cfg: PlannerConfig, profile: AccessProfile | None) -> tuple[CostModel, CpuRates]:
    """The cost model a plan is made with, its CPU baseline resolved as
    ``PlannerConfig.cpu_rates`` says, and those rates (with where they come from)."""
    rates = cfg.cpu_rates
    if rates is None and profile is not None:
        rates = profile.cpu_rates
    if rates is not None:
        return cfg.cost.with_cpu_rates(rates), rates
    cpu = cfg.cost.cpu
    source = ("reference figure, not measured on this host" if cpu.lookups_per_s == DEFAULT_CPU_LOOKUPS_PER_S
              else "the cost model's")
    return cfg.cost, CpuRates(cpu.lookups_per_s, dict(cpu.table_rates), source)


def _batch_noise(plan: Plan, profile: AccessProfile | None, split_by: str = "auto") -> tuple[str, float]:
    """How replicas should split each batch (``"bags"`` or ``"lookups"``; ``split_by`` if not
    ``"auto"``) and the MODELLED seconds real batches then add to ``plan``'s expectation: their
    bag sizes vary around the profile's, which the expectation ignores. Plans on different DPU
    counts are compared with it (more DPUs serve fewer bags each, so vary more).

    Split by bags, each replica files a fixed number of partial sums but reads as many rows as
    its bags hold: the DPUs' reads (kernel, index push) vary. Split by lookups, the reads are
    fixed and the partial sums (pull) vary. Either way a DPU's relative spread is about
    ``cv / sqrt(bags it serves)`` (``cv``: the bag lengths' coefficient of variation in the
    profile) and the slowest of ``n`` DPUs lies about ``sqrt(2 ln n)`` spreads above the mean; the
    split whose varying stages cost less extra time wins (the kernel only counts where it
    would outlast the CPU-side tables). On the Criteo plans of ``docs/cost_model.md``: fp32 values
    (kernel-bound) 43.0 -> 41.6 ms split by lookups; int32 (the kernel hidden) 34.42 ms by bags,
    34.44 by lookups. Bags when nothing is known (fixed-size bags: both splits are the same)."""
    pim = [t for t, tp in enumerate(plan.tables) if tp.placement == "pim"]
    fallback = "bags" if split_by == "auto" else split_by
    if profile is None or not pim:
        return fallback, 0.0
    lookups = np.array([profile[t].lookups for t in pim], np.float64)
    cv = float(np.average([profile[t].bag_length_cv for t in pim], weights=lookups)) if lookups.sum() else 0.0
    bags = plan.expected_work().bags
    active = bags[bags > 0]
    if cv <= 0 or not active.size:
        return fallback, 0.0
    spread = math.sqrt(2 * math.log(max(active.size, 2))) * cv / math.sqrt(float(active.mean()))
    st = plan.predicted
    kernel, cpu = st["kernel"], st["cpu_tables"]
    extra = {"bags": max(kernel * (1 + spread), cpu) - max(kernel, cpu) + spread * st["h2d"],
             "lookups": spread * st["d2h"]}
    split = min(extra, key=extra.get) if split_by == "auto" else split_by
    return split, extra[split]


def _fewer_dpu_counts(cfg: PlannerConfig) -> list[int]:
    """Smaller DPU counts worth planning on: 1/2 and 1/4, in whole ranks of at least 4."""
    if not cfg.fewer_dpus:
        return []
    ranks = cfg.nr_dpus // cfg.dpus_per_rank
    return [r * cfg.dpus_per_rank for r in (ranks // 2, ranks // 4) if r >= 4]


def _plan_on_count(tables: Sequence[Any], profile: AccessProfile | None, cfg: PlannerConfig) -> Plan:
    """:func:`make_plan` on exactly ``cfg.nr_dpus`` DPUs."""
    level = Level(cfg.level)
    specs = [TableSpec.of(t) for t in tables]
    if profile is not None:
        if len(profile) != len(specs):
            raise InvalidInputError(f"profile describes {len(profile)} tables, the model has {len(specs)}")
        for i, (s, p) in enumerate(zip(specs, profile.tables)):
            if p.num_rows != s.rows:
                raise InvalidInputError(f"table #{i} ({s.name!r}): profile has {p.num_rows} rows, table {s.rows}")
    accesses = [_table_access(s, profile, t, cfg, level) for t, s in enumerate(specs)]
    _force_hybrid_tables(specs, accesses, profile, cfg, level)
    on_cpu: set[int] = set()
    while True:
        try:
            plan = _plan_on_dpus(specs, accesses, on_cpu, cfg, level)
            break
        except CapacityError:
            if not cfg.allow_cpu or len(on_cpu) == len(specs):
                raise
            largest = max((t for t in range(len(specs)) if t not in on_cpu), key=lambda t: specs[t].rows * specs[t].dim)
            log.info("tables do not fit %d DPUs: %r stays on the CPU", cfg.nr_dpus, specs[largest].name)
            on_cpu.add(largest)
    if not cfg.allow_cpu:
        return plan
    # move tables to the CPU while the modelled batch gets faster, then re-plan the rest once.
    moved = _tables_better_on_cpu(plan, accesses, cfg, on_cpu)
    if moved != on_cpu:
        candidate = _plan_on_dpus(specs, accesses, moved, cfg, level)
        if candidate.predicted["total"] < plan.predicted["total"]:
            plan = candidate
    if cfg.hybrid and level is not Level.UNIFORM and profile is not None:
        plan = _with_hybrid_tables(plan, specs, accesses, profile, cfg, level)
    all_cpu = _plan_on_dpus(specs, accesses, set(range(len(specs))), cfg, level)
    if plan.tiles and all_cpu.predicted["total"] <= plan.predicted["total"]:
        log.info("PIM does not beat the CPU for this workload (modelled %.3f ms vs %.3f ms): all tables "
                 "stay on the CPU", plan.predicted["total"] * 1e3, all_cpu.predicted["total"] * 1e3)
        plan = all_cpu
    return plan


def _whole_for_hybrid(spec: TableSpec, profile: AccessProfile, t: int, cfg: PlannerConfig) -> _TableAccess:
    """A table's access model for a hybrid cut, no cache: rows ranked by their raw sample counts
    (``planning``: no noise floor, what matters is which rows were seen at all), expected reads
    (``real``) by Good-Turing: a row seen ``c`` times in the sample is expected ``(c+1) N_{c+1} /
    N_c`` times (``N_c``: rows seen ``c`` times), the unseen rows share ``N_1`` — the sample's own
    counts would overstate what the hot rows take of new batches (they were ranked on them)."""
    acc = _table_access(spec, profile, t, replace(cfg, min_trusted_count=0), Level.POPULARITY)
    counts = np.rint(profile[t].expected_counts()).astype(np.int64)
    n_c = np.bincount(counts)
    c = np.arange(len(n_c))
    nxt = np.append(n_c[1:], 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        gt = np.where(n_c > 0, (c + 1) * nxt / n_c, 0.0)
    # Good-Turing for small counts while it is defined (N_{c+1} > 0), the counts themselves above
    small = np.cumprod(nxt > 0).astype(bool) & (c < 16)
    smoothed = np.where(small, gt, c)
    smoothed[0] = n_c[1] / max(n_c[0], 1) if len(n_c) > 1 else 0.0
    expected = smoothed[counts]
    if expected.sum() > 0:
        acc.real = expected * (acc.lookups / expected.sum())
    return acc


def _force_hybrid_tables(specs: list[TableSpec], accesses: list[_TableAccess], profile: AccessProfile | None,
                         cfg: PlannerConfig, level: Level) -> None:
    """Apply ``cfg.hybrid_tables``."""
    forced = dict(cfg.hybrid_tables or {})
    unknown = set(forced) - {s.name for s in specs}
    if unknown:
        raise InvalidInputError(f"hybrid_tables names unknown tables: {sorted(unknown)}")
    for t, spec in enumerate(specs):
        if spec.name not in forced:
            continue
        share = float(forced[spec.name])
        if profile is None or level is Level.UNIFORM or spec.pooling == "max" or not 0 < share <= 1:
            raise InvalidInputError(f"table {spec.name!r} cannot be hybrid with share {share}: a hybrid table needs "
                                    f"a profile, the popularity or cache level, a share in (0, 1] and no MAX pooling")
        accesses[t] = _hybrid_access(_whole_for_hybrid(spec, profile, t, cfg), share)


def _with_hybrid_tables(plan: Plan, specs: list[TableSpec], accesses: list[_TableAccess], profile: AccessProfile,
                        cfg: PlannerConfig, level: Level) -> Plan:
    """For each table ``plan`` keeps on the CPU, or cuts into several row groups on the DPUs
    because it is too big for one tile (largest first; not MAX-pooled, profiled), try putting its
    hottest rows on the DPUs and the rest on the host at every cut point of
    ``cfg.hybrid_row_shares``, and keep the cut with the lowest modelled batch time if it beats
    the table's current placement. (A big table all on the DPUs splits a bag over many row
    groups: with a steep skew its cold tail can cost more partial sums than pooling it on the
    host does.)"""
    on_cpu = {t for t, tp in enumerate(plan.tables) if tp.placement != "pim"}
    tile_cap = (cfg.mram_bytes - cfg.mram_reserve) * cfg.max_tile_fraction
    big = {t for t in range(len(specs)) if t not in on_cpu and accesses[t].dpu_rows is None
           and specs[t].rows * _stride(specs[t].dim) > tile_cap}
    current = list(accesses)
    candidates = sorted((t for t in on_cpu | big if specs[t].pooling != "max" and profile[t].lookups > 0),
                        key=lambda t: -specs[t].rows * specs[t].dim)
    for t in candidates:
        whole = _whole_for_hybrid(specs[t], profile, t, cfg)
        best_acc = None
        for share in sorted(cfg.hybrid_row_shares):
            trial = list(current)
            trial[t] = _hybrid_access(whole, share)
            try:
                candidate = _plan_on_dpus(specs, trial, on_cpu - {t}, cfg, level)
            except CapacityError:
                break                  # larger cuts need more MRAM still
            if candidate.predicted["total"] < plan.predicted["total"]:
                plan, best_acc = candidate, trial[t]
        if best_acc is not None:
            current[t] = best_acc
            on_cpu.discard(t)
            log.info("table %r: %d hottest rows on the DPUs, %d on the host (modelled %.3f ms)", specs[t].name,
                     len(best_acc.dpu_rows), specs[t].rows - len(best_acc.dpu_rows), plan.predicted["total"] * 1e3)
    return plan


def _host_units(accesses: list[_TableAccess], on_cpu: Iterable[int], cpu: CpuModel) -> float:
    """Expected lookup units the CPU kernel pools per batch: every lookup of the tables
    ``on_cpu``, and the host-resident (cold) rows of the hybrid tables among the others."""
    on_cpu = set(on_cpu)
    return sum(cpu.units(a.spec, a.lookups if t in on_cpu else a.host_lookups) for t, a in enumerate(accesses))


def _plan_on_dpus(specs: list[TableSpec], accesses: list[_TableAccess], on_cpu: set[int], cfg: PlannerConfig,
                  level: Level) -> Plan:
    usable = cfg.mram_bytes - cfg.mram_reserve
    pim = [t for t in range(len(specs)) if t not in on_cpu]
    tables = [TablePlan(specs[t], "cpu", cfg.value_mode) for t in range(len(specs))]
    plan = Plan(level.value, cfg.nr_dpus, cfg.dpus_per_rank, cfg.mram_bytes, cfg.mram_reserve, cfg.batch_size,
                tables, [], notes={"expected_cpu_units": _host_units(accesses, on_cpu, cfg.cost.cpu),
                                   "expected_all_units": _host_units(accesses, range(len(accesses)), cfg.cost.cpu),
                                   "expected_lookups_pim": 0.0,
                                   "expected_host_row_lookups": sum(a.host_lookups for t, a in enumerate(accesses)
                                                                    if t not in on_cpu),
                                   "expected_lookups": [a.lookups for a in accesses]})
    if not pim:
        plan.predicted = cfg.cost.stages(plan.expected_work()).as_dict()
        return plan
    acc_pim = [accesses[t] for t in pim]
    coster = _coster(cfg, acc_pim)
    if not cfg.keep_caches:
        _drop_unprofitable_caches(acc_pim, coster, cfg, usable)
    # target tile load: an even share of the cheapest total, tiles_per_dpu tiles per DPU; twice
    # (the replicas chosen change the total a little).
    target = math.inf
    for _ in range(2):
        opts = _choose_options(acc_pim, target, coster, cfg, usable, level)
        target = sum(o.load for o in opts) / (cfg.nr_dpus * cfg.tiles_per_dpu)
    opts = _choose_options(acc_pim, target, coster, cfg, usable, level)

    groups = _Groups()
    for opt, t in zip(opts, pim):
        acc = accesses[t]
        group, local, size, real, planned = _row_groups(opt, acc, level)
        one = sum(coster(planned, _bags_touching(planned, cfg.batch_size), st, w)
                  for st, w in zip(opt.stride, np.diff(opt.col_bounds)))
        if level is Level.UNIFORM:     # one replica count for the table: popularity is not known
            replicas = np.full(len(size), opt.replicas)
        else:
            replicas = np.clip(np.ceil(one / target), 1, cfg.max_replicas)
        groups.add(t, opt, size, real, planned, replicas.astype(np.int64))
        tp = tables[t]
        tp.placement = "pim"
        tp.col_bounds = list(opt.col_bounds)
        if acc.dpu_rows is not None:      # hybrid: the other rows stay on the host
            tp.n_host_rows = specs[t].rows - len(acc.dpu_rows)
        tp.row_group, tp.row_local = group, local
        if acc.cache_ptr is not None:
            tp.cache_ptr, tp.cache_rows = acc.cache_ptr, acc.cache_rows
            tp.row_cache = np.full(specs[t].rows, -1, np.int32)
            tp.row_cache[acc.cache_rows] = np.repeat(np.arange(len(acc.cache_ptr) - 1), np.diff(acc.cache_ptr))
    # the kernel runs beside the CPU-side tables: below their time it does not set the batch's
    plan.tiles = groups.place(tables, coster, cfg, usable, cfg.cost.cpu.seconds_units(plan.notes["expected_cpu_units"]))
    plan.notes.update({
        "expected_lookups_pim": float(sum(accesses[t].lookups for t in pim)),
        "expected_cache_hits": float(sum(accesses[t].cache_hits for t in pim)),
        # a pair entry replaces two reads by one, in every column slice of the table
        "expected_reads_saved": float(sum(accesses[t].cache_hits * len(o.stride) for o, t in zip(opts, pim))),
        "target_tile_load_s": target,
    })
    plan.predicted = cfg.cost.stages(plan.expected_work()).as_dict()
    return plan


class _Groups:
    """Row groups of all PIM tables and their tiles while they are placed on DPUs."""

    def __init__(self) -> None:
        self.table: list[int] = []
        self.local: list[int] = []
        self.bounds: list[list[int]] = []
        self.size: list[int] = []
        self.real: list[float] = []
        self.planned: list[float] = []
        self.replicas: list[int] = []

    def add(self, t: int, opt: _Option, size: np.ndarray, real: np.ndarray, planned: np.ndarray,
            replicas: np.ndarray) -> None:
        for g in range(len(size)):
            self.table.append(t)
            self.local.append(g)
            self.bounds.append(opt.col_bounds)
            self.size.append(int(size[g]))
            self.real.append(float(real[g]))
            self.planned.append(float(planned[g]))
            self.replicas.append(int(replicas[g]))

    def _unit_loads(self, gid: int, coster: _TileCoster, batch: int) -> np.ndarray:
        """``[slices, 3]`` modelled (kernel, push, pull) seconds of one column slice of the group
        if a single replica served every bag (a replica with bag share s costs s times this)."""
        p = self.planned[gid]
        b = self.bounds[gid]
        return np.array([coster.vector(p, _bags_touching(p, batch), _stride(b1 - b0), b1 - b0)
                         for b0, b1 in zip(b, b[1:])])

    def place(self, tables: list[TablePlan], coster: _TileCoster, cfg: PlannerConfig, usable: int,
              kernel_floor: float = 0.0) -> list[Tile]:
        """LPT with equal bag shares, moves, extra replicas where they lower the slowest DPU,
        moves, then bag shares re-weighted to even the DPUs out (stage by stage unless the kernel
        stays below ``kernel_floor`` seconds, the CPU-side tables' time); returns the tiles with
        DPU, MRAM offset and share, and fills the tables' group arrays."""
        units = [self._unit_loads(gid, coster, cfg.batch_size) for gid in range(len(self.replicas))]
        self._fit_replicas(units, cfg.memory_fill * usable * cfg.nr_dpus)
        try:
            return self._place(tables, units, coster, cfg, usable, kernel_floor)
        except CapacityError:
            if max(self.replicas, default=1) == 1:
                raise
            # the replicas did not pack: a plan without them must not fail because of them
            log.info("replicated tiles do not pack into %d DPUs: planning one replica per group, "
                     "replicas added only where room remains", cfg.nr_dpus)
            self.replicas = [1] * len(self.replicas)
            return self._place(tables, units, coster, cfg, usable, kernel_floor)

    def _group_bytes(self, gid: int) -> int:
        """MRAM bytes of one replica of a group (all its column slices)."""
        b = self.bounds[gid]
        return self.size[gid] * sum(_stride(b1 - b0) for b0, b1 in zip(b, b[1:]))

    def _fit_replicas(self, units: list[np.ndarray], budget: float) -> None:
        """Trim the wanted replica counts to the MRAM ``budget``: every group keeps one replica,
        extra replicas go, one at a time, to the group whose replicas carry the most load each
        (water filling) while room remains."""
        nbytes = [self._group_bytes(gid) for gid in range(len(self.replicas))]
        room = budget - sum(nbytes)
        if room >= sum((k - 1) * b for k, b in zip(self.replicas, nbytes)):
            return
        want = self.replicas
        self.replicas = [1] * len(want)
        heap = [(-float(units[gid].sum()), gid) for gid in range(len(want)) if want[gid] > 1]
        heapq.heapify(heap)
        while heap:
            _, gid = heapq.heappop(heap)
            if nbytes[gid] > room:
                continue
            room -= nbytes[gid]
            k = self.replicas[gid] = self.replicas[gid] + 1
            if k < want[gid]:
                heapq.heappush(heap, (-float(units[gid].sum()) / k, gid))

    def _place(self, tables: list[TablePlan], units: list[np.ndarray], coster: _TileCoster, cfg: PlannerConfig,
               usable: int, kernel_floor: float) -> list[Tile]:
        t_group, t_slice, t_rindex, t_bytes = [], [], [], []
        for gid, k in enumerate(self.replicas):
            b = self.bounds[gid]
            for r in range(k):
                for j in range(len(b) - 1):
                    t_group.append(gid)
                    t_slice.append(j)
                    t_rindex.append(r)
                    t_bytes.append(self.size[gid] * _stride(b[j + 1] - b[j]))
        t_group, t_slice = np.array(t_group), np.array(t_slice)
        load = np.array([units[g][j] / self.replicas[g] for g, j in zip(t_group, t_slice)]).reshape(-1, 3)
        nbytes = np.array(t_bytes, np.int64)
        dpu = np.full(len(load), -1, np.int64)
        failed = _lpt_tiles(np.lexsort((-nbytes, -load.sum(axis=1))), load, nbytes, cfg.nr_dpus, usable, dpu)
        if failed >= 0:
            gid = t_group[failed]
            raise CapacityError(f"no DPU has {nbytes[failed]} B free for a tile of table #{self.table[gid]} "
                                f"(group {self.local[gid]}); tiles total {_mib(nbytes.sum())} on "
                                f"{cfg.nr_dpus} DPUs x {usable} B")
        _improve(load, nbytes, dpu, cfg.nr_dpus, usable, cfg.improve_iters)
        load, nbytes, dpu, t_group, t_slice, t_rindex = self._add_replicas(
            load, nbytes, dpu, t_group, t_slice, list(t_rindex), units, cfg, usable)
        _improve(load, nbytes, dpu, cfg.nr_dpus, usable, cfg.improve_iters)
        rep_group = np.repeat(np.arange(len(self.replicas)), self.replicas)
        rep_first = np.searchsorted(rep_group, np.arange(len(self.replicas)))
        rep = rep_first[t_group] + t_rindex
        unit = np.array([units[g][j] for g, j in zip(t_group, t_slice)]).reshape(-1, 3)
        share = 1.0 / np.asarray(self.replicas, np.float64)[rep_group]
        # Evening out each stage (kernel, push, pull) on its own pays where the kernel sets the
        # batch time (held-out Criteo batches: fp32 41.5 vs 42.5 ms, every table on the DPUs 1-5%);
        # where the CPU-side tables outlast even the kernel's slowest DPU at equal shares, it only
        # costs the transfers (int32 with the CPU fallback: 34.7 vs 34.1 ms): there the DPUs'
        # summed seconds are evened out.
        kernel_peak = _dpu_loads(unit[:, :1], dpu, rep, share, cfg.nr_dpus).max()
        cols = unit if kernel_peak >= kernel_floor else unit.sum(axis=1, keepdims=True)
        share = _even_out(cols, dpu, rep, rep_group, share, cfg.nr_dpus)
        share = _whole_bag_shares(cols, dpu, rep, rep_group, share, cfg.batch_size, cfg.nr_dpus)
        return self._tiles(tables, dpu, nbytes, t_group, t_slice, rep, rep_group, share, cfg.batch_size, cfg.nr_dpus)

    def _add_replicas(self, load, nbytes, dpu, t_group, t_slice, t_rindex, units, cfg, usable):
        """While it lowers the objective (sum over kernel/push/pull of the max over DPUs), give a
        group on a DPU that sets a maximum one more replica (equal shares), placed where it costs
        least: evens out what the tile granularity leaves."""
        n = cfg.nr_dpus
        dpu_load = np.zeros((n, 3))
        np.add.at(dpu_load, dpu, load)
        free = usable - np.bincount(dpu, weights=nbytes, minlength=n).astype(np.int64)
        members: dict[int, list[int]] = {}
        tiles_on: list[list[int]] = [[] for _ in range(n)]
        for i, (g, d) in enumerate(zip(t_group, dpu)):
            members.setdefault(int(g), []).append(i)
            tiles_on[d].append(i)
        load, nbytes, dpu = list(load), list(nbytes), list(dpu)
        t_group, t_slice = list(t_group), list(t_slice)
        objective = dpu_load.max(axis=0).sum()
        for _ in range(2 * n):
            peaks = set(int(d) for d in dpu_load.argmax(axis=0))
            candidates = sorted((i for d in peaks for i in tiles_on[d]), key=lambda i: -load[i].sum())
            accepted = False
            for gid in dict.fromkeys(t_group[i] for i in candidates[:8]):
                k = self.replicas[gid]
                if k >= cfg.max_replicas:
                    continue
                new = units[gid] / (k + 1)
                trial = dpu_load.copy()
                trial_free = free.copy()
                for m in members[gid]:
                    trial[dpu[m]] += new[t_slice[m]] - load[m]
                extra = []
                b = self.bounds[gid]
                for j in range(len(b) - 1):
                    size = self.size[gid] * _stride(b[j + 1] - b[j])
                    room = np.flatnonzero(trial_free >= size)
                    if room.size == 0:
                        break
                    after = trial[room] + new[j]
                    inc = np.maximum(after - trial.max(axis=0), 0).sum(axis=1)
                    d = int(room[np.lexsort((after.sum(axis=1), inc))[0]])
                    trial[d] += new[j]
                    trial_free[d] -= size
                    extra.append((d, j, size))
                trial_objective = trial.max(axis=0).sum()
                if len(extra) != len(b) - 1 or trial_objective >= objective * (1 - 1e-9):
                    continue
                for m in members[gid]:
                    load[m] = new[t_slice[m]]
                for d, j, size in extra:
                    members[gid].append(len(load))
                    tiles_on[d].append(len(load))
                    load.append(new[j])
                    nbytes.append(size)
                    dpu.append(d)
                    t_group.append(gid)
                    t_slice.append(j)
                    t_rindex.append(k)
                self.replicas[gid] = k + 1
                dpu_load, free, objective = trial, trial_free, trial_objective
                accepted = True
                break
            if not accepted:
                break
        return (np.array(load).reshape(-1, 3), np.array(nbytes, np.int64), np.array(dpu, np.int64),
                np.array(t_group), np.array(t_slice), np.array(t_rindex))

    def _tiles(self, tables, dpu, nbytes, t_group, t_slice, rep, rep_group, share, batch, nr_dpus) -> list[Tile]:
        """Tile objects in (group, replica, slice) order; group arrays of the tables; MRAM offsets."""
        rep_first = np.searchsorted(rep_group, np.arange(len(self.replicas)))   # first replica id per group
        tables_seen: dict[int, int] = {}
        for gid, t in enumerate(self.table):
            tables_seen.setdefault(t, gid)
        for t, gid0 in tables_seen.items():
            tp = tables[t]
            n_groups = self.table.count(t)
            reps = np.array(self.replicas[gid0:gid0 + n_groups], np.int32)
            tp.group_replicas = reps
            tp.group_ptr = np.concatenate([[0], np.cumsum(reps.astype(np.int64) * tp.n_slices)])
            tp.group_tiles = np.empty(int(tp.group_ptr[-1]), np.int32)
            tp.replica_ptr = np.concatenate([[0], np.cumsum(reps.astype(np.int64))])
            r0 = rep_first[gid0]
            bags = np.rint(share[r0:r0 + int(reps.sum())] * batch)   # whole bags already
            cut = np.empty(len(bags))
            for g in range(n_groups):
                lo, hi = tp.replica_ptr[g], tp.replica_ptr[g + 1]
                cut[lo:hi] = np.cumsum(bags[lo:hi]) / batch
                cut[hi - 1] = 1.0
            tp.replica_cut = cut
        tiles: list[Tile] = []
        offset = np.zeros(nr_dpus, np.int64)
        for i in np.lexsort((t_slice, rep)):
            gid, j = int(t_group[i]), int(t_slice[i])
            t, g = self.table[gid], self.local[gid]
            tp = tables[t]
            r = int(rep[i] - rep_first[gid])
            b0, b1 = tp.col_bounds[j], tp.col_bounds[j + 1]
            tp.group_tiles[tp.group_ptr[g] + r * tp.n_slices + j] = len(tiles)
            sh = float(share[rep[i]])
            tiles.append(Tile(t, g, r, b0, b1, self.size[gid], _stride(b1 - b0), int(dpu[i]), int(offset[dpu[i]]),
                              bag_share=sh, expected_reads=self.real[gid] * sh,
                              expected_bags=float(_bags_touching(self.real[gid], batch, sh))))
            offset[dpu[i]] += nbytes[i]
        return tiles


def _column_means(unit: np.ndarray, dpu: np.ndarray, rep: np.ndarray, share: np.ndarray, nr_dpus: int) -> np.ndarray:
    """Per column of ``unit`` ([tiles, k] modelled seconds of each tile's whole group), the mean
    load of a DPU that holds tiles. It does not depend on ``share`` (any shares adding up to 1 in
    every group): dividing by it makes a perfectly balanced plan carry 1.0 per DPU and column."""
    active = max(int(np.count_nonzero(np.bincount(dpu, minlength=nr_dpus))), 1)
    return (unit * share[rep][:, None]).sum(axis=0) / active


def _normalised(unit: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``unit / mean`` per column (a column without load stays 0)."""
    return np.divide(unit, mean, out=np.zeros_like(unit), where=mean > 0)


def _dpu_loads(unit_n: np.ndarray, dpu: np.ndarray, rep: np.ndarray, share: np.ndarray, nr_dpus: int) -> np.ndarray:
    """``[nr_dpus, k]`` loads of the tiles with their replicas' bag shares."""
    k = unit_n.shape[1]
    flat = (dpu[:, None] * k + np.arange(k)).ravel()
    return np.bincount(flat, weights=(unit_n * share[rep][:, None]).ravel(), minlength=nr_dpus * k).reshape(nr_dpus, k)


def _even_out(unit: np.ndarray, dpu: np.ndarray, rep: np.ndarray, rep_group: np.ndarray,
              share: np.ndarray, nr_dpus: int, iters: int = 300, step: float = 0.5) -> np.ndarray:
    """Re-weight the bag shares of each group's replicas so the DPUs' loads even out in every
    column of ``unit`` ([tiles, k]).

    Multiplicative updates on the loads normalised per column (:func:`_column_means`): a
    replica on a DPU whose most loaded column is above the mean loses share, one below gains, then
    shares are renormalised within the group (a replica cut into column slices follows its most
    loaded slice). Keeps the shares with the lowest sum of the columns' maxima (seconds).
    """
    n_groups = int(rep_group.max()) + 1 if len(rep_group) else 0
    multi = np.bincount(rep_group, minlength=n_groups)[rep_group] > 1
    mean = _column_means(unit, dpu, rep, share, nr_dpus)
    unit_n = _normalised(unit, mean)
    best, best_peak = share.copy(), np.inf
    for _ in range(iters):
        load = _dpu_loads(unit_n, dpu, rep, share, nr_dpus)
        peak = float(load.max(axis=0) @ mean)     # the slowest DPU's seconds, summed over the columns
        if peak < best_peak:
            best, best_peak = share.copy(), peak
        pressure = load.max(axis=1)
        rep_load = np.zeros(len(share))
        np.maximum.at(rep_load, rep, pressure[dpu])
        factor = np.where(multi, np.maximum(rep_load, 1e-300) ** -step, 1.0)
        share = share * factor
        share /= np.bincount(rep_group, weights=share, minlength=n_groups)[rep_group]
    return best


def _whole_bag_shares(unit: np.ndarray, dpu: np.ndarray, rep: np.ndarray, rep_group: np.ndarray,
                      share: np.ndarray, batch: int, nr_dpus: int) -> np.ndarray:
    """``share`` rounded to whole bags of a ``batch``-bag reference batch (so the planner's
    expectation is what routing that batch does): every replica gets the floor of its bags, then
    each group, heaviest first, gives its remaining bags one at a time to the replica whose DPU
    is least loaded so far (its most loaded column, normalised as in :func:`_even_out`).
    Rounding each group on its own (largest remainder) left the DPUs 2.7% apart on a Criteo
    plan balanced to 0.1%."""
    n_rep = len(share)
    n_groups = int(rep_group.max()) + 1 if n_rep else 0
    bags = np.floor(share * batch + 1e-9)
    short = np.rint(batch - np.bincount(rep_group, weights=bags, minlength=n_groups)).astype(np.int64)
    unit_n = _normalised(unit, _column_means(unit, dpu, rep, share, nr_dpus)) / batch   # a bag's, per tile and column
    load = _dpu_loads(unit_n, dpu, rep, bags, nr_dpus)
    by_rep = np.argsort(rep, kind="stable")         # a group's tiles: [replicas, slices] in this order
    rep_ptr = np.searchsorted(rep_group, np.arange(n_groups + 1))
    tile_ptr = np.searchsorted(rep[by_rep], rep_ptr)
    group_load = np.bincount(rep_group[rep[by_rep]], weights=unit_n[by_rep].sum(axis=1), minlength=n_groups)
    for g in np.argsort(-group_load, kind="stable"):
        if short[g] <= 0:
            continue
        tiles = by_rep[tile_ptr[g]:tile_ptr[g + 1]]
        n_r = int(rep_ptr[g + 1] - rep_ptr[g])
        for _ in range(int(short[g])):
            after = (load[dpu[tiles]] + unit_n[tiles]).max(axis=1).reshape(n_r, -1).max(axis=1)
            r = int(np.argmin(after))
            bags[rep_ptr[g] + r] += 1
            t = tiles.reshape(n_r, -1)[r]
            np.add.at(load, dpu[t], unit_n[t])
    return bags / batch


def _tables_better_on_cpu(plan: Plan, accesses: list[_TableAccess], cfg: PlannerConfig,
                          already: set[int]) -> set[int]:
    """Starting from the tables ``already`` on the CPU, greedily move the table whose move to the
    CPU lowers the modelled latency most, while one does."""
    tile_table = np.array([t.table for t in plan.tiles])
    reads = np.array([t.expected_reads for t in plan.tiles])
    bags = np.array([t.expected_bags for t in plan.tiles])
    on_cpu = set(already)
    routed = plan.routed_tiles()

    def total(cpu_set: set[int]) -> float:
        keep = ~np.isin(tile_table, list(cpu_set))
        on_dpus = [t for t in range(len(accesses)) if t not in cpu_set]
        copied = sum(accesses[t].lookups for t in on_dpus if plan.is_whole(t))
        host_rows = sum(accesses[t].host_lookups for t in on_dpus)
        work = plan.work_from_tile_counts(reads * keep, bags * keep, host_routed_reads=int((reads * keep)[routed].sum()),
                                          host_row_lookups=host_rows,
                                          cpu_lookup_units=_host_units(accesses, cpu_set, cfg.cost.cpu),
                                          host_copy_lookups=int(copied))
        return cfg.cost.stages(work).total

    best = total(on_cpu)
    while True:
        trials = {t: total(on_cpu | {t}) for t in range(len(accesses)) if t not in on_cpu}
        if not trials:
            break
        t, value = min(trials.items(), key=lambda kv: kv[1])
        if value >= best:
            break
        on_cpu.add(t)
        best = value
    return on_cpu


# ---------------------------------------------------------------------------------------------
# report


@dataclass
class PlanReport:
    """What a plan is expected to do with its reference batch. Times are MODELLED.

    Per-DPU arrays: ``mram_used`` (bytes), ``reads`` (expected row slices read), ``elements``
    (expected values read: row slices x their width, the accesses comparable across tiles of
    different widths), ``kernel_s`` (modelled kernel seconds). ``imbalance_*`` are max/mean over all DPUs of the plan.
    ``cache_hit_rate`` is the expected share of bags x cache entries... precisely: expected cache
    entries used per batch / expected lookups of the PIM tables; ``reads_saved`` the row reads
    (per column slice) the cache avoids per batch.
    """

    level: str
    nr_dpus: int
    tiles: int
    tables_on_cpu: list[str]
    mram_used: np.ndarray
    reads: np.ndarray
    elements: np.ndarray
    kernel_s: np.ndarray
    stages_s: dict[str, float]
    cache_hit_rate: float
    reads_saved: float
    cpu_only_s: float
    hybrid_tables: dict[str, int] = field(default_factory=dict)   # name -> rows on the DPUs
    split_by: str = "bags"        # how replicas split a batch
    batch_noise_s: float = 0.0    # what real batches' varying bag sizes add to the expectation
    cpu_lookups_per_s: float = DEFAULT_CPU_LOOKUPS_PER_S   # the CPU-only baseline's rate (units/s)
    cpu_rate_source: str = "unknown"                        # where that rate comes from

    @property
    def active_dpus(self) -> int:
        """DPUs that hold tiles (the imbalances are over these)."""
        return int(np.count_nonzero(self.mram_used))

    @property
    def imbalance_reads(self) -> float:
        return _imbalance(self.reads[self.mram_used > 0])

    @property
    def imbalance_elements(self) -> float:
        return _imbalance(self.elements[self.mram_used > 0])

    @property
    def imbalance_kernel(self) -> float:
        return _imbalance(self.kernel_s[self.mram_used > 0])

    @property
    def speedup_vs_cpu(self) -> float:
        """MODELLED: CPU-only time of the batch / modelled time of the plan."""
        return self.cpu_only_s / self.stages_s["total"] if self.stages_s["total"] else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {"level": self.level, "nr_dpus": self.nr_dpus, "active_dpus": self.active_dpus, "tiles": self.tiles,
                "tables_on_cpu": self.tables_on_cpu, "hybrid_tables": dict(self.hybrid_tables),
                "mram_used_max_mib": float(self.mram_used.max(initial=0)) / 2**20,
                "mram_used_mean_mib": float(self.mram_used.mean()) / 2**20,
                "reads_mean": float(self.reads.mean()), "reads_max": float(self.reads.max(initial=0)),
                "imbalance_reads": self.imbalance_reads, "imbalance_elements": self.imbalance_elements,
                "imbalance_kernel": self.imbalance_kernel,
                "cache_hit_rate": self.cache_hit_rate, "reads_saved": self.reads_saved,
                "modelled_s": dict(self.stages_s), "cpu_only_modelled_s": self.cpu_only_s,
                "modelled_speedup_vs_cpu": self.speedup_vs_cpu, "split_by": self.split_by,
                "batch_noise_s": self.batch_noise_s, "cpu_lookups_per_s": self.cpu_lookups_per_s,
                "cpu_rate_source": self.cpu_rate_source}

    def format(self) -> str:
        """A few lines for humans (every time labelled as modelled)."""
        st = self.stages_s
        lines = [
            f"level {self.level}: {self.tiles} tiles on {self.active_dpus} of {self.nr_dpus} DPUs; CPU-resident tables: "
            f"{', '.join(self.tables_on_cpu) or 'none'}; hybrid (hot rows on the DPUs, the rest on the host): "
            f"{', '.join(f'{k} ({v:,} rows)' for k, v in self.hybrid_tables.items()) or 'none'}",
            f"  MRAM used per DPU: mean {self.mram_used.mean() / 2**20:.1f} MiB, max "
            f"{self.mram_used.max(initial=0) / 2**20:.1f} MiB",
            f"  expected reads per DPU: mean {self.reads.mean():.1f}, max {self.reads.max(initial=0):.1f}; "
            f"imbalance (max/mean) reads {self.imbalance_reads:.3f}, values read {self.imbalance_elements:.3f}, "
            f"modelled kernel time {self.imbalance_kernel:.3f}",
            f"  cache: hit rate {self.cache_hit_rate:.2%} of lookups, {self.reads_saved:.0f} row reads saved per batch",
            f"  replicas split each batch by {self.split_by}; real batches' bag sizes vary: MODELLED "
            f"+{self.batch_noise_s * 1e3:.3f} ms on the slowest DPUs",
            "  MODELLED ms per batch: " + ", ".join(f"{k} {v * 1e3:.3f}" for k, v in st.items()),
            f"  MODELLED CPU-only {self.cpu_only_s * 1e3:.3f} ms (at {self.cpu_lookups_per_s / 1e6:.1f} M lookups/s: "
            f"{self.cpu_rate_source}) -> speedup {self.speedup_vs_cpu:.2f}x",
        ]
        return "\n".join(lines)


def _imbalance(x: np.ndarray) -> float:
    mean = float(np.mean(x)) if len(x) else 0.0
    return float(np.max(x)) / mean if mean > 0 else 1.0


def report(plan: Plan, cost: CostModel | None = None, png: str | None = None) -> PlanReport:
    """Summarise ``plan`` (expected work of its reference batch) with ``cost`` (default: the
    cost model the plan was made with); optionally write the per-DPU load PNG (stacked modelled
    kernel / push / pull seconds)."""
    planned = plan.cpu_rates
    cost = cost or CostModel().with_cpu_rates(planned)
    rate_source = planned.source if planned is not None and cost.cpu.lookups_per_s == planned.lookups_per_s \
        else "given to the report"
    work = plan.expected_work()
    stages = cost.stages(work)
    kernel = stages.kernel_per_dpu if stages.kernel_per_dpu is not None else np.zeros(plan.nr_dpus)
    lookups = float(plan.notes.get("expected_lookups_pim", 0.0))
    hits = float(plan.notes.get("expected_cache_hits", 0.0))
    cpu_only = cost.cpu.seconds_units(float(plan.notes.get("expected_all_units", 0.0)))
    rep = PlanReport(
        level=plan.level, nr_dpus=plan.nr_dpus, tiles=len(plan.tiles),
        tables_on_cpu=[t.spec.name for t in plan.tables if t.placement != "pim"],
        mram_used=plan.mram_used(), reads=work.rows, elements=work.elements, kernel_s=kernel,
        stages_s=stages.as_dict(),
        cache_hit_rate=hits / lookups if lookups else 0.0,
        reads_saved=float(plan.notes.get("expected_reads_saved", 0.0)),
        cpu_only_s=cpu_only,
        hybrid_tables={t.spec.name: t.spec.rows - t.n_host_rows for t in plan.tables if t.n_host_rows},
        split_by=next((t.split_by for t in plan.tables if t.placement == "pim"), "bags"),
        batch_noise_s=float(plan.notes.get("batch_noise_s", 0.0)),
        cpu_lookups_per_s=cost.cpu.lookups_per_s, cpu_rate_source=rate_source)
    if png is not None:
        ranks = -(-plan.nr_dpus // plan.dpus_per_rank)
        # the part of each push that the DPU's own bytes would cost (per-call cost left out)
        push_s, pull_s = (np.array([max(cost.transfer.seconds(b, plan.nr_dpus, d) - cost.transfer.call_cost(d), 0.0)
                                    for b in per_dpu]) for d, per_dpu in (("to_dpu", work.push_bytes),
                                                                          ("from_dpu", work.pull_bytes)))
        write_load_png(png, np.stack([kernel, push_s, pull_s], axis=1),
                       title=f"updlrm plan, level {plan.level}, {plan.nr_dpus} DPUs ({ranks} ranks): "
                             f"MODELLED per-DPU seconds per batch of {plan.batch_size}",
                       series=("kernel", "host->DPU bytes / bandwidth", "DPU->host bytes / bandwidth"),
                       unit=" s")
    log.info("%s", rep.format())
    return rep


def compare_levels(tables: Sequence[Any], profile: AccessProfile | None, config: PlannerConfig,
                   out_dir: str | None = None,
                   progress: Callable[[str], None] | None = None) -> dict[str, tuple[Plan, PlanReport]]:
    """Plan at every level with the same config; write ``load_<level>.png`` into ``out_dir``.
    ``progress`` is told when each level starts and how long it took (plans of Criteo-sized
    models take about a minute per level)."""
    out = {}
    for level in Level:
        if progress is not None:
            progress(f"planning the {level.value} level on {config.nr_dpus} DPUs ...")
        start = time.perf_counter()
        plan = make_plan(tables, profile, replace(config, level=level))
        if progress is not None:
            progress(f"  {level.value}: planned in {time.perf_counter() - start:.1f} s")
        png = None if out_dir is None else f"{out_dir}/load_{level.value}.png"
        out[level.value] = (plan, report(plan, planner_cost(config, profile)[0], png))
    return out
