/*
 * Embedding-bag DPU kernel: pools bags of rows of tiles resident in this DPU's MRAM.
 *
 * One source for the hardware (dpu-upmem-dpurte-clang) and the emulator (gcc with the
 * emulator's runtime headers). The request/output format is in emb_abi.h.
 *
 * Per launch: tasklet 0 validates EMB_CONFIG and the request header and copies the job table
 * to WRAM; after a barrier the tasklets share the bags in a strided pattern over *blocks* of
 * consecutive bags of one job (tasklet t takes blocks t, t + NR_TASKLETS, ...; a block is one
 * bag when the job has few bags per tasklet or rows wider than EMB_COL_CHUNK values, else up
 * to EMB_MAX_BLOCK bags whose pooled rows fit EMB_ACC_BYTES).  A block costs one DMA for its
 * offsets, one per EMB_IDX_CHUNK indices (and weights), one per row gathered — exactly the
 * bytes of the row's values, rounded up to 8 — and one for all its pooled rows, so short bags
 * (a bag split over many row shards) do not pay three DMAs of overhead each.  Offsets, indices
 * and weights are streamed from MRAM, so the batch size is bounded by MRAM, not WRAM.  Rows
 * wider than EMB_COL_CHUNK values are pooled in column chunks (no DMA above 2,048 bytes).
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
#include <perfcounter.h>

#include "emb_abi.h"

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* gcc (emulator): -ffp-contract=off on the command line */
#endif

/* WRAM per tasklet is EMB_ACC_BYTES + 4 * EMB_COL_CHUNK + 8 * EMB_IDX_CHUNK + ~100 bytes:
 * ~2.1 KB up to 16 tasklets (34 KB + 16 KB of stacks + ~5 KB of globals < 62 KB on v1B),
 * ~1.1 KB beyond (24 tasklets on v1A: 27 KB + 24 KB of stacks + globals < 64 KB). */
#if NR_TASKLETS > 16
#define EMB_TASKLET_WRAM_SMALL 1
#endif
/* Values pooled per pass over a bag (rows wider than this are pooled in column chunks). */
#ifndef EMB_COL_CHUNK
#ifdef EMB_TASKLET_WRAM_SMALL
#define EMB_COL_CHUNK 64u
#else
#define EMB_COL_CHUNK 128u
#endif
#endif
/* WRAM accumulators per tasklet: the pooled rows of one block. */
#ifndef EMB_ACC_BYTES
#ifdef EMB_TASKLET_WRAM_SMALL
#define EMB_ACC_BYTES 512u
#else
#define EMB_ACC_BYTES 1024u
#endif
#endif
/* Most bags per block. */
#define EMB_MAX_BLOCK 16u
/* Indices (and weights) streamed from MRAM per DMA. */
#ifdef EMB_TASKLET_WRAM_SMALL
#define EMB_IDX_CHUNK 32u
#else
#define EMB_IDX_CHUNK 64u
#endif
/* A streamed window may start 4 bytes before the first wanted element. */
#define EMB_STREAM_BYTES(n) ((n) * 4u + 8u)
#define EMB_DMA_MAX 2048u
#define EMB_NOT_POW2 0xFFu

#if EMB_COL_CHUNK % 8u != 0u || EMB_COL_CHUNK * 4u > EMB_ACC_BYTES || EMB_ACC_BYTES > EMB_DMA_MAX
#error "need EMB_COL_CHUNK % 8 == 0 and EMB_COL_CHUNK * 4 <= EMB_ACC_BYTES <= 2048"
#endif

#define HEAP ((__mram_ptr uint8_t *)DPU_MRAM_HEAP_POINTER)

__host emb_config_t EMB_CONFIG;

static emb_request_header_t request __dma_aligned;
static emb_job_t jobs[EMB_MAX_JOBS] __dma_aligned;
static uint32_t job_nnz[EMB_MAX_JOBS];
static uint32_t job_blocks[EMB_MAX_JOBS];     /* blocks of the job */
static uint8_t job_block_bags[EMB_MAX_JOBS];  /* bags per block (the last block may be shorter) */
static uint8_t job_row_shift[EMB_MAX_JOBS];   /* log2(row_bytes), or EMB_NOT_POW2 */
static uint32_t total_blocks;
static uint32_t setup_error;
static emb_status_t tasklet_status[NR_TASKLETS];
static emb_status_t result_status __dma_aligned;

BARRIER_INIT(emb_barrier, NR_TASKLETS);

/* Per-tasklet WRAM buffers. */
typedef struct bag_buffers {
    void *acc;          /* EMB_ACC_BYTES of accumulators (float or int32) */
    void *row;          /* one gathered row chunk (EMB_COL_CHUNK values) */
    uint32_t *indices;  /* streamed index window */
    uint32_t *weights;  /* streamed weight window (float32 or int32 bits) */
    uint32_t *offsets;  /* window holding offsets[b0 .. b0 + EMB_MAX_BLOCK] */
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

/* Bags per block of a job: as many pooled rows as fit EMB_ACC_BYTES (one bag when rows need
 * column chunks), but no more than the job's bags per tasklet, so that small jobs still spread
 * over all tasklets. */
static uint32_t block_bags(const emb_job_t *job)
{
    uint32_t fit, share;
    if (job->n_cols > EMB_COL_CHUNK) {
        return 1u;
    }
    fit = EMB_ACC_BYTES / EMB_OUT_ROW_BYTES(job->n_cols);
    share = job->n_bags / NR_TASKLETS;
    fit = fit < EMB_MAX_BLOCK ? fit : EMB_MAX_BLOCK;
    fit = fit < share ? fit : share;
    return fit > 0u ? fit : 1u;
}

/* Tasklet 0: check the configuration and the request, load the job table into WRAM. */
static uint32_t setup(uint32_t *error_job)
{
    const emb_config_t *cfg = &EMB_CONFIG;
    __mram_ptr uint8_t *req = HEAP + cfg->request_off;
    uint32_t job_bytes, done, j, bags = 0u;
    uint32_t last[2] __dma_aligned;

    total_blocks = 0u;

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
        job_block_bags[j] = (uint8_t)block_bags(job);
        job_blocks[j] = (job->n_bags + job_block_bags[j] - 1u) / job_block_bags[j];
        total_blocks += job_blocks[j];
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

static void note_overflow(emb_status_t *st, uint32_t bag)
{
    if (st->overflow_bags == 0u) {
        st->first_overflow_bag = bag;
    }
    st->overflow_bags++;
}

/* Pool bags b0 .. b0 + nb - 1 of job j (global number of bag b0: g0) and write their rows. */
static void pool_block(uint32_t j, uint32_t b0, uint32_t nb, uint32_t g0, const bag_buffers_t *buf,
                       emb_status_t *st)
{
    const emb_job_t *job = &jobs[j];
    __mram_ptr uint8_t *req = HEAP + EMB_CONFIG.request_off;
    __mram_ptr uint8_t *tile = HEAP + job->tile_off;
    uint32_t out_row = EMB_OUT_ROW_BYTES(job->n_cols);
    __mram_ptr uint8_t *out = HEAP + EMB_CONFIG.output_off + job->out_off + b0 * out_row;
    const uint32_t *offs = stream_u32(req + job->offsets_off, b0, nb + 1u, buf->offsets);
    uint32_t bag_end[EMB_MAX_BLOCK];
    uint32_t eb = elem_bytes(job->mode);
    uint32_t shift = job_row_shift[j];
    bool weighted = job->op == EMB_OP_WSUM;
    uint32_t overflow = 0u; /* bit k: bag b0 + k overflowed */
    uint32_t first = offs[0], last = offs[0], k, c0;

    /* bag k holds indices [bag_end[k-1], bag_end[k]); a bad bag is pooled as empty */
    for (k = 0u; k < nb; k++) {
        uint32_t start = k == 0u ? first : bag_end[k - 1u], end = offs[k + 1u];
        if (end < start || end > job_nnz[j]) {
            note_error(st, EMB_ERR_OFFSETS, g0 + k, end);
            end = start;
        }
        bag_end[k] = end;
        last = end;
    }
    for (c0 = 0u; c0 < job->n_cols; c0 += EMB_COL_CHUNK) {
        uint32_t nc = job->n_cols - c0 < EMB_COL_CHUNK ? job->n_cols - c0 : EMB_COL_CHUNK;
        uint32_t row_read = round8(nc * eb);
        uint32_t acc_stride = nb == 1u ? round8(nc * 4u) : out_row; /* nb > 1: one column chunk */
        uint32_t acc_words = nb * acc_stride / 4u;
        uint32_t *acc = (uint32_t *)buf->acc;
        uint32_t i, bag = 0u;

        for (k = 0u; k < acc_words; k++) {
            acc[k] = 0u; /* 0.0f and int 0; also the padding value of odd rows */
        }
        for (i = first; i < last; i += EMB_IDX_CHUNK) {
            uint32_t n = last - i < EMB_IDX_CHUNK ? last - i : EMB_IDX_CHUNK;
            const uint32_t *idx = stream_u32(req + job->indices_off, i, n, buf->indices);
            const uint32_t *wts = weighted ? stream_u32(req + job->weights_off, i, n, buf->weights) : 0;
            for (k = 0u; k < n; k++) {
                uint32_t pos = i + k, r = idx[k], row_off;
                while (pos >= bag_end[bag]) {
                    bag++;
                }
                if (r >= job->n_rows) {
                    note_error(st, EMB_ERR_INDEX, g0 + bag, r);
                    continue;
                }
                row_off = shift != EMB_NOT_POW2 ? r << shift : r * job->row_bytes;
                mram_read(tile + row_off + c0 * eb, buf->row, row_read);
                if (accumulate(job, (uint8_t *)acc + bag * acc_stride, buf->row, nc, weighted ? wts[k] : 0u,
                               pos == (bag == 0u ? first : bag_end[bag - 1u]))) {
                    overflow |= 1u << bag;
                }
            }
        }
        mram_write(acc, out + c0 * 4u, nb * acc_stride);
    }
    for (k = 0u; overflow != 0u; k++, overflow >>= 1) {
        if (overflow & 1u) {
            note_overflow(st, g0 + k);
        }
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
    s->cycles = perfcounter_get();
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
    emb_status_t st = { 0u, 0u, EMB_OK, 0u, EMB_NO_BAG, 0u, 0u, EMB_NO_BAG, 0u };

    if (t == 0u) {
        perfcounter_config(COUNT_CYCLES, true);
        mem_reset();
        error_job = 0u;
        setup_error = setup(&error_job);
    }
    barrier_wait(&emb_barrier);

    if (setup_error == EMB_OK) {
        bag_buffers_t buf;
        uint32_t g, j = 0u, job_first = 0u, job_bag0 = 0u;
        buf.acc = mem_alloc(EMB_ACC_BYTES);
        buf.row = mem_alloc(EMB_COL_CHUNK * 4u);
        buf.indices = (uint32_t *)mem_alloc(EMB_STREAM_BYTES(EMB_IDX_CHUNK));
        buf.weights = (uint32_t *)mem_alloc(EMB_STREAM_BYTES(EMB_IDX_CHUNK));
        buf.offsets = (uint32_t *)mem_alloc(EMB_STREAM_BYTES(EMB_MAX_BLOCK + 1u));
        for (g = t; g < total_blocks; g += NR_TASKLETS) {
            uint32_t b0, nb;
            while (g - job_first >= job_blocks[j]) { /* skips empty jobs too */
                job_first += job_blocks[j];
                job_bag0 += jobs[j].n_bags;
                j++;
            }
            b0 = (g - job_first) * job_block_bags[j];
            nb = jobs[j].n_bags - b0 < job_block_bags[j] ? jobs[j].n_bags - b0 : job_block_bags[j];
            pool_block(j, b0, nb, job_bag0 + b0, &buf, &st);
        }
    }
    tasklet_status[t] = st;
    barrier_wait(&emb_barrier);

    if (t == 0u && setup_error != EMB_ERR_CONFIG) {
        merge_status(setup_error, error_job);
    }
    return 0;
}
