/* Batched embedding-bag pooling on the CPU: the contract between the C kernel and Cython.
 *
 * One ebag_table describes one table's share of a batch. ebag_pool() pools bags
 * [bag_begin, bag_end) of it; callers split a batch into (table, bag range) work items and may
 * run them on different threads (the items write disjoint output rows).
 */
#ifndef UPDLRM_EMBEDDING_BAG_H
#define UPDLRM_EMBEDDING_BAG_H

#include <stdint.h>

/* Same numbering as updlrm.embedding_bag.MODES. */
enum ebag_mode { EBAG_SUM = 0, EBAG_MEAN = 1, EBAG_MAX = 2 };

typedef struct {
    const void *weight;              /* [rows, dim] float32, or float16 when weight_is_f16 */
    const void *indices;             /* [nnz] int32, or int64 when index_is_i64 */
    const void *offsets;             /* [B + 1], same type as indices; validated by the caller */
    const float *per_sample_weights; /* [nnz] or NULL */
    float *out;                      /* [B, dim] row-major */
    int64_t dim;
    int32_t weight_is_f16;
    int32_t index_is_i64;
    int32_t mode;                    /* enum ebag_mode */
} ebag_table;

/* Pool bags [bag_begin, bag_end) of one table into t->out. Empty bags give 0 in every mode.
 * Weighted bags pool w * row (sum, mean = sum / count, max). Thread-safe for disjoint ranges. */
void ebag_pool(const ebag_table *t, int64_t bag_begin, int64_t bag_end);

/* Code paths, from the portable C loops up; ebag_isa() is the best one the CPU supports. */
enum ebag_isa { EBAG_ISA_PORTABLE = 0, EBAG_ISA_AVX2 = 1, EBAG_ISA_AVX512 = 2 };
int ebag_isa(void);

/* Use the best path up to max_isa that the CPU supports (tests run every path); returns the
 * path now in use. Not thread-safe against running ebag_pool calls. */
int ebag_select_isa(int max_isa);

/* How many lookups ahead rows are prefetched (default 32); values < 1 mean 0, no prefetch. */
void ebag_set_prefetch_distance(int rows);
int ebag_prefetch_distance(void);

/* Work items averaging at most this many lookups per bag (default 1.5) and writing at least
 * 64 KiB store their output rows non-temporally (AVX2/AVX-512 paths, rows of whole vectors on
 * aligned addresses); 0 = never. */
void ebag_set_stream_max_pooling(double lookups_per_bag);
double ebag_stream_max_pooling(void);

/* Validation scans (vectorised; only the block holding a hit is rescanned).
 * First position whose index lies outside [0, rows), or -1. */
int64_t ebag_first_out_of_range_i32(const int32_t *indices, int64_t n, int64_t rows);
int64_t ebag_first_out_of_range_i64(const int64_t *indices, int64_t n, int64_t rows);
/* First position p with offsets[p] > offsets[p + 1], or -1. */
int64_t ebag_first_decrease_i32(const int32_t *offsets, int64_t n);
int64_t ebag_first_decrease_i64(const int64_t *offsets, int64_t n);

#endif
