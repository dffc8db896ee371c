# The embedding-bag kernel's ABI (pim/kernels/emb_abi.h) for Cython: cimported by _emb_pack.pyx
# and by any Cython code that builds kernel requests itself
# (`from pim.emb_abi cimport ...`, with pim/kernels in the extension's include_dirs).
from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "emb_abi.h" nogil:
    enum:
        EMB_ABI_VERSION
        EMB_CONFIG_MAGIC
        EMB_REQUEST_MAGIC
        EMB_STATUS_MAGIC
        EMB_MAX_JOBS
        EMB_NO_BAG
    enum emb_value_mode:
        EMB_F32
        EMB_I32
        EMB_I8
        EMB_NR_VALUE_MODES
    enum emb_op:
        EMB_OP_SUM
        EMB_OP_WSUM
        EMB_OP_MAX
        EMB_NR_OPS
    enum emb_error:
        EMB_OK
        EMB_ERR_CONFIG
        EMB_ERR_REQUEST
        EMB_ERR_JOB
        EMB_ERR_OFFSETS
        EMB_ERR_INDEX
    ctypedef struct emb_config_t:
        uint32_t magic, abi_version, request_off, request_cap, output_off, output_cap
    ctypedef struct emb_request_header_t:
        uint32_t magic, batch_id, n_jobs, total_bags, total_bytes
    ctypedef struct emb_job_t:
        uint32_t tile_off, n_rows, row_bytes, n_cols, n_bags
        uint32_t offsets_off, indices_off, weights_off, out_off
        uint8_t mode, op
    ctypedef struct emb_status_t:
        uint32_t magic, batch_id, error, error_job, error_bag, error_value
        uint32_t overflow_bags, first_overflow_bag
        uint64_t cycles
    uint32_t EMB_OUT_ROW_BYTES(uint32_t n_cols)
