"""Host-side scatter of the PIM backend: a batch's bags -> per-DPU kernel jobs, in C.

Two steps per table, both ``nogil`` loops over typed memoryviews (no Python per index):

:func:`route` applies a plan's routing rule (the module docstring of :mod:`updlrm.pim.plan`:
cache substitution, row group, replica by bag range, every column slice) and says, for every
row read, which tile, which local row, which bag and which source index it is; rows the plan keeps
on the host (``row_group[r] == -1``, hybrid tables) go to a per-table host list instead (row,
source position, per-bag offsets) for the CPU kernel.  It is the one implementation of that rule.

:func:`count_jobs` + :func:`fill_jobs` turn one table's routed reads into kernel jobs.  A
*segment* is every tile of one table and one column slice stored on one DPU, placed back to back
in MRAM so the kernel sees them as one tile (``tile_seg`` / ``tile_row_base`` map a tile's local
row into its segment); a job pools, for one segment, every bag of the batch that reads it (one
partial sum per bag and segment).  Jobs go to a CSR shared by all tables of the batch: the count
step sizes a table's share (per-segment counts in the table's own scratch), so once every table
is counted each table's place in the CSR is known and tables can be filled in any order, on any
thread.  :func:`copy_count` + :func:`copy_fill` do the same for a *whole* table without routing.
"""
import numpy as np

cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t, uint64_t

from updlrm.errors import CapacityError, InvalidInputError

cnp.import_array()

cdef extern from *:
    void prefetch "__builtin_prefetch" (const void *addr) nogil
    int popcount64 "__builtin_popcountll" (unsigned long long x) nogil

# Indices ahead of the current one whose row-map entries are prefetched: the maps of big tables
# do not fit in cache, and without it every index waits for its own miss (32 ns/index measured
# on a 10 M-row table, 6 ns with it).
DEF ROUTE_PREFETCH = 16

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline double _bag_pos(const index_t[::1] off, int64_t b, int64_t n_bags, bint by_lookups) noexcept nogil:
    """Where bag ``b`` lies in its batch, in [0, 1), for the replica cuts: its position among
    the bags, ``(b + 0.5) / B``, or with ``by_lookups`` the middle of its indices within the
    batch's indices, so that each replica gets its share of the *lookups* whatever the bags'
    sizes (the bag position when the batch has no indices)."""
    cdef int64_t total = off[n_bags] - off[0]
    if not by_lookups or total <= 0:
        return (b + 0.5) / n_bags
    return (off[b] - off[0] + 0.5 * (off[b + 1] - off[b])) / total


cdef int64_t _route(const index_t[::1] idx, const index_t[::1] off, int64_t num_rows, bint use_cache,
                    const int32_t[::1] row_cache, const int64_t[::1] cache_ptr,
                    const int64_t[::1] cache_rows, const int32_t[:, ::1] row_loc,
                    const uint64_t[::1] dpu_bits, const int32_t[::1] dpu_rank,
                    const int64_t[::1] replica_ptr,
                    const double[::1] replica_cut, const int64_t[::1] group_ptr,
                    const int32_t[::1] group_tiles, int64_t n_slices,
                    int64_t[::1] member_stamp, int64_t[::1] member_used, int64_t[::1] entry_stamp,
                    int64_t[::1] entry_count, int64_t[::1] entry_emitted, int64_t[::1] replica_at,
                    int32_t[::1] out_tile, int32_t[::1] out_local, int32_t[::1] out_bag,
                    int64_t[::1] out_pos, int64_t[::1] host_idx, int64_t[::1] host_off,
                    int64_t[::1] host_pos, bint by_lookups, int64_t *hits_out, int64_t *saved_out,
                    int64_t *host_out) noexcept nogil:
    cdef int64_t n_bags = off.shape[0] - 1, ahead = off[n_bags] - ROUTE_PREFETCH
    cdef int64_t m = 0, h = 0, hits = 0, saved = 0, b, i, p, r, e, g, lo, hi, base, j, stamp, local, nxt
    cdef uint64_t word
    cdef double pos
    cdef bint consumed, write_pos = out_pos.shape[0] > 0, compact = dpu_bits.shape[0] > 0
    for b in range(n_bags):
        stamp = b + 1
        pos = _bag_pos(off, b, n_bags, by_lookups)
        host_off[b] = h
        if use_cache:
            # which cache entries have all their members in this bag (each member counted once)
            for i in range(off[b], off[b + 1]):
                e = row_cache[idx[i]]
                if e >= 0:
                    if entry_stamp[e] != stamp:
                        entry_stamp[e] = stamp
                        entry_count[e] = 0
                    for p in range(cache_ptr[e], cache_ptr[e + 1]):
                        if cache_rows[p] == idx[i] and member_stamp[p] != stamp:
                            member_stamp[p] = stamp
                            entry_count[e] += 1
        for i in range(off[b], off[b + 1]):
            if i < ahead:
                nxt = idx[i + ROUTE_PREFETCH]
                if compact:
                    prefetch(&dpu_bits[nxt >> 6])
                    prefetch(&dpu_rank[nxt >> 6])
                else:
                    prefetch(&row_loc[nxt, 0])
                if use_cache:
                    prefetch(&row_cache[nxt])
            r = idx[i]
            if use_cache:
                e = row_cache[r]
                if e >= 0 and entry_stamp[e] == stamp and entry_count[e] == cache_ptr[e + 1] - cache_ptr[e]:
                    # the first occurrence of each member is replaced by the entry's cache row
                    consumed = False
                    for p in range(cache_ptr[e], cache_ptr[e + 1]):
                        if cache_rows[p] == r and member_used[p] != stamp:
                            member_used[p] = stamp
                            consumed = True
                    if consumed:
                        if entry_emitted[e] == stamp:
                            saved += 1
                            continue
                        entry_emitted[e] = stamp
                        hits += 1
                        r = num_rows + e
            if compact:
                # rows on the DPUs are the set bits; row_loc lists them in row order
                word = dpu_bits[r >> 6]
                if (word >> (r & 63)) & 1:
                    p = dpu_rank[r >> 6] + popcount64(word & ((<uint64_t>1 << (r & 63)) - 1))
                    g = row_loc[p, 0]
                    local = row_loc[p, 1]
                else:
                    g = -1
            else:
                g = row_loc[r, 0]
                local = row_loc[r, 1]
            if g < 0:                       # a host-resident row: the CPU kernel pools it
                host_idx[h] = r
                if write_pos:
                    host_pos[h] = i
                h += 1
                continue
            # the first replica whose cut lies above this bag: bags come in order, so each
            # group's answer only moves forward (a cursor, no search; the last cut is 1)
            lo = replica_at[g]
            hi = replica_ptr[g + 1] - 1
            while lo < hi and replica_cut[lo] <= pos:
                lo += 1
            replica_at[g] = lo
            base = group_ptr[g] + (lo - replica_ptr[g]) * n_slices
            for j in range(n_slices):
                out_tile[m] = group_tiles[base + j]
                out_local[m] = <int32_t>local
                out_bag[m] = <int32_t>b
                if write_pos:
                    out_pos[m] = i
                m += 1
    host_off[n_bags] = h
    hits_out[0] = hits
    saved_out[0] = saved
    host_out[0] = h
    return m



cdef void _count_totals(const int64_t[::1] seg_subbags, const int64_t[::1] seg_nnz, int64_t n_segs,
                        int64_t *subbags, int64_t *nnz, int64_t *touched) noexcept nogil:
    """Sums of the per-segment sub-bag and index counts, and the segments with any."""
    cdef int64_t s
    subbags[0] = nnz[0] = touched[0] = 0
    for s in range(n_segs):
        subbags[0] += seg_subbags[s]
        nnz[0] += seg_nnz[s]
        if seg_subbags[s]:
            touched[0] += 1


cdef int64_t _open_table(int64_t[::1] seg_subbags, int64_t[::1] seg_nnz, int64_t n_segs, int64_t seg_lo,
                         bint weighted, int64_t[::1] csr_off, int32_t[::1] csr_idx, float[::1] csr_w,
                         int64_t[::1] bag_row, int64_t[::1] job_seg, int64_t[::1] job_bag_ptr, int64_t js,
                         int64_t bcur, int64_t icur, int64_t *bend, int64_t *iend) except -1:
    """Start filling a counted table into the batch CSR from job ``js``, sub-bag ``bcur`` and index
    ``icur`` on: one job per segment with sub-bags, in segment order, whose counts in the scratch
    become each segment's first sub-bag and index (the fill cursors). Returns the new job count,
    and the table's end cursors in ``bend`` / ``iend``. Raises :class:`CapacityError` if the CSR
    arrays are too small (the caller sizes them from the batch: this guards a wrong size)."""
    cdef int64_t s, k, subbags = 0, nnz = 0, touched = 0
    _count_totals(seg_subbags, seg_nnz, n_segs, &subbags, &nnz, &touched)
    if (js + touched > job_seg.shape[0] or js + touched + 1 > job_bag_ptr.shape[0]
            or bcur + subbags + 1 > csr_off.shape[0] or bcur + subbags > bag_row.shape[0]
            or icur + nnz > csr_idx.shape[0] or (weighted and icur + nnz > csr_w.shape[0])):
        raise CapacityError("scatter buffers too small")
    bend[0] = bcur + subbags
    iend[0] = icur + nnz
    with nogil:
        job_bag_ptr[js] = bcur
        for s in range(n_segs):
            if seg_subbags[s] == 0:
                continue
            job_seg[js] = seg_lo + s
            k = seg_subbags[s]
            seg_subbags[s] = bcur
            bcur += k
            k = seg_nnz[s]
            seg_nnz[s] = icur
            icur += k
            js += 1
            job_bag_ptr[js] = bcur
    return js


def route(const index_t[::1] idx, const index_t[::1] off, int64_t num_rows,
          const int32_t[::1] row_cache, const int64_t[::1] cache_ptr, const int64_t[::1] cache_rows,
          const int32_t[:, ::1] row_loc, const uint64_t[::1] dpu_bits, const int32_t[::1] dpu_rank,
          const int64_t[::1] replica_ptr, const double[::1] replica_cut,
          const int64_t[::1] group_ptr, const int32_t[::1] group_tiles, int64_t n_slices,
          int32_t[::1] out_tile, int32_t[::1] out_local, int32_t[::1] out_bag, int64_t[::1] out_pos,
          int64_t[::1] host_idx, int64_t[::1] host_off, int64_t[::1] host_pos, bint by_lookups=False):
    """Route one table's bags (``off`` in ``B+1`` form) by the plan's rule (replicas split the
    bags by lookups when ``by_lookups``, else by bag count: ``TablePlan.split_by``).

    ``row_loc[r]`` is ``(row_group[r], row_local[r])`` (one cache line per row read); or, when
    ``dpu_bits`` is given (a table without cache whose rows are mostly host-resident: the map
    then stays in cache), bit ``r`` of ``dpu_bits`` says whether row ``r`` is on the DPUs,
    ``dpu_rank[w]`` counts the set bits of the words before ``w``, and ``row_loc`` holds the
    ``(group, local)`` of the rows on the DPUs only, in row order (``dpu_rank`` empty otherwise).
    ``row_cache`` is empty when the table has no cache (``cache_ptr`` then ``[0]``).  The
    ``out_*`` arrays need ``len(idx) * n_slices`` entries (``out_pos`` may be empty: positions
    are then not written); returns ``(m, cache_hits, reads_saved, n_host)`` where the first ``m``
    entries hold, per row read and column slice: the tile, the local row in it, the bag and the
    position of the source index in ``idx``.
    Host-resident rows (``row_group[r] == -1``) are listed instead in ``host_idx[:n_host]`` (the
    row; ``len(idx)`` entries needed), bag ``b`` owning ``host_idx[host_off[b]:host_off[b+1]]``
    (``host_off``: ``B+1`` entries), with the source positions in ``host_pos`` when ``out_pos``
    is given (same size as ``host_idx``).
    ``reads_saved`` counts saved reads per column slice once (multiply by ``n_slices``).
    Rows are trusted to be valid (the batch was validated against the tables).
    """
    cdef int64_t cap = idx.shape[0] * n_slices
    if (out_tile.shape[0] < cap or out_local.shape[0] < cap or out_bag.shape[0] < cap
            or 0 < out_pos.shape[0] < cap):
        raise InvalidInputError(f"route needs output arrays of {cap} entries")
    if off.shape[0] < 1 or off[off.shape[0] - 1] > idx.shape[0]:
        raise InvalidInputError("offsets must have B+1 entries ending within the indices")
    if (host_idx.shape[0] < idx.shape[0] or host_off.shape[0] < off.shape[0]
            or (out_pos.shape[0] > 0 and host_pos.shape[0] < idx.shape[0])):
        raise InvalidInputError(f"route needs host lists of {idx.shape[0]} rows and {off.shape[0]} offsets")
    cdef bint use_cache = cache_ptr.shape[0] > 1
    cdef int64_t n_cache = cache_ptr.shape[0] - 1
    if dpu_bits.shape[0] > 0:
        if use_cache or dpu_bits.shape[0] * 64 < num_rows or dpu_rank.shape[0] < dpu_bits.shape[0]:
            raise InvalidInputError("a compact row map needs one bit per row, a rank per word and no cache")
        if row_loc.shape[1] != 2:
            raise InvalidInputError("row_loc needs 2 columns")
    elif row_loc.shape[0] < num_rows + n_cache or row_loc.shape[1] != 2:
        raise InvalidInputError(f"row_loc needs [{num_rows + n_cache}, 2] entries")
    if use_cache and row_cache.shape[0] < num_rows:
        raise InvalidInputError("row_cache needs one entry per row")
    cdef int64_t[::1] member_stamp = np.zeros(max(cache_rows.shape[0], 1), np.int64)
    cdef int64_t[::1] member_used = np.zeros(max(cache_rows.shape[0], 1), np.int64)
    cdef int64_t[::1] entry_stamp = np.zeros(max(n_cache, 1), np.int64)
    cdef int64_t[::1] entry_count = np.zeros(max(n_cache, 1), np.int64)
    cdef int64_t[::1] entry_emitted = np.zeros(max(n_cache, 1), np.int64)
    cdef int64_t[::1] replica_at = np.array(replica_ptr[:replica_ptr.shape[0] - 1], np.int64)
    cdef int64_t m, hits = 0, saved = 0, n_host = 0
    with nogil:
        m = _route(idx, off, num_rows, use_cache, row_cache, cache_ptr, cache_rows, row_loc,
                   dpu_bits, dpu_rank, replica_ptr, replica_cut, group_ptr, group_tiles, n_slices,
                   member_stamp, member_used, entry_stamp, entry_count, entry_emitted, replica_at,
                   out_tile, out_local, out_bag, out_pos, host_idx, host_off, host_pos, by_lookups,
                   &hits, &saved, &n_host)
    return int(m), int(hits), int(saved), int(n_host)


def count_jobs(int64_t m, const int32_t[::1] tile, const int32_t[::1] bag, const int32_t[::1] tile_seg,
               int64_t seg_lo, int64_t seg_hi, int64_t[::1] seg_subbags, int64_t[::1] seg_nnz,
               int64_t[::1] seg_last):
    """Count one table's routed reads (the first ``m`` entries of :func:`route`'s output) per
    segment ``seg_lo .. seg_hi-1`` into ``seg_subbags`` / ``seg_nnz`` (scratch of that many
    entries, kept for :func:`fill_jobs`; ``seg_last`` is scratch too); returns the table's
    ``(jobs, sub-bags, indices)``."""
    cdef int64_t n_segs = seg_hi - seg_lo, k, s, subbags = 0, nnz = 0, touched = 0
    if seg_subbags.shape[0] < n_segs or seg_nnz.shape[0] < n_segs or seg_last.shape[0] < n_segs:
        raise InvalidInputError("segment scratch arrays are too small")
    if tile.shape[0] < m or bag.shape[0] < m:
        raise InvalidInputError(f"count_jobs needs {m} routed reads")
    with nogil:
        for s in range(n_segs):
            seg_subbags[s] = 0
            seg_nnz[s] = 0
            seg_last[s] = -1
        # branch-free: whether a read opens a sub-bag is a coin flip for row-sharded tables
        for k in range(m):
            s = tile_seg[tile[k]] - seg_lo
            seg_subbags[s] += seg_last[s] != bag[k]
            seg_last[s] = bag[k]
            seg_nnz[s] += 1
        _count_totals(seg_subbags, seg_nnz, n_segs, &subbags, &nnz, &touched)
    return int(touched), int(subbags), int(nnz)


def fill_jobs(int64_t m, const int32_t[::1] tile, const int32_t[::1] local, const int32_t[::1] bag,
              const int64_t[::1] pos, const int32_t[::1] tile_seg, const int32_t[::1] tile_row_base,
              int64_t seg_lo, int64_t seg_hi, int64_t row_base, const float[::1] src_weights,
              int64_t[::1] seg_subbags, int64_t[::1] seg_nnz, int64_t[::1] seg_last,
              int64_t[::1] csr_off, int32_t[::1] csr_idx, float[::1] csr_w, int64_t[::1] bag_row,
              int64_t[::1] job_seg, int64_t[::1] job_bag_ptr, int64_t n_jobs, int64_t n_bags, int64_t nnz):
    """Write one table's jobs, counted by :func:`count_jobs` into the same scratch, to the batch
    CSR from job ``n_jobs``, sub-bag ``n_bags`` and index ``nnz`` on (the cursors the tables
    before it end at); returns the cursors after it.

    Sub-bags of a job keep the batch's bag order; ``bag_row[k]`` = ``row_base + bag`` of
    sub-bag ``k``.  ``src_weights`` (empty: unweighted) gives each read its per-sample weight
    (through ``pos``).  Raises :class:`CapacityError` if the CSR arrays are too small.
    """
    cdef int64_t n_segs = seg_hi - seg_lo, k, s, js, c, n, b, t
    cdef int64_t off_sink = 0, row_sink = 0
    cdef int64_t *off_at
    cdef int64_t *row_at
    cdef bint opens
    cdef bint weighted = src_weights.shape[0] > 0
    if seg_subbags.shape[0] < n_segs or seg_nnz.shape[0] < n_segs or seg_last.shape[0] < n_segs:
        raise InvalidInputError("segment scratch arrays are too small")
    if tile.shape[0] < m or local.shape[0] < m or bag.shape[0] < m:
        raise InvalidInputError(f"fill_jobs needs {m} routed reads")
    if weighted and pos.shape[0] < m:
        raise InvalidInputError("weighted tables need the source position of every read")
    cdef int64_t bcur, icur
    js = _open_table(seg_subbags, seg_nnz, n_segs, seg_lo, weighted, csr_off, csr_idx, csr_w, bag_row, job_seg,
                     job_bag_ptr, n_jobs, n_bags, nnz, &bcur, &icur)
    with nogil:
        for s in range(n_segs):
            seg_last[s] = -1
        for k in range(m):
            t = tile[k]
            s = tile_seg[t] - seg_lo
            b = bag[k]
            opens = seg_last[s] != b
            seg_last[s] = b
            c = seg_subbags[s]
            n = seg_nnz[s]
            # branch-free: a read that opens no sub-bag stores slot c's own value back; c is then
            # the segment's next free slot, which past the table's last sub-bag belongs to the
            # next table (maybe being filled by another thread): that store goes to a sink
            off_at = &csr_off[c] if c < bcur else &off_sink
            row_at = &bag_row[c] if c < bcur else &row_sink
            off_at[0] = n if opens else off_at[0]
            row_at[0] = row_base + b if opens else row_at[0]
            seg_subbags[s] = c + opens
            csr_idx[n] = tile_row_base[t] + local[k]
            if weighted:
                csr_w[n] = src_weights[pos[k]]
            seg_nnz[s] = n + 1
        csr_off[bcur] = icur
    return int(js), int(bcur), int(icur)


def copy_count(const index_t[::1] off, const double[::1] replica_cut, const int32_t[::1] replica_tile,
               const int32_t[::1] tile_seg, int64_t seg_lo, int64_t seg_hi, int64_t[::1] rep_first_bag,
               int64_t[::1] seg_subbags, int64_t[::1] seg_nnz, bint by_lookups=False):
    """:func:`count_jobs` for a *whole* table: one row group whose local rows are the table's
    rows, one column slice, no cache, no host rows. Replica ``j`` (tile ``replica_tile[j]``)
    serves a contiguous range of bags (the rule's cuts), so its bags go to the job of its segment
    as they are (no row map); replicas sharing a segment share its job, their bags in batch order.

    ``rep_first_bag`` (``len(replica_cut) + 1`` entries), ``seg_subbags`` / ``seg_nnz``
    (``seg_hi - seg_lo``) are scratch kept for :func:`copy_fill`; returns ``(jobs, sub-bags,
    indices)``.
    """
    cdef int64_t n_b = off.shape[0] - 1, n_rep = replica_cut.shape[0], n_segs = seg_hi - seg_lo
    cdef int64_t j, b, s, touched = 0, subbags = 0, nnz = 0
    if seg_subbags.shape[0] < n_segs or seg_nnz.shape[0] < n_segs or rep_first_bag.shape[0] < n_rep + 1:
        raise InvalidInputError("copy_count scratch arrays are too small")
    with nogil:
        # each replica's first bag (the first whose position lies below its cut; the last cut is 1)
        b = 0
        for j in range(n_rep):
            rep_first_bag[j] = b
            while b < n_b and (j == n_rep - 1 or _bag_pos(off, b, n_b, by_lookups) < replica_cut[j]):
                b += 1
        rep_first_bag[n_rep] = n_b
        for s in range(n_segs):
            seg_subbags[s] = 0
            seg_nnz[s] = 0
        for j in range(n_rep):
            s = tile_seg[replica_tile[j]] - seg_lo
            for b in range(rep_first_bag[j], rep_first_bag[j + 1]):
                if off[b + 1] > off[b]:
                    seg_subbags[s] += 1
                    seg_nnz[s] += off[b + 1] - off[b]
        _count_totals(seg_subbags, seg_nnz, n_segs, &subbags, &nnz, &touched)
    return int(touched), int(subbags), int(nnz)


def copy_fill(const index_t[::1] idx, const index_t[::1] off, const int32_t[::1] replica_tile,
              const int32_t[::1] tile_seg, const int32_t[::1] tile_row_base, int64_t seg_lo, int64_t seg_hi,
              int64_t row_base, const float[::1] src_weights, const int64_t[::1] rep_first_bag,
              int64_t[::1] seg_subbags, int64_t[::1] seg_nnz,
              int64_t[::1] csr_off, int32_t[::1] csr_idx, float[::1] csr_w, int64_t[::1] bag_row,
              int64_t[::1] job_seg, int64_t[::1] job_bag_ptr, int64_t n_jobs, int64_t n_bags, int64_t nnz):
    """:func:`fill_jobs` for a whole table counted by :func:`copy_count` (same scratch);
    ``src_weights`` (empty: unweighted) are copied along."""
    cdef int64_t n_rep = replica_tile.shape[0], n_segs = seg_hi - seg_lo
    cdef int64_t j, b, i, s, k, js, base
    cdef bint weighted = src_weights.shape[0] > 0
    if seg_subbags.shape[0] < n_segs or seg_nnz.shape[0] < n_segs or rep_first_bag.shape[0] < n_rep + 1:
        raise InvalidInputError("copy_fill scratch arrays are too small")
    cdef int64_t bcur, icur
    js = _open_table(seg_subbags, seg_nnz, n_segs, seg_lo, weighted, csr_off, csr_idx, csr_w, bag_row, job_seg,
                     job_bag_ptr, n_jobs, n_bags, nnz, &bcur, &icur)
    with nogil:
        for j in range(n_rep):
            s = tile_seg[replica_tile[j]] - seg_lo
            base = tile_row_base[replica_tile[j]]
            for b in range(rep_first_bag[j], rep_first_bag[j + 1]):
                if off[b + 1] == off[b]:
                    continue
                k = seg_subbags[s]
                csr_off[k] = seg_nnz[s]
                bag_row[k] = row_base + b
                seg_subbags[s] = k + 1
                k = seg_nnz[s]
                for i in range(off[b], off[b + 1]):
                    csr_idx[k] = <int32_t>(base + idx[i])
                    if weighted:
                        csr_w[k] = src_weights[i]
                    k += 1
                seg_nnz[s] = k
        csr_off[bcur] = icur
    return int(js), int(bcur), int(icur)
