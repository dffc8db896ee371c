"""Host half of the embedding-bag kernel's ABI (``pim/kernels/emb_abi.h``): request packing and
status decoding.

The structs come from the kernel's own header through ``cdef extern``, so host and DPU cannot
disagree on a layout.  Packing is one pass over the jobs in C (no Python per index): it rebases
bag offsets per job, checks offsets and local rows, quantises weights for integer tiles and
lays every DPU's request out in one ``[n_dpus, request_bytes]`` array ready for a single push.
"""
from collections import namedtuple

import numpy as np

cimport numpy as cnp
from libc.math cimport fabs, rint
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

from pim.emb_abi cimport *  # the repository root is on cythonize's include path

from updlrm.errors import CapacityError, InvalidInputError

cnp.import_array()


# --- constants the Python side needs (single source: emb_abi.h) ---------------------------------
ABI_VERSION = EMB_ABI_VERSION
MAX_JOBS = EMB_MAX_JOBS
NO_BAG = EMB_NO_BAG
F32, I32, I8 = EMB_F32, EMB_I32, EMB_I8
OP_SUM, OP_WSUM, OP_MAX = EMB_OP_SUM, EMB_OP_WSUM, EMB_OP_MAX
ERRORS = {EMB_OK: "ok", EMB_ERR_CONFIG: "EMB_CONFIG not set or misaligned",
          EMB_ERR_REQUEST: "malformed request", EMB_ERR_JOB: "inconsistent job descriptor",
          EMB_ERR_OFFSETS: "bag offsets decrease or run past the indices", EMB_ERR_INDEX: "local row out of range"}
STATUS_BYTES = sizeof(emb_status_t)
CONFIG_BYTES = sizeof(emb_config_t)

# Largest quantised weight magnitude for integer tiles (int16 range keeps v * w in int32 for
# int8 rows and bags of up to 516 rows).
WEIGHT_QMAX = 32767
cdef int64_t _INT32_MAX = 2147483647

PackedBatch = namedtuple("PackedBatch", [
    "requests", "output_bytes", "job_out_off", "job_slot", "job_bag0", "job_weight_scale"])
PackedBatch.__doc__ = """One batch laid out for the kernel.

``requests``: uint8[n_dpus, request_bytes], one common length as a push needs;
``output_bytes``: the common length to pull from the output area;
``job_out_off[j]``: where job j's pooled rows start in its DPU's output area;
``job_slot[j]``, ``job_bag0[j]``: job j's index in its DPU's job table and the DPU-global
number of its first bag (how the kernel's status names jobs and bags);
``job_weight_scale[j]``: the factor of job j's quantised weights (1 for float32 tiles and
unweighted jobs).
"""

ctypedef fused index_t:
    int32_t
    int64_t


cdef inline uint32_t _round8(uint64_t n) noexcept nogil:
    return <uint32_t>((n + 7) & ~(<uint64_t>7))


def out_row_bytes(uint32_t n_cols) -> int:
    """Bytes of one pooled output row of ``n_cols`` values (4 bytes each, padded to 8)."""
    return EMB_OUT_ROW_BYTES(n_cols)


def pack_config(uint32_t request_off, uint32_t request_cap, uint32_t output_off,
                uint32_t output_cap) -> np.ndarray:
    """The bytes of ``EMB_CONFIG`` (emb_config_t) for the given heap layout."""
    out = np.zeros(sizeof(emb_config_t), dtype=np.uint8)
    cdef uint8_t[::1] buf = out
    cdef emb_config_t *cfg = <emb_config_t *>&buf[0]
    cfg.magic = EMB_CONFIG_MAGIC
    cfg.abi_version = EMB_ABI_VERSION
    cfg.request_off = request_off
    cfg.request_cap = request_cap
    cfg.output_off = output_off
    cfg.output_cap = output_cap
    return out


def weight_levels(int64_t qmax, int64_t max_bag_len) -> int:
    """Largest quantised weight |p| for a job: qmax * max_bag_len * p must fit int32.

    Clamped to [1, WEIGHT_QMAX]; at 1 an overflow is possible and the kernel then flags it.
    """
    cdef int64_t denominator = max(qmax, 1) * max(max_bag_len, 1)
    return int(min(max(_INT32_MAX // denominator, 1), WEIGHT_QMAX))


def pack_requests(
    uint32_t n_dpus, uint32_t batch_id, uint32_t request_cap, uint32_t output_cap,
    # one entry per placement (a tile stored on one DPU)
    const int32_t[::1] pl_dpu, const uint32_t[::1] pl_tile_off, const uint32_t[::1] pl_rows,
    const uint32_t[::1] pl_row_bytes, const uint32_t[::1] pl_cols, const uint8_t[::1] pl_mode,
    const int64_t[::1] pl_qmax,
    # one entry per job: bags job_bag_ptr[j] .. job_bag_ptr[j + 1] of the CSR below
    const int64_t[::1] job_placement, const uint8_t[::1] job_op, const int64_t[::1] job_bag_ptr,
    # the bags: offsets (total_bags + 1) into indices / weights
    const int64_t[::1] offsets, const index_t[::1] indices, weights,
):
    """Lay out every DPU's request for one batch.

    Returns a :class:`PackedBatch`.  Raises InvalidInputError for bad offsets or rows, CapacityError when a
    DPU gets more than MAX_JOBS jobs or a request/output larger than its area.
    """
    cdef Py_ssize_t n_jobs = job_placement.shape[0]
    if job_op.shape[0] != n_jobs or job_bag_ptr.shape[0] != n_jobs + 1:
        raise InvalidInputError("job_op needs one entry per job and job_bag_ptr one more")
    cdef Py_ssize_t n_bags_total = offsets.shape[0] - 1
    if n_bags_total < 0 or job_bag_ptr[0] < 0 or job_bag_ptr[n_jobs] > n_bags_total:
        raise InvalidInputError("job_bag_ptr must point into the bags of offsets")
    cdef const float[::1] wts
    cdef bint has_weights = weights is not None
    if has_weights:
        wts = weights
        if wts.shape[0] != indices.shape[0]:
            raise InvalidInputError(
                f"weights has {wts.shape[0]} entries for {indices.shape[0]} indices")
    cdef Py_ssize_t n_pl = pl_dpu.shape[0]

    req_bytes_arr = np.full(n_dpus, sizeof(emb_request_header_t), dtype=np.uint32)
    out_bytes_arr = np.full(n_dpus, sizeof(emb_status_t), dtype=np.uint32)
    job_out_off_arr = np.zeros(n_jobs, dtype=np.uint32)
    job_slot_arr = np.zeros(n_jobs, dtype=np.uint32)
    job_bag0_arr = np.zeros(n_jobs, dtype=np.uint32)
    job_wscale_arr = np.ones(n_jobs, dtype=np.float64)
    cdef uint32_t[::1] req_bytes = req_bytes_arr, out_bytes = out_bytes_arr
    cdef uint32_t[::1] jobs_on = np.zeros(n_dpus, dtype=np.uint32)
    cdef uint32_t[::1] bags_on = np.zeros(n_dpus, dtype=np.uint32)
    cdef uint32_t[::1] cursor = np.zeros(n_dpus, dtype=np.uint32)
    cdef uint32_t[::1] job_out_off = job_out_off_arr, job_slot = job_slot_arr
    cdef uint32_t[::1] job_bag0 = job_bag0_arr
    cdef double[::1] job_wscale = job_wscale_arr
    cdef Py_ssize_t j, b, p, i
    cdef int32_t d
    cdef int64_t lo, hi, start, end, nnz, max_len
    cdef uint8_t op, mode
    cdef uint64_t req_need, out_need
    cdef double wmax

    # Pass 1: validate the jobs and size every DPU's request and output.
    for j in range(n_jobs):
        p = job_placement[j]
        if p < 0 or p >= n_pl:
            raise InvalidInputError(f"job {j}: placement {p} does not exist")
        d = pl_dpu[p]
        op = job_op[j]
        mode = pl_mode[p]
        if op >= EMB_NR_OPS:
            raise InvalidInputError(f"job {j}: unknown op {op}")
        if op == EMB_OP_WSUM and not has_weights:
            raise InvalidInputError(f"job {j}: a weighted sum needs weights")
        lo = job_bag_ptr[j]
        hi = job_bag_ptr[j + 1]
        if hi < lo:
            raise InvalidInputError(f"job {j}: job_bag_ptr decreases ({lo} -> {hi})")
        if jobs_on[d] == EMB_MAX_JOBS:
            raise CapacityError(f"DPU {d}: more than {EMB_MAX_JOBS} jobs in one batch")
        job_slot[j] = jobs_on[d]
        job_bag0[j] = bags_on[d]
        jobs_on[d] += 1
        bags_on[d] += <uint32_t>(hi - lo)
        max_len = 0
        for b in range(lo, hi):
            start = offsets[b]
            end = offsets[b + 1]
            if start < 0 or end < start or end > indices.shape[0]:
                raise InvalidInputError(
                    f"job {j}, bag {b}: offsets {start}..{end} are not a range of the "
                    f"{indices.shape[0]} indices")
            max_len = max(max_len, end - start)
            for i in range(start, end):
                if indices[i] < 0 or <int64_t>indices[i] >= <int64_t>pl_rows[p]:
                    raise InvalidInputError(
                        f"job {j}, bag {b}: local row {indices[i]} outside the tile's "
                        f"{pl_rows[p]} rows")
        nnz = offsets[hi] - offsets[lo]
        req_bytes[d] += sizeof(emb_job_t) + _round8(4 * (hi - lo + 1)) + _round8(4 * nnz) * (2 if op == EMB_OP_WSUM else 1)
        job_out_off[j] = out_bytes[d]
        out_need = <uint64_t>out_bytes[d] + <uint64_t>(hi - lo) * EMB_OUT_ROW_BYTES(pl_cols[p])
        if out_need > output_cap:
            raise CapacityError(
                f"DPU {d}: the batch's pooled rows need more than the output area of "
                f"{output_cap} bytes; enlarge output_capacity or split the batch")
        out_bytes[d] = <uint32_t>out_need
        if op == EMB_OP_WSUM and mode != EMB_F32:
            wmax = 0.0
            for i in range(offsets[lo], offsets[hi]):
                wmax = max(wmax, fabs(wts[i]))
            if wmax > 0.0:
                job_wscale[j] = wmax / weight_levels(pl_qmax[p], max_len)

    cdef uint32_t req_len = _round8(req_bytes_arr.max()) if n_dpus else 0
    if req_len > request_cap:
        raise CapacityError(
            f"DPU {int(req_bytes_arr.argmax())}: request of {req_len} bytes exceeds the request "
            f"area of {request_cap} bytes; enlarge request_capacity or split the batch")
    requests = np.zeros((n_dpus, req_len), dtype=np.uint8)
    cdef uint8_t[:, ::1] req = requests

    # Pass 2: headers, job tables (fixed size, first), then each job's sections.
    cdef emb_request_header_t *hdr
    cdef emb_job_t *job
    cdef uint32_t *u32
    cdef int32_t *i32
    cdef float *f32
    cdef uint32_t pos
    cdef double inv
    for d in range(<int32_t>n_dpus):
        hdr = <emb_request_header_t *>&req[d, 0]
        hdr.magic = EMB_REQUEST_MAGIC
        hdr.batch_id = batch_id
        hdr.n_jobs = jobs_on[d]
        hdr.total_bags = bags_on[d]
        hdr.total_bytes = req_bytes[d]
        cursor[d] = sizeof(emb_request_header_t) + jobs_on[d] * sizeof(emb_job_t)
    with nogil:
        for j in range(n_jobs):
            p = job_placement[j]
            d = pl_dpu[p]
            op = job_op[j]
            lo = job_bag_ptr[j]
            hi = job_bag_ptr[j + 1]
            nnz = offsets[hi] - offsets[lo]
            job = <emb_job_t *>&req[d, sizeof(emb_request_header_t) + job_slot[j] * sizeof(emb_job_t)]
            job.tile_off = pl_tile_off[p]
            job.n_rows = pl_rows[p]
            job.row_bytes = pl_row_bytes[p]
            job.n_cols = pl_cols[p]
            job.n_bags = <uint32_t>(hi - lo)
            job.mode = pl_mode[p]
            job.op = op
            job.out_off = job_out_off[j]
            pos = cursor[d]
            job.offsets_off = pos
            u32 = <uint32_t *>&req[d, pos]
            for b in range(lo, hi + 1):
                u32[b - lo] = <uint32_t>(offsets[b] - offsets[lo])
            pos += _round8(4 * (hi - lo + 1))
            job.indices_off = pos
            u32 = <uint32_t *>&req[d, pos]
            for i in range(nnz):
                u32[i] = <uint32_t>indices[offsets[lo] + i]
            pos += _round8(4 * nnz)
            if op == EMB_OP_WSUM:
                job.weights_off = pos
                if pl_mode[p] == EMB_F32:
                    memcpy(&req[d, pos], &wts[offsets[lo]], 4 * nnz)
                else:
                    i32 = <int32_t *>&req[d, pos]
                    inv = 1.0 / job_wscale[j]
                    for i in range(nnz):
                        i32[i] = <int32_t>rint(wts[offsets[lo] + i] * inv)
                pos += _round8(4 * nnz)
            cursor[d] = pos
    out_len = _round8(out_bytes_arr.max()) if n_dpus else 0
    return PackedBatch(requests, int(out_len), job_out_off_arr, job_slot_arr, job_bag0_arr,
                       job_wscale_arr)


def read_status(const uint8_t[:, ::1] output):
    """Decode every DPU's emb_status_t (the first bytes of each output row) into named arrays."""
    cdef Py_ssize_t n = output.shape[0], d
    if output.shape[1] < <Py_ssize_t>sizeof(emb_status_t):
        raise InvalidInputError("output rows are shorter than emb_status_t")
    names = ("magic", "batch_id", "error", "error_job", "error_bag", "error_value",
             "overflow_bags", "first_overflow_bag")
    fields = {name: np.empty(n, dtype=np.uint32) for name in names}
    fields["cycles"] = np.empty(n, dtype=np.uint64)
    cdef uint64_t[::1] cycles = fields["cycles"]
    cdef uint32_t[::1] magic = fields["magic"], batch = fields["batch_id"]
    cdef uint32_t[::1] err = fields["error"], ejob = fields["error_job"]
    cdef uint32_t[::1] ebag = fields["error_bag"], evalue = fields["error_value"]
    cdef uint32_t[::1] ovf = fields["overflow_bags"], fovf = fields["first_overflow_bag"]
    cdef const emb_status_t *st
    for d in range(n):
        st = <const emb_status_t *>&output[d, 0]
        magic[d] = st.magic
        batch[d] = st.batch_id
        err[d] = st.error
        ejob[d] = st.error_job
        ebag[d] = st.error_bag
        evalue[d] = st.error_value
        ovf[d] = st.overflow_bags
        fovf[d] = st.first_overflow_bag
        cycles[d] = st.cycles
    fields["status_magic"] = EMB_STATUS_MAGIC
    return fields


def reduce_results(const uint8_t[:, ::1] output, float[:, ::1] dst,
                   const int32_t[::1] job_dpu, const uint32_t[::1] job_out_off,
                   const uint32_t[::1] job_n_cols, const uint8_t[::1] job_mode,
                   const uint8_t[::1] job_op, const double[::1] job_factor,
                   const int64_t[::1] job_bag_ptr, const int64_t[::1] bag_row,
                   const int64_t[::1] job_col):
    """Fold every job's pooled rows into ``dst`` (float32 ``[rows, cols]``), in job order.

    Bag ``b`` of job ``j`` (bags ``job_bag_ptr[j] .. job_bag_ptr[j+1]-1`` of the batch) lands
    in ``dst[bag_row[b], job_col[j] : job_col[j] + job_n_cols[j]]``: added for SUM/WSUM jobs,
    max-ed for MAX jobs (start MAX tables at -inf and zero their empty bags afterwards).
    Integer results are dequantised as ``float32(acc * job_factor[j])``, as :meth:`collect` does.
    """
    cdef Py_ssize_t n_jobs = job_dpu.shape[0], j, b, k
    if not (job_out_off.shape[0] == job_n_cols.shape[0] == job_mode.shape[0] == job_op.shape[0]
            == job_factor.shape[0] == job_col.shape[0] == n_jobs
            and job_bag_ptr.shape[0] == n_jobs + 1):
        raise InvalidInputError("every job array needs one entry per job (job_bag_ptr one more)")
    for j in range(n_jobs):
        if (job_dpu[j] < 0 or job_dpu[j] >= output.shape[0] or job_col[j] < 0
                or job_col[j] + job_n_cols[j] > dst.shape[1] or job_bag_ptr[j + 1] > bag_row.shape[0]
                or <int64_t>job_out_off[j] + (job_bag_ptr[j + 1] - job_bag_ptr[j])
                * <int64_t>EMB_OUT_ROW_BYTES(job_n_cols[j]) > output.shape[1]):
            raise InvalidInputError(f"job {j} points outside the output or dst")
        for b in range(job_bag_ptr[j], job_bag_ptr[j + 1]):
            if bag_row[b] < 0 or bag_row[b] >= dst.shape[0]:
                raise InvalidInputError(f"bag {b} maps to dst row {bag_row[b]} of {dst.shape[0]}")
    cdef const uint8_t *src
    cdef float *out
    cdef float v
    cdef uint32_t n_cols, row_bytes
    cdef bint is_max, is_float
    with nogil:
        for j in range(n_jobs):
            n_cols = job_n_cols[j]
            row_bytes = EMB_OUT_ROW_BYTES(n_cols)
            is_max = job_op[j] == EMB_OP_MAX
            is_float = job_mode[j] == EMB_F32
            src = &output[job_dpu[j], job_out_off[j]]
            for b in range(job_bag_ptr[j], job_bag_ptr[j + 1]):
                out = &dst[bag_row[b], job_col[j]]
                for k in range(n_cols):
                    if is_float:
                        v = (<const float *>src)[k]
                    else:
                        v = <float>((<const int32_t *>src)[k] * job_factor[j])
                    if is_max:
                        if v > out[k]:
                            out[k] = v
                    else:
                        out[k] = out[k] + v
                src += row_bytes
