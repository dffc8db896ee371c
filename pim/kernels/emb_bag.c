/*
 * Embedding-bag DPU kernel: pools bags of rows of tiles resident in this DPU's MRAM.
 *
 * One source for the hardware (dpu-upmem-dpurte-clang) and the emulator (gcc with the
 * emulator's runtime headers). The request/output format is in emb_abi.h.
 *
 * Per launch: tasklet 0 validates EMB_CONFIG and the request header and copies the job table
 * to WRAM; after a barrier, tasklet t pools the global bags t, t + NR_TASKLETS, ... (bags of
 * all jobs numbered in job order).  For each bag it streams the bag's offsets, indices and
 * weights from MRAM in small chunks (so batch size is bounded by MRAM, not WRAM), gathers each
 * row with one DMA of exactly the bytes it needs (a row wider than EMB_COL_CHUNK values is
 * pooled in column chunks), accumulates in WRAM and writes the pooled row to the output area.
 * Finally tasklet 0 merges the tasklets' error/overflow records into emb_status_t.
 *
 * Values: float32 accumulation is plain C float arithmetic — soft-float on the DPU, correctly
 * rounded per operation, and bit-identical to a sequential float32 sum in bag order when the
 * emulator build uses -ffp-contract=off.  Integer modes accumulate in int32 and flag a bag
 * whose sum or weighted product leaves int32 instead of wrapping.
 */
#include <stdbool.h>
#include <stdint.h>

#include <alloc.h>
#include <barrier.h>
#include <defs.h>
#include <mram.h>

#include "emb_abi.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc (emulator): -ffp-contract=off on the command line */
#endif

/* Values pooled per pass over a bag (WRAM per tasklet: two buffers of EMB_COL_CHUNK * 4 B). */
#ifndef EMB_COL_CHUNK
#if NR_TASKLETS > 16
#define EMB_COL_CHUNK 64u
#else
#define EMB_COL_CHUNK 128u
#endif
#endif
/* Indices (and weights) streamed from MRAM per DMA. */
#define EMB_IDX_CHUNK 64u
/* A streamed window may start 4 bytes before the first wanted element. */
#define EMB_STREAM_BYTES (EMB_IDX_CHUNK * 4u + 8u)
#define EMB_DMA_MAX 2048u
#define EMB_NOT_POW2 0xFFu

#if EMB_COL_CHUNK % 8u != 0u || EMB_COL_CHUNK * 4u > EMB_DMA_MAX
#error "EMB_COL_CHUNK must be a multiple of 8 and at most 512"
#endif

#define HEAP ((__mram_ptr uint8_t *)DPU_MRAM_HEAP_POINTER)

__host emb_config_t EMB_CONFIG;

static emb_request_header_t request __dma_aligned;
static emb_job_t jobs[EMB_MAX_JOBS] __dma_aligned;
static uint32_t job_nnz[EMB_MAX_JOBS];
static uint8_t job_row_shift[EMB_MAX_JOBS]; /* log2(row_bytes), or EMB_NOT_POW2 */
static uint32_t setup_error;
static emb_status_t tasklet_status[NR_TASKLETS];
static emb_status_t result_status __dma_aligned;

BARRIER_INIT(emb_barrier, NR_TASKLETS);

/* Per-tasklet WRAM buffers. */
typedef struct bag_buffers {
    void *acc;          /* EMB_COL_CHUNK accumulators (float or int32) */
    void *row;          /* one gathered row chunk */
    uint32_t *indices;  /* streamed index window */
    uint32_t *weights;  /* streamed weight window (float32 or int32 bits) */
    uint32_t *offsets;  /* 16-byte window around offsets[b], offsets[b + 1] */
} bag_buffers_t;

static inline uint32_t round8(uint32_t n) { return (n + 7u) & ~7u; }

static inline uint32_t elem_bytes(uint32_t mode) { return mode == EMB_I8 ? 1u : 4u; }

/* Copy the uint32 elements [first, first + n) of an MRAM array to WRAM with one aligned DMA
 * (n <= EMB_IDX_CHUNK); returns where element `first` landed. */
static const uint32_t *stream_u32(__mram_ptr uint8_t *array, uint32_t first, uint32_t n, uint32_t *buf)
{
    uint32_t pos = first * 4u;
    uint32_t start = pos & ~7u;
    mram_read(array + start, buf, round8(pos + n * 4u) - start);
    return buf + ((pos - start) >> 2);
}

static void note_error(emb_status_t *st, uint32_t error, uint32_t bag, uint32_t value)
{
    /* bags of one tasklet come in increasing order: its first error is its smallest bag */
    if (st->error == EMB_OK) {
        st->error = error;
        st->error_bag = bag;
        st->error_value = value;
    }
}

static bool job_is_valid(const emb_job_t *job, uint32_t nnz, uint32_t total_bytes, uint32_t output_cap)
{
    uint32_t eb;
    if (job->mode >= EMB_NR_VALUE_MODES || job->op >= EMB_NR_OPS) {
        return false;
    }
    eb = elem_bytes(job->mode);
    if (job->row_bytes == 0u || (job->row_bytes & 7u) != 0u || (job->tile_off & 7u) != 0u
        || job->n_cols == 0u || job->n_cols > job->row_bytes / eb) {
        return false;
    }
    if (((job->offsets_off | job->indices_off | job->weights_off | job->out_off) & 7u) != 0u) {
        return false;
    }
    /* 64-bit sums: a corrupt descriptor must not wrap around into a valid-looking range */
    if ((uint64_t)job->offsets_off + 4u * ((uint64_t)job->n_bags + 1u) > total_bytes
        || (uint64_t)job->indices_off + 4u * (uint64_t)nnz > total_bytes) {
        return false;
    }
    if (job->op == EMB_OP_WSUM && (uint64_t)job->weights_off + 4u * (uint64_t)nnz > total_bytes) {
        return false;
    }
    return job->out_off >= sizeof(emb_status_t)
        && (uint64_t)job->out_off + (uint64_t)job->n_bags * EMB_OUT_ROW_BYTES(job->n_cols) <= output_cap;
}

/* Tasklet 0: check the configuration and the request, load the job table into WRAM. */
static uint32_t setup(uint32_t *error_job)
{
    const emb_config_t *cfg = &EMB_CONFIG;
    __mram_ptr uint8_t *req = HEAP + cfg->request_off;
    uint32_t job_bytes, done, j, bags = 0u;
    uint32_t last[2] __dma_aligned;

    if (cfg->magic != EMB_CONFIG_MAGIC || cfg->abi_version != EMB_ABI_VERSION
        || ((cfg->request_off | cfg->request_cap | cfg->output_off | cfg->output_cap) & 7u) != 0u
        || cfg->request_cap < sizeof(emb_request_header_t) || cfg->output_cap < sizeof(emb_status_t)) {
        return EMB_ERR_CONFIG;
    }
    mram_read(req, &request, sizeof(request));
    if (request.magic != EMB_REQUEST_MAGIC || request.n_jobs > EMB_MAX_JOBS
        || request.total_bytes > cfg->request_cap
        || sizeof(request) + request.n_jobs * sizeof(emb_job_t) > request.total_bytes) {
        return EMB_ERR_REQUEST;
    }
    job_bytes = request.n_jobs * (uint32_t)sizeof(emb_job_t);
    for (done = 0u; done < job_bytes; done += EMB_DMA_MAX) {
        uint32_t n = job_bytes - done < EMB_DMA_MAX ? job_bytes - done : EMB_DMA_MAX;
        mram_read(req + sizeof(request) + done, (uint8_t *)jobs + done, n);
    }
    for (j = 0u; j < request.n_jobs; j++) {
        const emb_job_t *job = &jobs[j];
        uint32_t shift = 0u;
        /* offsets[n_bags] = number of indices; read the aligned 8 bytes holding it */
        uint32_t pos = job->offsets_off + 4u * job->n_bags;
        if ((job->offsets_off & 7u) != 0u
            || (uint64_t)job->offsets_off + 4u * ((uint64_t)job->n_bags + 1u) > request.total_bytes) {
            *error_job = j;
            return EMB_ERR_JOB;
        }
        mram_read(req + (pos & ~7u), last, 8u);
        job_nnz[j] = last[(pos & 7u) >> 2];
        if (!job_is_valid(job, job_nnz[j], request.total_bytes, cfg->output_cap)) {
            *error_job = j;
            return EMB_ERR_JOB;
        }
        while ((1u << shift) < job->row_bytes) {
            shift++;
        }
        job_row_shift[j] = (1u << shift) == job->row_bytes ? (uint8_t)shift : EMB_NOT_POW2;
        bags += job->n_bags;
    }
    if (bags != request.total_bags) {
        return EMB_ERR_REQUEST;
    }
    return EMB_OK;
}

/* |a| as unsigned, defined for INT32_MIN. */
static inline uint32_t magnitude(int32_t a) { return a < 0 ? 0u - (uint32_t)a : (uint32_t)a; }

/* acc[k] (op)= row[k] for k < nc; returns true when an int32 sum or product overflowed. */
static bool accumulate(const emb_job_t *job, void *acc, const void *row, uint32_t nc, uint32_t weight, bool first)
{
    uint32_t k;
    bool overflow = false;

    if (job->mode == EMB_F32) {
        float *a = (float *)acc;
        const float *r = (const float *)row;
        if (job->op == EMB_OP_SUM) {
            for (k = 0u; k < nc; k++) {
                a[k] = a[k] + r[k];
            }
        } else if (job->op == EMB_OP_WSUM) {
            union { uint32_t bits; float value; } w = { weight };
            for (k = 0u; k < nc; k++) {
                a[k] = a[k] + w.value * r[k];
            }
        } else {
            for (k = 0u; k < nc; k++) {
                if (first || r[k] > a[k]) {
                    a[k] = r[k];
                }
            }
        }
        return false;
    }

    int32_t *a = (int32_t *)acc;
    const int32_t *r32 = (const int32_t *)row;
    const int8_t *r8 = (const int8_t *)row;
    bool wide = job->mode == EMB_I32;
    if (job->op == EMB_OP_SUM) {
        for (k = 0u; k < nc; k++) {
            int32_t v = wide ? r32[k] : r8[k];
            overflow |= __builtin_add_overflow(a[k], v, &a[k]);
        }
    } else if (job->op == EMB_OP_WSUM) {
        /* the product v * w fits int32 iff |v| <= INT32_MAX / |w|: one division per row, and
         * no 64-bit multiply on the DPU */
        int32_t w = (int32_t)weight;
        uint32_t limit = w == 0 ? UINT32_MAX : (uint32_t)INT32_MAX / magnitude(w);
        for (k = 0u; k < nc; k++) {
            int32_t v = wide ? r32[k] : r8[k];
            overflow |= magnitude(v) > limit;
            /* unsigned multiply: wraps instead of undefined behaviour; flagged above */
            overflow |= __builtin_add_overflow(a[k], (int32_t)((uint32_t)v * (uint32_t)w), &a[k]);
        }
    } else {
        for (k = 0u; k < nc; k++) {
            int32_t v = wide ? r32[k] : r8[k];
            if (first || v > a[k]) {
                a[k] = v;
            }
        }
    }
    return overflow;
}

/* Pool bag b (global number g) of job j and write its output row. */
static void pool_bag(uint32_t j, uint32_t b, uint32_t g, const bag_buffers_t *buf, emb_status_t *st)
{
    const emb_job_t *job = &jobs[j];
    __mram_ptr uint8_t *req = HEAP + EMB_CONFIG.request_off;
    __mram_ptr uint8_t *tile = HEAP + job->tile_off;
    __mram_ptr uint8_t *out_row = HEAP + EMB_CONFIG.output_off + job->out_off + b * EMB_OUT_ROW_BYTES(job->n_cols);
    const uint32_t *offs = stream_u32(req + job->offsets_off, b, 2u, buf->offsets);
    uint32_t start = offs[0], end = offs[1];
    uint32_t eb = elem_bytes(job->mode);
    uint32_t shift = job_row_shift[j];
    bool weighted = job->op == EMB_OP_WSUM;
    bool overflow = false;
    uint32_t c0;

    if (start > end || end > job_nnz[j]) {
        note_error(st, EMB_ERR_OFFSETS, g, start > end ? start : end);
        end = start; /* still write a defined (zero) row */
    }
    for (c0 = 0u; c0 < job->n_cols; c0 += EMB_COL_CHUNK) {
        uint32_t nc = job->n_cols - c0 < EMB_COL_CHUNK ? job->n_cols - c0 : EMB_COL_CHUNK;
        uint32_t row_read = round8(nc * eb);
        uint32_t *acc = (uint32_t *)buf->acc;
        bool first = true;
        uint32_t i, k;

        for (k = 0u; k < round8(nc * 4u) / 4u; k++) {
            acc[k] = 0u; /* 0.0f and int 0; also the padding value of an odd row */
        }
        for (i = start; i < end; i += EMB_IDX_CHUNK) {
            uint32_t n = end - i < EMB_IDX_CHUNK ? end - i : EMB_IDX_CHUNK;
            const uint32_t *idx = stream_u32(req + job->indices_off, i, n, buf->indices);
            const uint32_t *wts = weighted ? stream_u32(req + job->weights_off, i, n, buf->weights) : 0;
            for (k = 0u; k < n; k++) {
                uint32_t r = idx[k];
                if (r >= job->n_rows) {
                    note_error(st, EMB_ERR_INDEX, g, r);
                    continue;
                }
                uint32_t row_off = shift != EMB_NOT_POW2 ? r << shift : r * job->row_bytes;
                mram_read(tile + row_off + c0 * eb, buf->row, row_read);
                overflow |= accumulate(job, acc, buf->row, nc, weighted ? wts[k] : 0u, first);
                first = false;
            }
        }
        mram_write(acc, out_row + c0 * 4u, round8(nc * 4u));
    }
    if (overflow) {
        if (st->overflow_bags == 0u) {
            st->first_overflow_bag = g;
        }
        st->overflow_bags++;
    }
}

/* Tasklet 0: fold the tasklets' records into one status (smallest bag wins, deterministic). */
static void merge_status(uint32_t error, uint32_t error_job)
{
    emb_status_t *s = &result_status;
    uint32_t t;

    s->magic = EMB_STATUS_MAGIC;
    s->batch_id = request.batch_id;
    s->error = error;
    s->error_job = error_job;
    s->error_bag = EMB_NO_BAG;
    s->error_value = 0u;
    s->overflow_bags = 0u;
    s->first_overflow_bag = EMB_NO_BAG;
    for (t = 0u; t < NR_TASKLETS; t++) {
        const emb_status_t *ts = &tasklet_status[t];
        if (error == EMB_OK && ts->error != EMB_OK && ts->error_bag < s->error_bag) {
            s->error = ts->error;
            s->error_bag = ts->error_bag;
            s->error_value = ts->error_value;
        }
        s->overflow_bags += ts->overflow_bags;
        if (ts->overflow_bags != 0u && ts->first_overflow_bag < s->first_overflow_bag) {
            s->first_overflow_bag = ts->first_overflow_bag;
        }
    }
    mram_write(s, HEAP + EMB_CONFIG.output_off, sizeof(*s));
}

int main(void)
{
    uint32_t t = me();
    static uint32_t error_job;
    emb_status_t st = { 0u, 0u, EMB_OK, 0u, EMB_NO_BAG, 0u, 0u, EMB_NO_BAG };

    if (t == 0u) {
        mem_reset();
        error_job = 0u;
        setup_error = setup(&error_job);
    }
    barrier_wait(&emb_barrier);

    if (setup_error == EMB_OK) {
        bag_buffers_t buf;
        uint32_t g, j = 0u, job_first = 0u;
        buf.acc = mem_alloc(EMB_COL_CHUNK * 4u);
        buf.row = mem_alloc(EMB_COL_CHUNK * 4u);
        buf.indices = (uint32_t *)mem_alloc(EMB_STREAM_BYTES);
        buf.weights = (uint32_t *)mem_alloc(EMB_STREAM_BYTES);
        buf.offsets = (uint32_t *)mem_alloc(16u);
        for (g = t; g < request.total_bags; g += NR_TASKLETS) {
            while (g - job_first >= jobs[j].n_bags) { /* skips empty jobs too */
                job_first += jobs[j].n_bags;
                j++;
            }
            pool_bag(j, g - job_first, g, &buf, &st);
        }
    }
    tasklet_status[t] = st;
    barrier_wait(&emb_barrier);

    if (t == 0u && setup_error != EMB_ERR_CONFIG) {
        merge_status(setup_error, error_job);
    }
    return 0;
}
