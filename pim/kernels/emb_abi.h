/*
 * ABI shared by the embedding-bag DPU kernel (emb_bag.c) and its host side (pim/_emb_pack.pyx).
 *
 * Compiled by dpu-upmem-dpurte-clang (ILP32: pointers and size_t are 32-bit), by gcc for the
 * emulator and by Cython/gcc for the host (LP64).  Every shared struct therefore holds only
 * fixed-width integers, is padded explicitly to a multiple of 8 bytes, and its size is checked
 * at compile time on every side.  All values are little-endian.
 *
 * MRAM layout (offsets are bytes from DPU_MRAM_HEAP_POINTER, all multiples of 8; the host owns
 * the layout and tells the kernel where the two batch areas are through EMB_CONFIG):
 *
 *   [request area]  what the host pushes once per batch:
 *        emb_request_header_t
 *        emb_job_t[n_jobs]
 *        per job, each section 8-byte aligned (offsets relative to the request start):
 *          uint32 offsets[n_bags + 1]   job-local, offsets[0] == 0, non-decreasing
 *          uint32 indices[nnz]          local row numbers of the job's tile
 *          weights[nnz]                 EMB_OP_WSUM only: float32 (EMB_F32) or int32 (int modes)
 *   [output area]   what the host pulls once per batch:
 *        emb_status_t
 *        per job at out_off (relative to the output start): n_bags rows of
 *        EMB_OUT_ROW_BYTES(n_cols) bytes, n_cols float32 (EMB_F32) or int32 (int modes) each
 *   [tiles]         anywhere else: rows x row_bytes, row r of a tile at tile_off + r * row_bytes,
 *                   the first n_cols elements of each row used, the rest padding
 *
 * A tile is any set of rows the host chose (a row range, a column slice, a replica, or
 * partial-sum cache rows appended as extra rows): the kernel only sees local row numbers.
 */
#ifndef UPDLRM_EMB_ABI_H
#define UPDLRM_EMB_ABI_H

#include <stdint.h>

#define EMB_ABI_VERSION 1u
#define EMB_CONFIG_MAGIC 0x43424D45u  /* "EMBC" */
#define EMB_REQUEST_MAGIC 0x51424D45u /* "EMBQ" */
#define EMB_STATUS_MAGIC 0x52424D45u  /* "EMBR" */

/* Jobs per request: the kernel keeps the job table in WRAM (EMB_MAX_JOBS * 48 bytes). */
#define EMB_MAX_JOBS 64u
/* "no bag" marker in emb_status_t */
#define EMB_NO_BAG 0xFFFFFFFFu

/* Bytes of one pooled output row: n_cols 4-byte values, padded to 8. */
#define EMB_OUT_ROW_BYTES(n_cols) ((((uint32_t)(n_cols)) * 4u + 7u) & ~7u)

/* How tile rows are stored (and what the kernel accumulates in). */
enum emb_value_mode {
    EMB_F32 = 0, /* float32 rows, float32 accumulation (soft-float on the DPU, IEEE per add)  */
    EMB_I32 = 1, /* int32 fixed-point rows, int32 accumulation with overflow detection       */
    EMB_I8 = 2,  /* int8 rows, int32 accumulation with overflow detection                    */
    EMB_NR_VALUE_MODES = 3
};

/* What the kernel does with one bag's rows. */
enum emb_op {
    EMB_OP_SUM = 0,  /* sum of rows (mean = sum / length, on the host)                       */
    EMB_OP_WSUM = 1, /* sum of weight * row                                                  */
    EMB_OP_MAX = 2,  /* element-wise max; an empty bag gives 0                                */
    EMB_NR_OPS = 3
};

/* emb_status_t.error: the first problem the kernel found (it never faults on bad requests). */
enum emb_error {
    EMB_OK = 0,
    EMB_ERR_CONFIG = 1,        /* EMB_CONFIG not set or areas not 8-aligned                    */
    EMB_ERR_REQUEST = 2,       /* bad request magic, too many jobs, or request beyond its area */
    EMB_ERR_JOB = 3,           /* a job descriptor is inconsistent (error_job says which)      */
    EMB_ERR_OFFSETS = 4,       /* a bag ends before it starts or past the indices (error_value = its end) */
    EMB_ERR_INDEX = 5          /* a local row >= n_rows (error_bag, error_value = the row)     */
};

/* WRAM __host variable EMB_CONFIG: where the batch areas are. Written once by the host. */
typedef struct emb_config {
    uint32_t magic;        /* EMB_CONFIG_MAGIC */
    uint32_t abi_version;  /* EMB_ABI_VERSION  */
    uint32_t request_off;  /* heap offset of the request area */
    uint32_t request_cap;  /* its size in bytes */
    uint32_t output_off;   /* heap offset of the output area */
    uint32_t output_cap;   /* its size in bytes */
    uint32_t reserved[2];
} emb_config_t;

typedef struct emb_request_header {
    uint32_t magic;        /* EMB_REQUEST_MAGIC */
    uint32_t batch_id;     /* echoed in emb_status_t so the host can tell a fresh result */
    uint32_t n_jobs;
    uint32_t total_bags;   /* sum of the jobs' n_bags; global bag g walks jobs in order */
    uint32_t total_bytes;  /* bytes of this request actually used (<= request_cap) */
    uint32_t reserved[3];
} emb_request_header_t;

typedef struct emb_job {
    uint32_t tile_off;     /* heap offset of the tile's row 0 */
    uint32_t n_rows;       /* rows in the tile (local rows 0 .. n_rows-1) */
    uint32_t row_bytes;    /* row stride, multiple of 8 */
    uint32_t n_cols;       /* values per row used (n_cols * elem size <= row_bytes) */
    uint32_t n_bags;
    uint32_t offsets_off;  /* request-relative, 8-aligned: uint32[n_bags + 1] */
    uint32_t indices_off;  /* request-relative, 8-aligned: uint32[offsets[n_bags]] */
    uint32_t weights_off;  /* request-relative, 8-aligned; EMB_OP_WSUM only */
    uint32_t out_off;      /* output-relative, 8-aligned: n_bags * EMB_OUT_ROW_BYTES(n_cols) */
    uint8_t mode;          /* enum emb_value_mode */
    uint8_t op;            /* enum emb_op */
    uint16_t reserved0;
    uint32_t reserved[2];
} emb_job_t;

typedef struct emb_status {
    uint32_t magic;              /* EMB_STATUS_MAGIC */
    uint32_t batch_id;           /* copied from the request */
    uint32_t error;              /* enum emb_error */
    uint32_t error_job;          /* job of the first error (EMB_ERR_JOB) */
    uint32_t error_bag;          /* smallest global bag with an error, or EMB_NO_BAG */
    uint32_t error_value;        /* the offending offset or row */
    uint32_t overflow_bags;      /* bags whose int32 accumulation overflowed */
    uint32_t first_overflow_bag; /* smallest global bag that overflowed, or EMB_NO_BAG */
    uint64_t cycles;             /* perfcounter cycles from boot to the end of pooling: measured
                                    on UPMEM hardware, modelled (DMA only) by the emulator */
} emb_status_t;

_Static_assert(sizeof(emb_config_t) == 32, "emb_config_t layout");
_Static_assert(sizeof(emb_request_header_t) == 32, "emb_request_header_t layout");
_Static_assert(sizeof(emb_job_t) == 48, "emb_job_t layout");
_Static_assert(sizeof(emb_status_t) == 40, "emb_status_t layout");

#endif /* UPDLRM_EMB_ABI_H */
