"""Cython driver of the C embedding-bag kernel, plus the vectorised checks validation needs.

``pool`` pools the bags of many tables in one call: it splits the batch into (table, bag range)
work items and shares them between the calling thread and persistent helper threads
(kernels/work_pool.h; serially when the batch is too small for helpers to pay off). Callers pass
arrays that ``updlrm.embedding_bag`` has already shaped; ``pool`` re-checks only what would make
the C code read or write out of bounds, except offsets and index ranges: ``check_bags`` checks
those (and the rest of a batch) for ``SparseBatch.validate``, every table in one call.
"""
cimport numpy as cnp
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport free, malloc

# C contract of the kernel (engine/kernels/embedding_bag.h).
cdef extern from "embedding_bag.h" nogil:
    enum:
        EBAG_SUM
        EBAG_MEAN
        EBAG_MAX

    ctypedef struct ebag_table:
        const void *weight               # [rows, dim] float32 or float16
        const void *indices              # [nnz] int32 or int64
        const void *offsets              # [B + 1], same type as indices
        const float *per_sample_weights  # [nnz] or NULL
        float *out                       # [B, dim]
        int64_t dim
        int32_t weight_is_f16
        int32_t index_is_i64
        int32_t mode

    void ebag_pool(const ebag_table *t, int64_t bag_begin, int64_t bag_end) noexcept
    int ebag_isa() noexcept
    int ebag_select_isa(int max_isa) noexcept
    void ebag_set_prefetch_distance(int rows) noexcept
    int ebag_prefetch_distance() noexcept
    void ebag_set_stream_max_pooling(double lookups_per_bag) noexcept
    double ebag_stream_max_pooling() noexcept
    int64_t ebag_first_out_of_range_i32(const int32_t *indices, int64_t n, int64_t rows) noexcept
    int64_t ebag_first_out_of_range_i64(const int64_t *indices, int64_t n, int64_t rows) noexcept
    int64_t ebag_first_decrease_i32(const int32_t *offsets, int64_t n) noexcept
    int64_t ebag_first_decrease_i64(const int64_t *offsets, int64_t n) noexcept

# Helper threads that never hold up the caller (engine/kernels/work_pool.h).
cdef extern from "work_pool.h" nogil:
    ctypedef void (*work_pool_fn)(void *ctx, int64_t item) noexcept nogil
    int64_t work_pool_run(int threads, int64_t n_items, work_pool_fn fn, void *ctx) noexcept
    void work_pool_hold_helpers(int hold) noexcept
    void work_pool_set_helper_spin(int64_t ns) noexcept
    int work_pool_helpers() noexcept
    void work_pool_stats(int64_t *parallel, int64_t *stalled, int64_t *backed_off) noexcept


cnp.import_array()


#: Kernel code paths, slowest first (``enum ebag_isa`` in kernels/embedding_bag.h).
ISAS = ("portable", "avx2", "avx512")


def isa():
    """The code path in use: the best of ``ISAS`` this CPU supports, unless ``select_isa`` capped it."""
    return ISAS[ebag_isa()]


def select_isa(str max_isa):
    """Use the best path up to ``max_isa`` (a name in ``ISAS``) that the CPU supports.

    Returns the name of the path now in use. Meant for tests; do not call while pooling.
    """
    return ISAS[ebag_select_isa(ISAS.index(max_isa))]


def set_prefetch_distance(int rows):
    """Set how many lookups ahead rows are prefetched (0, or any value < 1, disables it)."""
    ebag_set_prefetch_distance(rows)


def set_stream_max_pooling(double lookups_per_bag):
    """Work items averaging at most this many lookups per bag (default 1.5) and writing at
    least 64 KiB store their output rows non-temporally (0 disables it). For benchmarks and
    tests; do not call while pooling."""
    ebag_set_stream_max_pooling(lookups_per_bag)


def stream_max_pooling():
    """The pooling factor up to which output rows are stored non-temporally (0: never)."""
    return ebag_stream_max_pooling()


def prefetch_distance():
    """How many indices ahead rows are prefetched."""
    return ebag_prefetch_distance()


def set_helper_spin_us(double us):
    """How long (microseconds) a helper thread polls for the next job before it parks."""
    work_pool_set_helper_spin(<int64_t>(us * 1000))


def hold_helpers(bint hold):
    """Test hook: while held, helper threads that wake for a job claim nothing (as if another
    process had descheduled them), so the calling thread must pool every work item itself."""
    work_pool_hold_helpers(hold)


def helper_threads():
    """How many helper threads this process has started (0 again in a fresh fork child)."""
    return work_pool_helpers()


def pool_stats():
    """Counts since the process started: ``{"parallel": calls shared with helpers, "stalled":
    of those, calls that waited long for a descheduled helper, "backed_off": calls run on the
    calling thread alone after a stall}``."""
    cdef int64_t parallel, stalled, backed_off
    work_pool_stats(&parallel, &stalled, &backed_off)
    return {"parallel": parallel, "stalled": stalled, "backed_off": backed_off}


_last_split = (0, 0)


def last_call_split():
    """``(items the calling thread pooled itself, all work items)`` of the last ``pool`` call
    (of any thread; for tests)."""
    return _last_split


ctypedef struct _work_items:
    const ebag_table *tabs
    const int64_t *table
    const int64_t *begin
    const int64_t *end


cdef void _pool_item(void *ctx, int64_t i) noexcept nogil:
    cdef const _work_items *w = <const _work_items *>ctx
    ebag_pool(&w.tabs[w.table[i]], w.begin[i], w.end[i])


cdef inline cnp.ndarray _array(object a, str what, Py_ssize_t t):
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"table #{t}: {what} must be a numpy array")
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a):
        raise ValueError(f"table #{t}: {what} must be C-contiguous")
    return <cnp.ndarray>a


cdef int _fill_table(ebag_table *tab, Py_ssize_t t, object weight, object indices, object offsets,
                     object psw, int mode, object out) except -1:
    cdef cnp.ndarray w = _array(weight, "weight", t)
    cdef cnp.ndarray idx = _array(indices, "indices", t)
    cdef cnp.ndarray off = _array(offsets, "offsets", t)
    cdef cnp.ndarray o = _array(out, "out", t)
    cdef cnp.ndarray sw
    cdef int wtype = cnp.PyArray_TYPE(w), itype = cnp.PyArray_TYPE(idx)
    if w.ndim != 2 or wtype not in (cnp.NPY_FLOAT32, cnp.NPY_FLOAT16):
        raise TypeError(f"table #{t}: weight must be a 2-D float32/float16 array")
    if idx.ndim != 1 or itype not in (cnp.NPY_INT32, cnp.NPY_INT64):
        raise TypeError(f"table #{t}: indices must be a 1-D int32/int64 array")
    if off.ndim != 1 or cnp.PyArray_TYPE(off) != itype or off.shape[0] < 1:
        raise TypeError(f"table #{t}: offsets must be a non-empty 1-D array of the indices' dtype")
    cdef Py_ssize_t n_bags = off.shape[0] - 1
    if (o.ndim != 2 or cnp.PyArray_TYPE(o) != cnp.NPY_FLOAT32 or o.shape[0] != n_bags
            or o.shape[1] != w.shape[1] or not cnp.PyArray_ISWRITEABLE(o)):
        raise ValueError(f"table #{t}: out must be a writeable float32 [{n_bags}, {w.shape[1]}] array")
    if mode not in (EBAG_SUM, EBAG_MEAN, EBAG_MAX):
        raise ValueError(f"table #{t}: unknown pooling mode {mode}")
    tab.per_sample_weights = NULL
    if psw is not None:
        sw = _array(psw, "per-sample weights", t)
        if sw.ndim != 1 or cnp.PyArray_TYPE(sw) != cnp.NPY_FLOAT32 or sw.shape[0] != idx.shape[0]:
            raise ValueError(f"table #{t}: per-sample weights must be float32 with one entry per index")
        tab.per_sample_weights = <const float *>cnp.PyArray_DATA(sw)
    tab.weight = cnp.PyArray_DATA(w)
    tab.indices = cnp.PyArray_DATA(idx)
    tab.offsets = cnp.PyArray_DATA(off)
    tab.out = <float *>cnp.PyArray_DATA(o)
    tab.dim = w.shape[1]
    tab.weight_is_f16 = wtype == cnp.NPY_FLOAT16
    tab.index_is_i64 = itype == cnp.NPY_INT64
    tab.mode = mode
    return 0


cdef inline int64_t _last_offset(const ebag_table *tab, Py_ssize_t n_bags) noexcept:
    if tab.index_is_i64:
        return (<const int64_t *>tab.offsets)[n_bags]
    return (<const int32_t *>tab.offsets)[n_bags]


cdef inline int64_t _chunk_count(int64_t lookups, int64_t n_bags, int64_t min_chunks,
                                   int64_t item_lookups) noexcept:
    """How many work items one table's bags are split into."""
    cdef int64_t n_chunks = max(min_chunks, (lookups + item_lookups - 1) // max(item_lookups, 1))
    return max(1, min(n_chunks, n_bags))


def pool(list weights, list indices, list offsets, list per_sample_weights,
         const int32_t[::1] modes, list outs, int threads, int64_t serial_below,
         int64_t item_lookups):
    """Pool every table's bags into ``outs[t]`` (float32 ``[B, dim_t]``).

    The calling thread and up to ``threads - 1`` helper threads claim (table, bag range) work
    items of about ``item_lookups`` lookups one at a time; the caller never waits for a helper
    that has not claimed an item. Batches with fewer than ``serial_below`` lookups in all run
    on the calling thread. Returns the number of lookups.
    The GIL is released while pooling.
    """
    cdef Py_ssize_t n_tables = len(weights), t, n_items = 0, k
    if not (len(indices) == len(offsets) == len(per_sample_weights) == len(outs)
            == modes.shape[0] == n_tables):
        raise ValueError("pool: every argument needs one entry per table")
    if n_tables == 0:
        return 0
    cdef Py_ssize_t n_bags = len(offsets[0]) - 1
    cdef int64_t total = 0, per_chunk, min_chunks
    cdef ebag_table *tabs = <ebag_table *>malloc(n_tables * sizeof(ebag_table))
    cdef int64_t *item_table = NULL
    cdef int64_t *item_begin = NULL
    cdef int64_t *item_end = NULL
    cdef _work_items work
    cdef int64_t caller_items
    global _last_split
    if tabs == NULL:
        raise MemoryError()
    try:
        for t in range(n_tables):
            _fill_table(&tabs[t], t, weights[t], indices[t], offsets[t], per_sample_weights[t],
                        modes[t], outs[t])
            if len(offsets[t]) - 1 != n_bags:
                raise ValueError(f"table #{t}: {len(offsets[t]) - 1} bags, table #0 has {n_bags}")
            total += _last_offset(&tabs[t], n_bags)
        if n_bags == 0:
            return 0
        # At least 8 items per thread overall, so that a few large tables still keep every
        # thread busy and a descheduled thread holds up little work.
        min_chunks = (8 * threads + n_tables - 1) // n_tables
        for t in range(n_tables):
            n_items += _chunk_count(_last_offset(&tabs[t], n_bags), n_bags, min_chunks, item_lookups)
        item_table = <int64_t *>malloc(n_items * sizeof(int64_t))
        item_begin = <int64_t *>malloc(n_items * sizeof(int64_t))
        item_end = <int64_t *>malloc(n_items * sizeof(int64_t))
        if item_table == NULL or item_begin == NULL or item_end == NULL:
            raise MemoryError()
        n_items = 0
        for t in range(n_tables):
            # ceil(bags / chunks) bags per item gives at most as many items as counted above.
            per_chunk = _chunk_count(_last_offset(&tabs[t], n_bags), n_bags, min_chunks, item_lookups)
            per_chunk = (n_bags + per_chunk - 1) // per_chunk
            k = 0
            while k < n_bags:
                item_table[n_items] = t
                item_begin[n_items] = k
                item_end[n_items] = min(k + per_chunk, n_bags)
                n_items += 1
                k += per_chunk
        work.tabs = tabs
        work.table = item_table
        work.begin = item_begin
        work.end = item_end
        with nogil:
            caller_items = work_pool_run(1 if total < serial_below else threads, n_items,
                                         _pool_item, &work)
        _last_split = (caller_items, n_items)
        return total
    finally:
        free(tabs)
        free(item_table)
        free(item_begin)
        free(item_end)


#: What ``check_bags`` can find wrong with a table's bags, in the order it checks them.
BAG_PROBLEMS = ("indices_type", "indices_layout", "offsets_type", "offsets_layout",
                "dtype_mismatch", "no_offsets", "batch_size", "first_offset", "offset_beyond",
                "offset_decrease", "last_offset", "weights_missing", "weights_type",
                "weights_count", "weights_unexpected", "index_range")

cdef enum _problem:
    INDICES_TYPE, INDICES_LAYOUT, OFFSETS_TYPE, OFFSETS_LAYOUT, DTYPE_MISMATCH, NO_OFFSETS,
    BATCH_SIZE, FIRST_OFFSET, OFFSET_BEYOND, OFFSET_DECREASE, LAST_OFFSET, WEIGHTS_MISSING,
    WEIGHTS_TYPE, WEIGHTS_COUNT, WEIGHTS_UNEXPECTED, INDEX_RANGE, NO_PROBLEM


cdef inline int64_t _at(cnp.ndarray a, Py_ssize_t i) noexcept:
    """Element ``i`` of a checked 1-D int32/int64 array."""
    if cnp.PyArray_ITEMSIZE(a) == 8:
        return (<const int64_t *>cnp.PyArray_DATA(a))[i]
    return (<const int32_t *>cnp.PyArray_DATA(a))[i]


cdef _problem _table_problem(object indices, object offsets, object weights, int64_t rows,
                             bint weighted, int64_t batch_size, tuple index_dtypes,
                             int64_t *position):
    """The first problem of one table's bags (NO_PROBLEM if none); ``position`` gets the
    offending position where the problem has one."""
    if not isinstance(indices, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>indices) != 1 \
            or indices.dtype not in index_dtypes:
        return INDICES_TYPE
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>indices):
        return INDICES_LAYOUT
    if not isinstance(offsets, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>offsets) != 1 \
            or offsets.dtype not in index_dtypes:
        return OFFSETS_TYPE
    if not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>offsets):
        return OFFSETS_LAYOUT
    cdef cnp.ndarray idx = <cnp.ndarray>indices, off = <cnp.ndarray>offsets
    if cnp.PyArray_ITEMSIZE(idx) != cnp.PyArray_ITEMSIZE(off):
        return DTYPE_MISMATCH
    cdef int64_t n_idx = cnp.PyArray_DIM(idx, 0), n_off = cnp.PyArray_DIM(off, 0)
    if n_off == 0:
        return NO_OFFSETS
    if n_off - 1 != batch_size:
        return BATCH_SIZE
    if _at(off, 0) != 0:
        return FIRST_OFFSET
    cdef const void *off_data = cnp.PyArray_DATA(off)
    cdef const void *idx_data = cnp.PyArray_DATA(idx)
    cdef bint wide = cnp.PyArray_ITEMSIZE(off) == 8
    with nogil:
        position[0] = (ebag_first_decrease_i64(<const int64_t *>off_data, n_off) if wide
                       else ebag_first_decrease_i32(<const int32_t *>off_data, n_off))
    if position[0] >= 0:
        return OFFSET_BEYOND if _at(off, position[0]) > n_idx else OFFSET_DECREASE
    if _at(off, n_off - 1) != n_idx:
        return LAST_OFFSET
    if weighted:
        if weights is None:
            return WEIGHTS_MISSING
        if not isinstance(weights, cnp.ndarray) or cnp.PyArray_NDIM(<cnp.ndarray>weights) != 1 \
                or cnp.PyArray_TYPE(<cnp.ndarray>weights) != cnp.NPY_FLOAT32 \
                or not cnp.PyArray_ISNOTSWAPPED(<cnp.ndarray>weights) \
                or not cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>weights):
            return WEIGHTS_TYPE
        if cnp.PyArray_DIM(<cnp.ndarray>weights, 0) != n_idx:
            return WEIGHTS_COUNT
    elif weights is not None:
        return WEIGHTS_UNEXPECTED
    with nogil:
        position[0] = (ebag_first_out_of_range_i64(<const int64_t *>idx_data, n_idx, rows) if wide
                       else ebag_first_out_of_range_i32(<const int32_t *>idx_data, n_idx, rows))
    return INDEX_RANGE if position[0] >= 0 else NO_PROBLEM


def check_bags(tuple indices, tuple offsets, tuple weights, tuple tables, int64_t batch_size,
               tuple index_dtypes):
    """The first problem of a batch's bags as ``(table, problem, position)``, or None.

    ``tables`` holds ``(rows, weighted)`` per table; ``problem`` is a name in ``BAG_PROBLEMS``;
    ``position`` is the offending position in the offsets (``offset_beyond``,
    ``offset_decrease``) or the indices (``index_range``), else -1. One call checks every table,
    so a small batch is not held up by a Python call per check (``SparseBatch.validate`` words
    the problem).
    """
    cdef Py_ssize_t t
    cdef int64_t position
    cdef _problem problem
    for t in range(len(tables)):
        position = -1
        rows, weighted = tables[t]
        problem = _table_problem(indices[t], offsets[t], weights[t], rows, weighted, batch_size,
                                 index_dtypes, &position)
        if problem != NO_PROBLEM:
            return t, BAG_PROBLEMS[<int>problem], position
    return None
