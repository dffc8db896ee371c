/* CPU embedding-bag kernel (see embedding_bag.h).
 *
 * Random row gathers on the target machines are bound by memory latency, so the loop keeps
 * misses in flight by prefetching the rows of upcoming indices, and the per-row arithmetic is
 * vectorised. Every (weight, index) type pair is compiled twice: from pool_bags_avx2.inc with
 * AVX2+FMA+F16C intrinsics (accumulators in registers) and from pool_bags.inc as plain C loops
 * that gcc vectorises for the baseline ISA. The path is chosen at run time, so the build needs
 * no -march flag.
 */
#include "embedding_bag.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define EBAG_X86 1
#include <immintrin.h>
#else
#define EBAG_X86 0
#endif

#define INLINE static inline __attribute__((always_inline))

/* On the dev VM (2-4 GB of tables, 256 B rows) 32-64 lookups ahead was the best range; 16 lost
 * 20-40%, and 32 beat 48 for one-lookup bags (benchmarks/bench_kernel.py --prefetch). */
static int prefetch_distance = 32;

void ebag_set_prefetch_distance(int rows) { prefetch_distance = rows > 0 ? rows : 0; }
int ebag_prefetch_distance(void) { return prefetch_distance; }

INLINE void prefetch_row(const void *row, int64_t bytes)
{
    /* Cover every cache line the row touches, also when it does not start on a line. */
    const char *line = (const char *)((uintptr_t)row & ~(uintptr_t)63);
    const char *end = (const char *)row + bytes;
    for (; line < end; line += 64)
        __builtin_prefetch(line, 0, 3);
}

enum row_op { OP_SET, OP_ADD, OP_MAX };

/* acc = w*src, acc += w*src or acc = max(acc, w*src) over n floats. */
INLINE void row_apply_f32(enum row_op op, float *restrict acc, const float *restrict src,
                          float w, int64_t n)
{
    switch (op) {
    case OP_SET:
        for (int64_t j = 0; j < n; ++j) acc[j] = w * src[j];
        break;
    case OP_ADD:
        for (int64_t j = 0; j < n; ++j) acc[j] += w * src[j];
        break;
    case OP_MAX:
        for (int64_t j = 0; j < n; ++j) {
            const float v = w * src[j];
            acc[j] = acc[j] > v ? acc[j] : v;
        }
        break;
    }
}

/* Half rows are converted in chunks into a small buffer (stays in L1), then pooled as floats. */
#define HALF_CHUNK 64

static inline float half_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0x1fu) {
        bits = sign | 0x7f800000u | (mant << 13); /* inf / nan */
    } else if (exp != 0) {
        bits = sign | ((exp + 112u) << 23) | (mant << 13);
    } else {
        const float f = (float)mant * 5.9604644775390625e-8f; /* subnormal: mant * 2^-24 */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

INLINE void row_apply_f16_portable(enum row_op op, float *restrict acc,
                                   const uint16_t *restrict src, float w, int64_t n)
{
    float buf[HALF_CHUNK];
    for (int64_t c = 0; c < n; c += HALF_CHUNK) {
        const int64_t len = n - c < HALF_CHUNK ? n - c : HALF_CHUNK;
        for (int64_t j = 0; j < len; ++j) buf[j] = half_to_float(src[c + j]);
        row_apply_f32(op, acc + c, buf, w, len);
    }
}

#define WEIGHT_T float
#define ROW_APPLY row_apply_f32
#define TARGET
#define INDEX_T int32_t
#define FN pool_f32_i32_portable
#include "pool_bags.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f32_i64_portable
#include "pool_bags.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef ROW_APPLY

#define WEIGHT_T uint16_t
#define ROW_APPLY row_apply_f16_portable
#define INDEX_T int32_t
#define FN pool_f16_i32_portable
#include "pool_bags.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f16_i64_portable
#include "pool_bags.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef ROW_APPLY
#undef TARGET

typedef void (*pool_fn)(const ebag_table *, int64_t, int64_t);

/* Indexed by weight_is_f16 * 2 + index_is_i64. */
static const pool_fn portable_fns[4] = {
    pool_f32_i32_portable, pool_f32_i64_portable, pool_f16_i32_portable, pool_f16_i64_portable,
};

#if EBAG_X86
#define AVX2_TARGET __attribute__((target("avx2,fma,f16c")))
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

AVX2_TARGET INLINE __m256 load_tail_f16(const uint16_t *p, int64_t n)
{
    uint16_t buf[8] = {0};
    memcpy(buf, p, (size_t)n * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)buf));
}

#define WEIGHT_T float
#define LOAD8(p) _mm256_loadu_ps(p)
#define LOAD_TAIL(p, n, mask) _mm256_maskload_ps((p), (mask))
#define INDEX_T int32_t
#define FN pool_f32_i32_avx2
#include "pool_bags_avx2.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f32_i64_avx2
#include "pool_bags_avx2.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOAD8
#undef LOAD_TAIL

#define WEIGHT_T uint16_t
#define LOAD8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LOAD_TAIL(p, n, mask) load_tail_f16((p), (n))
#define INDEX_T int32_t
#define FN pool_f16_i32_avx2
#include "pool_bags_avx2.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f16_i64_avx2
#include "pool_bags_avx2.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOAD8
#undef LOAD_TAIL

static const pool_fn avx2_fns[4] = {
    pool_f32_i32_avx2, pool_f32_i64_avx2, pool_f16_i32_avx2, pool_f16_i64_avx2,
};

static int detect_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
        && __builtin_cpu_supports("f16c");
}
#else
static const pool_fn *const avx2_fns = portable_fns;
static int detect_avx2(void) { return 0; }
#endif

/* Decided once at load time, before any thread can call ebag_pool. */
static int use_avx2;
__attribute__((constructor)) static void ebag_init(void) { use_avx2 = detect_avx2(); }

int ebag_uses_avx2(void) { return use_avx2; }

int ebag_select_avx2(int want)
{
    use_avx2 = want && detect_avx2();
    return use_avx2;
}

void ebag_pool(const ebag_table *t, int64_t bag_begin, int64_t bag_end)
{
    const int k = (t->weight_is_f16 ? 2 : 0) + (t->index_is_i64 ? 1 : 0);
    (use_avx2 ? avx2_fns : portable_fns)[k](t, bag_begin, bag_end);
}

/* ---- validation scans ---------------------------------------------------------------------- */

#define SCAN_BLOCK 1024
#if EBAG_X86
#define SCAN_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SCAN_CLONES
#endif

/* A negative index wraps to a large unsigned value, so one unsigned compare checks both ends.
 * The branch-free OR over a block is what lets gcc vectorise the scan. */
#define DEFINE_FIRST_OUT_OF_RANGE(NAME, INT_T, UINT_T, MAX_LIMIT)                          \
    SCAN_CLONES int64_t NAME(const INT_T *indices, int64_t n, int64_t rows)                   \
    {                                                                                        \
        const UINT_T limit = (uint64_t)rows > (uint64_t)(MAX_LIMIT) ? (UINT_T)(MAX_LIMIT)     \
                                                                    : (UINT_T)rows;          \
        for (int64_t start = 0; start < n; start += SCAN_BLOCK) {                            \
            const int64_t stop = n - start < SCAN_BLOCK ? n : start + SCAN_BLOCK;            \
            int bad = 0;                                                                     \
            for (int64_t j = start; j < stop; ++j) bad |= (UINT_T)indices[j] >= limit;       \
            if (bad)                                                                         \
                for (int64_t j = start; j < stop; ++j)                                       \
                    if ((UINT_T)indices[j] >= limit) return j;                               \
        }                                                                                    \
        return -1;                                                                           \
    }

/* int32 indices can never reach rows >= 2^31; only their sign matters then. */
DEFINE_FIRST_OUT_OF_RANGE(ebag_first_out_of_range_i32, int32_t, uint32_t, UINT64_C(0x80000000))
DEFINE_FIRST_OUT_OF_RANGE(ebag_first_out_of_range_i64, int64_t, uint64_t, UINT64_C(0x8000000000000000))

#define DEFINE_FIRST_DECREASE(NAME, INT_T)                                                   \
    SCAN_CLONES int64_t NAME(const INT_T *offsets, int64_t n)                                 \
    {                                                                                        \
        for (int64_t start = 0; start + 1 < n; start += SCAN_BLOCK) {                        \
            const int64_t stop = n - 1 - start < SCAN_BLOCK ? n - 1 : start + SCAN_BLOCK;    \
            int bad = 0;                                                                     \
            for (int64_t j = start; j < stop; ++j) bad |= offsets[j] > offsets[j + 1];       \
            if (bad)                                                                         \
                for (int64_t j = start; j < stop; ++j)                                       \
                    if (offsets[j] > offsets[j + 1]) return j;                               \
        }                                                                                    \
        return -1;                                                                           \
    }

DEFINE_FIRST_DECREASE(ebag_first_decrease_i32, int32_t)
DEFINE_FIRST_DECREASE(ebag_first_decrease_i64, int64_t)
