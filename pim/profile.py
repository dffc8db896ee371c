"""Access profiles: which rows of each table a workload reads, how often, and which rows it reads
together — the input of the popularity- and cache-aware partitioner.

:func:`build_profile` makes an :class:`AccessProfile` from a sample of requests (a sequence of
:class:`~updlrm.sparse.SparseBatch`, or of ``(indices_per_table, offsets_per_table)`` pairs).
Memory stays bounded for large tables and long samples:

* row frequencies are exact (``np.bincount``) for tables up to ``exact_limit`` rows, and a
  count-min sketch above (estimates never under-count; with width ``w`` and depth ``d`` an
  estimate exceeds the truth by more than ``e/w * lookups`` with probability at most ``e**-d``),
  plus the ``top_k`` heaviest rows with their estimated counts;
* co-occurrence is counted exactly, per bag (a bag counts once), but only among the
  ``pair_rows`` hottest rows of the table: any pair left out occurs in at most
  ``pair_untracked_bound`` bags (the count of the hottest row outside that set).

A profile is saved as ``<name>.json`` (metadata, versioned) beside ``<name>.npz`` (arrays).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numba
import numpy as np

from updlrm.errors import InvalidInputError
from .cost_model import CpuRates

PROFILE_FORMAT = "updlrm.access_profile"
PROFILE_VERSION = 1


# ---------------------------------------------------------------------------------------------
# count-min sketch


@numba.njit(cache=True, nogil=True)
def _cms_add(table, mult, add, shift, rows):
    depth = table.shape[0]
    for i in range(rows.shape[0]):
        x = np.uint64(rows[i])
        for d in range(depth):
            table[d, (mult[d] * x + add[d]) >> shift] += 1


@numba.njit(cache=True, nogil=True)
def _cms_query(table, mult, add, shift, rows, out):
    depth = table.shape[0]
    for i in range(rows.shape[0]):
        x = np.uint64(rows[i])
        best = table[0, (mult[0] * x + add[0]) >> shift]
        for d in range(1, depth):
            v = table[d, (mult[d] * x + add[d]) >> shift]
            if v < best:
                best = v
        out[i] = best


@dataclass
class CountMinSketch:
    """Count-min sketch over row ids with multiply-shift hashing (``width`` a power of two)."""

    table: np.ndarray   # [depth, width] int64
    mult: np.ndarray    # [depth] uint64, odd
    add: np.ndarray     # [depth] uint64

    @classmethod
    def empty(cls, width: int, depth: int, seed: int = 0) -> "CountMinSketch":
        if width < 2 or width & (width - 1):
            raise InvalidInputError(f"count-min width must be a power of two >= 2, got {width}")
        rng = np.random.default_rng(seed)
        mult = rng.integers(0, 2**63, size=depth, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        add = rng.integers(0, 2**63, size=depth, dtype=np.uint64)
        return cls(np.zeros((depth, width), dtype=np.int64), mult, add)

    @property
    def width(self) -> int:
        return int(self.table.shape[1])

    @property
    def depth(self) -> int:
        return int(self.table.shape[0])

    @property
    def _shift(self) -> np.uint64:
        return np.uint64(64 - int(self.width).bit_length() + 1)

    def add_rows(self, rows: np.ndarray) -> None:
        _cms_add(self.table, self.mult, self.add, self._shift, np.ascontiguousarray(rows, dtype=np.int64))

    def query(self, rows: np.ndarray) -> np.ndarray:
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        out = np.empty(rows.shape[0], dtype=np.int64)
        _cms_query(self.table, self.mult, self.add, self._shift, rows, out)
        return out

    def error_bound(self, total: int) -> float:
        """``e/width * total``: an estimate exceeds its true count by more than this with
        probability at most ``exp(-depth)``."""
        return float(np.e / self.width * total)


# ---------------------------------------------------------------------------------------------
# per-table profile


@dataclass
class TableProfile:
    """Access statistics of one table over the profiled sample.

    Attributes:
        name, num_rows: the table.
        lookups, bags: indices and bags seen.
        counts: exact per-row access counts (``[num_rows]`` int64) or None when sketched.
        sketch: the count-min sketch when ``counts`` is None.
        hot_rows, hot_counts: the heaviest rows, by count descending (exact or estimated).
        pairs, pair_counts: ``[P, 2]`` row pairs (hot rows only) and the number of bags that
            contain both, descending.
        pair_untracked_bound: upper bound on the bag count of any pair not in ``pairs``' pool.
        bag_length_sq: sum of the squared bag lengths (0: not recorded).
    """

    name: str
    num_rows: int
    lookups: int
    bags: int
    counts: np.ndarray | None
    sketch: CountMinSketch | None
    hot_rows: np.ndarray
    hot_counts: np.ndarray
    pairs: np.ndarray
    pair_counts: np.ndarray
    pair_untracked_bound: int = 0
    bag_length_sq: int = 0

    @property
    def exact(self) -> bool:
        return self.counts is not None

    @property
    def mean_pooling(self) -> float:
        """Average indices per bag."""
        return self.lookups / self.bags if self.bags else 0.0

    @property
    def bag_length_cv(self) -> float:
        """Standard deviation over mean of the bag lengths (0 when unknown or all equal)."""
        mean = self.mean_pooling
        if not mean or not self.bag_length_sq:
            return 0.0
        return math.sqrt(max(self.bag_length_sq / self.bags - mean * mean, 0.0)) / mean

    def estimate(self, rows: np.ndarray) -> np.ndarray:
        """Access counts of ``rows`` (exact, or a count-min upper estimate)."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.counts is not None:
            return self.counts[rows]
        return self.sketch.query(rows)

    def top_share(self, k: int) -> float:
        """Share of accesses that went to the ``k`` most accessed rows (sketched tables:
        estimated, and ``k`` is capped at the number of hot rows kept)."""
        if self.lookups == 0 or k <= 0:
            return 0.0
        if self.counts is not None and k > len(self.hot_counts):
            k = min(k, self.num_rows)
            top = np.partition(self.counts, self.num_rows - k)[self.num_rows - k:]
            return float(top.sum()) / self.lookups
        return min(1.0, float(self.hot_counts[:k].sum()) / self.lookups)

    def expected_counts(self) -> np.ndarray:
        """Per-row access counts as float64 ``[num_rows]``: exact, or the hot rows' estimates
        with the remaining accesses spread evenly over the other rows."""
        if self.counts is not None:
            return self.counts.astype(np.float64)
        rest_rows = self.num_rows - len(self.hot_rows)
        rest = max(self.lookups - float(self.hot_counts.sum()), 0.0)
        out = np.full(self.num_rows, rest / rest_rows if rest_rows else 0.0)
        out[self.hot_rows] = self.hot_counts
        return out


@dataclass
class AccessProfile:
    """Access statistics of every table of a model, from a sample of requests.

    ``cpu_rates`` are the MEASURED rates of updlrm's CPU kernel on this sample, on the host that
    profiled it (:func:`updlrm.pim.calibrate.measure_cpu_rates`; None: not measured): the
    planner's CPU baseline for this workload.
    """

    tables: list[TableProfile]
    num_batches: int
    params: dict[str, Any]
    cpu_rates: CpuRates | None = None

    def __len__(self) -> int:
        return len(self.tables)

    def __getitem__(self, i: int) -> TableProfile:
        return self.tables[i]

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.tables]

    def summary(self) -> list[dict[str, Any]]:
        """One dict per table: rows, lookups, mean pooling, top-1% share, pairs kept."""
        return [{"table": t.name, "rows": t.num_rows, "lookups": t.lookups,
                 "mean_pooling": round(t.mean_pooling, 3),
                 "top1pct_share": round(t.top_share(max(1, t.num_rows // 100)), 4),
                 "exact": t.exact, "pairs": int(len(t.pair_counts))} for t in self.tables]

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write ``<path>.json`` and ``<path>.npz`` (any suffix of ``path`` is replaced)."""
        arrays: dict[str, np.ndarray] = {}
        meta_tables = []
        for i, t in enumerate(self.tables):
            meta_tables.append({"name": t.name, "num_rows": t.num_rows, "lookups": t.lookups,
                                "bags": t.bags, "exact": t.exact,
                                "pair_untracked_bound": t.pair_untracked_bound,
                                "bag_length_sq": t.bag_length_sq})
            arrays[f"t{i}_hot_rows"] = t.hot_rows
            arrays[f"t{i}_hot_counts"] = t.hot_counts
            arrays[f"t{i}_pairs"] = t.pairs
            arrays[f"t{i}_pair_counts"] = t.pair_counts
            if t.counts is not None:
                arrays[f"t{i}_counts"] = t.counts
            else:
                arrays[f"t{i}_cms_table"] = t.sketch.table
                arrays[f"t{i}_cms_mult"] = t.sketch.mult
                arrays[f"t{i}_cms_add"] = t.sketch.add
        meta = {"num_batches": self.num_batches, "params": self.params, "tables": meta_tables,
                "cpu_rates": None if self.cpu_rates is None else asdict(self.cpu_rates)}
        return write_versioned(path, PROFILE_FORMAT, PROFILE_VERSION, meta, arrays)

    @classmethod
    def load(cls, path: str | Path) -> "AccessProfile":
        """Read a profile written by :meth:`save`."""
        meta, npz_path = read_versioned_json(path, PROFILE_FORMAT, PROFILE_VERSION, "an access profile")
        tables = []
        with np.load(npz_path) as z:
            for i, m in enumerate(meta["tables"]):
                sketch = None if m["exact"] else CountMinSketch(z[f"t{i}_cms_table"], z[f"t{i}_cms_mult"],
                                                                 z[f"t{i}_cms_add"])
                tables.append(TableProfile(
                    name=m["name"], num_rows=m["num_rows"], lookups=m["lookups"], bags=m["bags"],
                    counts=z[f"t{i}_counts"] if m["exact"] else None, sketch=sketch,
                    hot_rows=z[f"t{i}_hot_rows"], hot_counts=z[f"t{i}_hot_counts"],
                    pairs=z[f"t{i}_pairs"], pair_counts=z[f"t{i}_pair_counts"],
                    pair_untracked_bound=m["pair_untracked_bound"],
                    bag_length_sq=m.get("bag_length_sq", 0)))
        rates = meta.get("cpu_rates")
        return cls(tables, meta["num_batches"], meta["params"], None if rates is None else CpuRates(**rates))


def data_paths(path: str | Path) -> tuple[Path, Path]:
    """``<path>.json`` and ``<path>.npz`` (any suffix of ``path`` replaced): where a profile or a
    plan keeps its metadata and its arrays."""
    base = Path(path)
    return base.with_suffix(".json"), base.with_suffix(".npz")


def write_versioned(path: str | Path, fmt: str, version: int, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                    json_default: Any = None) -> tuple[Path, Path]:
    """Write ``meta`` tagged with ``fmt`` / ``version`` and ``arrays`` where :func:`data_paths`
    says; returns those paths."""
    json_path, npz_path = data_paths(path)
    np.savez_compressed(npz_path, **arrays)
    json_path.write_text(json.dumps({"format": fmt, "version": version, **meta}, indent=1, default=json_default))
    return json_path, npz_path


def read_versioned_json(path: str | Path, fmt: str, version: int, what: str) -> tuple[dict[str, Any], Path]:
    """The metadata of a file pair written as :func:`data_paths` says, and the path of its arrays;
    :class:`InvalidInputError` unless it has format ``fmt`` and version ``version``."""
    json_path, npz_path = data_paths(path)
    meta = json.loads(json_path.read_text())
    if meta.get("format") != fmt:
        raise InvalidInputError(f"{json_path}: not {what} (format {meta.get('format')!r})")
    if meta.get("version") != version:
        raise InvalidInputError(f"{json_path}: {what} version {meta.get('version')} is not supported "
                                f"(this updlrm reads version {version})")
    return meta, npz_path


# ---------------------------------------------------------------------------------------------
# building


@numba.njit(cache=True, nogil=True)
def _count_pairs(ranks, offsets, counts, stamp, members):
    """For each bag, +1 on ``counts[a, b]`` (a < b) for every pair of distinct hot ranks in it."""
    for b in range(offsets.shape[0] - 1):
        n = 0
        for i in range(offsets[b], offsets[b + 1]):
            r = ranks[i]
            if r >= 0 and stamp[r] != b + 1:
                stamp[r] = b + 1
                members[n] = r
                n += 1
        for i in range(n):
            for j in range(i + 1, n):
                a, c = members[i], members[j]
                if a < c:
                    counts[a, c] += 1
                else:
                    counts[c, a] += 1
    # stamps are bag numbers of this call; clear them so the next call starts fresh.
    for b in range(offsets.shape[0] - 1):
        for i in range(offsets[b], offsets[b + 1]):
            if ranks[i] >= 0:
                stamp[ranks[i]] = 0


def _per_table_arrays(item: Any, num_tables: int) -> tuple[Sequence[np.ndarray], Sequence[np.ndarray]]:
    """(indices, offsets) per table from a SparseBatch or an (indices, offsets) pair."""
    if hasattr(item, "indices") and hasattr(item, "offsets"):
        indices, offsets = item.indices, item.offsets
    else:
        try:
            indices, offsets = item
        except (TypeError, ValueError):
            raise InvalidInputError("each sample must be a SparseBatch or an (indices, offsets) pair "
                                    f"of per-table lists, got {type(item).__name__}") from None
    if len(indices) != num_tables or len(offsets) != num_tables:
        raise InvalidInputError(f"sample has {len(indices)} index and {len(offsets)} offset arrays, "
                                f"expected one per table ({num_tables})")
    return indices, offsets


def _table_sample(indices: Any, offsets: Any, t: int, num_rows: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.ascontiguousarray(indices, dtype=np.int64)
    off = np.ascontiguousarray(offsets, dtype=np.int64)
    if idx.ndim != 1 or off.ndim != 1:
        raise InvalidInputError(f"table #{t}: indices and offsets must be 1-D")
    if off.size == 0 or off[-1] != idx.size:
        off = np.append(off, idx.size)   # torch's B-entry offsets: close the last bag
    if idx.size and (idx.min() < 0 or idx.max() >= num_rows):
        bad = idx[(idx < 0) | (idx >= num_rows)][0]
        raise InvalidInputError(f"table #{t}: index {bad} out of range [0, {num_rows})")
    return idx, off


def build_profile(samples: Sequence[Any], num_rows: Sequence[int], *, names: Sequence[str] | None = None,
                  exact_limit: int = 1 << 22, top_k: int = 4096, pair_rows: int = 1024,
                  max_pairs: int = 4096, min_pair_count: int = 2, sketch_width: int = 1 << 18,
                  sketch_depth: int = 4, seed: int = 0) -> AccessProfile:
    """Profile a sample of requests.

    Args:
        samples: a re-iterable sequence (it is read up to three times) of SparseBatch objects or
            ``(indices_per_table, offsets_per_table)`` pairs; offsets in ``B+1`` or ``B`` form.
        num_rows: rows of each table.
        names: table names (default ``t0``, ``t1``...).
        exact_limit: tables with more rows than this are counted with a count-min sketch.
        top_k: hot rows kept per table (with their counts).
        pair_rows: co-occurrence is counted among this many hottest rows per table.
        max_pairs: pairs kept per table (most frequent first); pairs seen in fewer than
            ``min_pair_count`` bags are dropped.
        sketch_width, sketch_depth, seed: count-min parameters.
    """
    if iter(samples) is samples:
        raise InvalidInputError("samples must be a re-iterable sequence (e.g. a list of batches): the "
                                "profile reads it more than once, an iterator would be empty the second time")
    num_rows = [int(n) for n in num_rows]
    nt = len(num_rows)
    pair_rows = min(pair_rows, top_k)
    names = list(names) if names is not None else [f"t{i}" for i in range(nt)]
    if len(names) != nt:
        raise InvalidInputError(f"{len(names)} names for {nt} tables")
    counts: list[np.ndarray | None] = [np.zeros(n, dtype=np.int64) if n <= exact_limit else None for n in num_rows]
    sketches = [None if counts[t] is not None else CountMinSketch.empty(sketch_width, sketch_depth, seed + t)
                for t in range(nt)]
    lookups = [0] * nt
    bags = [0] * nt
    length_sq = [0] * nt
    num_batches = 0
    for item in samples:                                   # pass 1: frequencies
        indices, offsets = _per_table_arrays(item, nt)
        num_batches += 1
        for t in range(nt):
            idx, off = _table_sample(indices[t], offsets[t], t, num_rows[t])
            lookups[t] += idx.size
            bags[t] += off.size - 1
            lengths = np.diff(off).astype(np.int64)
            length_sq[t] += int(lengths @ lengths)
            if counts[t] is not None:
                counts[t] += np.bincount(idx, minlength=num_rows[t])
            else:
                sketches[t].add_rows(idx)

    hot: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.int64), np.empty(0, np.int64))] * nt
    for t in range(nt):
        if counts[t] is not None:
            k = min(top_k, num_rows[t])
            top = np.argpartition(counts[t], num_rows[t] - k)[num_rows[t] - k:]
            top = top[counts[t][top] > 0]
            order = np.lexsort((top, -counts[t][top]))
            hot[t] = (top[order].astype(np.int64), counts[t][top[order]])
    sketched = [t for t in range(nt) if counts[t] is None]
    if sketched:                                           # pass 2: heavy-hitter candidates
        for item in samples:
            indices, offsets = _per_table_arrays(item, nt)
            for t in sketched:
                cand = np.union1d(hot[t][0], np.unique(np.asarray(indices[t], dtype=np.int64)))
                est = sketches[t].query(cand)
                keep = np.argsort(-est, kind="stable")[:top_k]
                hot[t] = (cand[keep], est[keep])

    pair_sets = [hot[t][0][:pair_rows] for t in range(nt)]
    pair_counts = [np.zeros((len(p), len(p)), dtype=np.int64) for p in pair_sets]
    sorted_sets = [np.sort(p) for p in pair_sets]
    rank_of_sorted = [np.argsort(p, kind="stable").astype(np.int32) for p in pair_sets]
    for item in samples:                                   # pass 3: co-occurrence among hot rows
        indices, offsets = _per_table_arrays(item, nt)
        for t in range(nt):
            h = len(pair_sets[t])
            if h < 2:
                continue
            idx, off = _table_sample(indices[t], offsets[t], t, num_rows[t])
            pos = np.minimum(np.searchsorted(sorted_sets[t], idx), h - 1)
            ranks = np.where(sorted_sets[t][pos] == idx, rank_of_sorted[t][pos], -1).astype(np.int32)
            _count_pairs(ranks, off, pair_counts[t], np.zeros(h, np.int64), np.empty(h, np.int32))

    tables = []
    for t in range(nt):
        rows, cnt = hot[t]
        pc = pair_counts[t]
        a, b = np.nonzero(pc >= min_pair_count)
        vals = pc[a, b]
        order = np.lexsort((b, a, -vals))[:max_pairs]
        pairs = np.stack([pair_sets[t][a[order]], pair_sets[t][b[order]]], axis=1) if order.size else np.empty((0, 2), np.int64)
        h = len(pair_sets[t])
        # rows outside the pool are at most as hot as the next hot row, or as the last one kept
        # when the hot list itself was cut at top_k.
        bound = int(cnt[h]) if len(cnt) > h else (int(cnt[-1]) if len(cnt) == top_k else 0)
        tables.append(TableProfile(
            name=names[t], num_rows=num_rows[t], lookups=lookups[t], bags=bags[t], counts=counts[t],
            sketch=sketches[t], hot_rows=rows, hot_counts=cnt, pairs=pairs.astype(np.int64),
            pair_counts=vals[order].astype(np.int64), pair_untracked_bound=bound, bag_length_sq=length_sq[t]))
    params = {"exact_limit": exact_limit, "top_k": top_k, "pair_rows": pair_rows, "max_pairs": max_pairs,
              "min_pair_count": min_pair_count, "sketch_width": sketch_width, "sketch_depth": sketch_depth,
              "seed": seed}
    return AccessProfile(tables, num_batches, params)
