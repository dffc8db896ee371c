# C-level contract of updlrm's libdpu binding (cimported by _dpu.pyx).
#
# The extern block names the subset of the UPMEM SDK host API (dpu.h, SDK 2025.1 signatures) that
# the binding calls.  It compiles against the real SDK's header and against the emulator's, which
# keeps the SDK's names.  Error codes are never bound by number: dpu_extras.h lists them by name,
# and holds the one difference between the two builds (which libdpu, emulator counters).
from libc.stdbool cimport bool as c_bool
from libc.stdint cimport uint32_t
from libc.stdio cimport FILE


cdef extern from "dpu.h" nogil:
    ctypedef enum dpu_error_t:
        DPU_OK
        DPU_ERR_ASYNC_JOBS

    ctypedef enum dpu_set_kind_t:
        DPU_SET_RANKS
        DPU_SET_DPU

    ctypedef enum dpu_launch_policy_t:
        DPU_ASYNCHRONOUS
        DPU_SYNCHRONOUS

    ctypedef enum dpu_xfer_t:
        DPU_XFER_TO_DPU
        DPU_XFER_FROM_DPU

    ctypedef enum dpu_xfer_flags_t:
        DPU_XFER_DEFAULT
        DPU_XFER_ASYNC

    # Passed by value everywhere; only the tag is read here, the union stays opaque.
    cdef struct dpu_set_t:
        dpu_set_kind_t kind

    cdef struct dpu_program_t:
        pass

    cdef struct dpu_set_rank_iterator_t:
        c_bool has_next
        dpu_set_t next

    cdef struct dpu_set_dpu_iterator_t:
        c_bool has_next
        dpu_set_t next

    const uint32_t DPU_ALLOCATE_ALL

    dpu_error_t dpu_alloc(uint32_t nr_dpus, const char *profile, dpu_set_t *dpu_set)
    dpu_error_t dpu_alloc_ranks(uint32_t nr_ranks, const char *profile, dpu_set_t *dpu_set)
    dpu_error_t dpu_free(dpu_set_t dpu_set)
    dpu_error_t dpu_get_nr_ranks(dpu_set_t dpu_set, uint32_t *nr_ranks)
    dpu_error_t dpu_get_nr_dpus(dpu_set_t dpu_set, uint32_t *nr_dpus)

    dpu_error_t dpu_load(dpu_set_t dpu_set, const char *binary_path, dpu_program_t **program)

    dpu_error_t dpu_launch(dpu_set_t dpu_set, dpu_launch_policy_t policy)
    dpu_error_t dpu_status(dpu_set_t dpu_set, c_bool *done, c_bool *fault)
    dpu_error_t dpu_sync(dpu_set_t dpu_set)

    dpu_error_t dpu_copy_from(dpu_set_t dpu_set, const char *symbol_name, uint32_t symbol_offset,
                              void *dst, size_t length)
    dpu_error_t dpu_broadcast_to(dpu_set_t dpu_set, const char *symbol_name,
                                 uint32_t symbol_offset, const void *src, size_t length,
                                 dpu_xfer_flags_t flags)
    dpu_error_t dpu_prepare_xfer(dpu_set_t dpu_set, void *buffer)
    dpu_error_t dpu_push_xfer(dpu_set_t dpu_set, dpu_xfer_t xfer, const char *symbol_name,
                              uint32_t symbol_offset, size_t length, dpu_xfer_flags_t flags)

    dpu_error_t dpu_log_read(dpu_set_t dpu_set, FILE *stream)

    dpu_set_rank_iterator_t dpu_set_rank_iterator_from(dpu_set_t *dpu_set)
    void dpu_set_rank_iterator_next(dpu_set_rank_iterator_t *iterator)
    dpu_set_dpu_iterator_t dpu_set_dpu_iterator_from(dpu_set_t *dpu_set)
    void dpu_set_dpu_iterator_next(dpu_set_dpu_iterator_t *iterator)

    # SDK 2025.1: the caller owns (and frees) the returned string.
    char *dpu_error_to_string(dpu_error_t status)


cdef extern from "dpu_extras.h" nogil:
    struct updlrm_dpu_error_name:
        dpu_error_t code
        const char *name
    const updlrm_dpu_error_name *updlrm_dpu_error_names
    const size_t updlrm_dpu_nr_error_names

    const char *updlrm_libdpu_kind
    const char *updlrm_libdpu_version()

    # Emulator counters into raw buffers of the dpu_emu.h structs; stubs with the real SDK.
    const int updlrm_counters_available
    const size_t updlrm_sizeof_dpu_counters
    const size_t updlrm_sizeof_dma_counters
    const size_t updlrm_sizeof_xfer_record
    const size_t updlrm_sizeof_xfer_totals
    dpu_error_t updlrm_get_dpu_counters(dpu_set_t dpu, void *out)
    dpu_error_t updlrm_get_last_launch(dpu_set_t dpu, void *per_tasklet, uint32_t capacity,
                                       uint32_t *nr_tasklets)
    dpu_error_t updlrm_get_xfer_log(dpu_set_t dpu_set, void *out, uint32_t capacity,
                                    uint32_t *count)
    dpu_error_t updlrm_get_xfer_totals(dpu_set_t dpu_set, void *out)
    dpu_error_t updlrm_reset_counters(dpu_set_t dpu_set)

