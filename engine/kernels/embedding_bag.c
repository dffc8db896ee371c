/* CPU embedding-bag kernel (see embedding_bag.h).
 *
 * Random row gathers on the target machines are bound by memory latency, so the loop keeps
 * misses in flight by prefetching the rows of upcoming indices, and the per-row arithmetic is
 * vectorised. Every (weight, index) type pair is compiled three times: from pool_bags_simd.inc
 * with AVX-512 and with AVX2 intrinsics (accumulators in registers), and from pool_bags.inc as
 * plain C loops that gcc vectorises for the baseline ISA. The path is chosen at run time from
 * what the CPU supports, so the build needs no -march flag.
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

/* Work items averaging at most this many lookups per bag, and writing at least
 * STREAM_MIN_ITEM_BYTES of output, write their output rows with non-temporal stores (0: never).
 * Measured on the dev VM (8 x 2 M x 64 fp32, one lookup per bag, against the same kernel
 * without them): one thread 1.33x faster per call at B = 1024 and 1.5x at B = 4096 (quiet);
 * two threads in bench_kernel.py's throughput run 1.3-1.45x with another process busy, only
 * ~1.02x on a quiet machine. Smaller outputs stay in cache for the consumer (the interaction
 * reads them next), so they are stored normally. */
#define STREAM_MIN_ITEM_BYTES 65536
static double stream_max_pooling = 1.5;

void ebag_set_stream_max_pooling(double lookups_per_bag) { stream_max_pooling = lookups_per_bag; }
double ebag_stream_max_pooling(void) { return stream_max_pooling; }

/* Whether bags [bag_begin, bag_end) store their rows non-temporally: short bags (the stores are
 * then a large share of the traffic and each would first read the line) whose rows are whole
 * vectors on vector-aligned addresses. */
static inline int stream_outputs(const ebag_table *t, int64_t bag_begin, int64_t bag_end, int vlen)
{
    if (stream_max_pooling <= 0.0 || t->dim % vlen || (uintptr_t)t->out % (vlen * sizeof(float))
        || (bag_end - bag_begin) * t->dim * (int64_t)sizeof(float) < STREAM_MIN_ITEM_BYTES)
        return 0;
    const int64_t lookups = t->index_is_i64
        ? ((const int64_t *)t->offsets)[bag_end] - ((const int64_t *)t->offsets)[bag_begin]
        : ((const int32_t *)t->offsets)[bag_end] - ((const int32_t *)t->offsets)[bag_begin];
    return (double)lookups <= stream_max_pooling * (double)(bag_end - bag_begin);
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

typedef void (*pool_fn)(const ebag_table *, int64_t, int64_t);

#if EBAG_X86
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)

/* pool_bags_simd.inc is included for each ISA x weight type x index type below, with the
 * vector macros of the ISA and LOADV / LOADV_TAIL of the weight type defined around it. */

/* ---- AVX2 + FMA + F16C: 8 floats per vector ---- */
#define SIMD_TARGET __attribute__((target("avx2,fma,f16c")))
#define VEC __m256
#define MASK_T __m256i
#define VLEN 8
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VMAX(a, b) _mm256_max_ps((a), (b))
#define VFMADD(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VSTORE_TAIL(p, mask, v) _mm256_maskstore_ps((p), (mask), (v))
#define VSTREAM(p, v) _mm256_stream_ps((p), (v))
#define TAIL_MASK(n) \
    _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))

SIMD_TARGET INLINE __m256 load_tail_f16_avx2(const uint16_t *p, int64_t n)
{
    uint16_t buf[8] = {0};
    memcpy(buf, p, (size_t)n * sizeof(uint16_t));
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)buf));
}

#define WEIGHT_T float
#define LOADV(p) _mm256_loadu_ps(p)
#define LOADV_TAIL(p, n, mask) _mm256_maskload_ps((p), (mask))
#define INDEX_T int32_t
#define FN pool_f32_i32_avx2
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f32_i64_avx2
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOADV
#undef LOADV_TAIL

#define WEIGHT_T uint16_t
#define LOADV(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define LOADV_TAIL(p, n, mask) load_tail_f16_avx2((p), (n))
#define INDEX_T int32_t
#define FN pool_f16_i32_avx2
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f16_i64_avx2
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOADV
#undef LOADV_TAIL

#undef SIMD_TARGET
#undef VEC
#undef MASK_T
#undef VLEN
#undef VZERO
#undef VSET1
#undef VMUL
#undef VMAX
#undef VFMADD
#undef VSTORE
#undef VSTORE_TAIL
#undef VSTREAM
#undef TAIL_MASK

/* ---- AVX-512 (F, BW, VL) + FMA + F16C: 16 floats per vector, masked tails ----
 * Half the loads, FMAs and stores per row of AVX2; for one-lookup bags the output stores are
 * what limits the loop. */
#define SIMD_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,fma,f16c")))
#define VEC __m512
#define MASK_T __mmask16
#define VLEN 16
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VMAX(a, b) _mm512_max_ps((a), (b))
#define VFMADD(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VSTORE_TAIL(p, mask, v) _mm512_mask_storeu_ps((p), (mask), (v))
#define VSTREAM(p, v) _mm512_stream_ps((p), (v))
#define TAIL_MASK(n) ((__mmask16)((1u << (n)) - 1u))

#define WEIGHT_T float
#define LOADV(p) _mm512_loadu_ps(p)
#define LOADV_TAIL(p, n, mask) _mm512_maskz_loadu_ps((mask), (p))
#define INDEX_T int32_t
#define FN pool_f32_i32_avx512
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f32_i64_avx512
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOADV
#undef LOADV_TAIL

#define WEIGHT_T uint16_t
#define LOADV(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define LOADV_TAIL(p, n, mask) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16((mask), (p)))
#define INDEX_T int32_t
#define FN pool_f16_i32_avx512
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#define INDEX_T int64_t
#define FN pool_f16_i64_avx512
#include "pool_bags_simd.inc"
#undef INDEX_T
#undef FN
#undef WEIGHT_T
#undef LOADV
#undef LOADV_TAIL

/* [isa][weight_is_f16 * 2 + index_is_i64] */
static const pool_fn simd_fns[EBAG_ISA_AVX512 + 1][4] = {
    {pool_f32_i32_portable, pool_f32_i64_portable, pool_f16_i32_portable, pool_f16_i64_portable},
    {pool_f32_i32_avx2, pool_f32_i64_avx2, pool_f16_i32_avx2, pool_f16_i64_avx2},
    {pool_f32_i32_avx512, pool_f32_i64_avx512, pool_f16_i32_avx512, pool_f16_i64_avx512},
};

static int detect_isa(void)
{
    __builtin_cpu_init();
    const int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
        && __builtin_cpu_supports("f16c");
    const int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl");
    return avx512 ? EBAG_ISA_AVX512 : avx2 ? EBAG_ISA_AVX2 : EBAG_ISA_PORTABLE;
}
#else
static const pool_fn simd_fns[1][4] = {
    {pool_f32_i32_portable, pool_f32_i64_portable, pool_f16_i32_portable, pool_f16_i64_portable},
};
static int detect_isa(void) { return EBAG_ISA_PORTABLE; }
#endif

/* Decided once at load time, before any thread can call ebag_pool. */
static int isa;
__attribute__((constructor)) static void ebag_init(void) { isa = detect_isa(); }

int ebag_isa(void) { return isa; }

int ebag_select_isa(int max_isa)
{
    const int best = detect_isa();
    isa = max_isa < best ? (max_isa < 0 ? 0 : max_isa) : best;
    return isa;
}

void ebag_pool(const ebag_table *t, int64_t bag_begin, int64_t bag_end)
{
    const int k = (t->weight_is_f16 ? 2 : 0) + (t->index_is_i64 ? 1 : 0);
    simd_fns[isa][k](t, bag_begin, bag_end);
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
