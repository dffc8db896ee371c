/* Sum of int32 values spread unevenly over NR_DPUS DPUs; each DPU reduces its share with all
 * tasklets and a mutex, the host adds the per-DPU sums.
 * Usage: host <dpu binary>.  Prints the total and OK when every DPU's sum is right. */
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef NR_DPUS
#define NR_DPUS 16
#endif

/* Values in [-500, 500]; the test recomputes them in Python. */
static int32_t value(uint32_t i) { return (int32_t)(((i * 2654435761u) >> 16) % 1001u) - 500; }

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <dpu binary>\n", argv[0]);
        return 2;
    }
    struct dpu_set_t set, dpu;
    uint32_t nr_dpus, each_dpu;
    DPU_ASSERT(dpu_alloc(NR_DPUS, NULL, &set));
    DPU_ASSERT(dpu_load(set, argv[1], NULL));
    DPU_ASSERT(dpu_get_nr_dpus(set, &nr_dpus));

    /* DPU d holds 2 * (100 + 37 d) values; the push moves the largest share to every DPU. */
    uint32_t *counts = calloc(nr_dpus, sizeof(uint32_t));
    uint32_t max_count = 0, total_count = 0;
    for (uint32_t d = 0; d < nr_dpus; d++) {
        counts[d] = 2 * (100 + 37 * d);
        max_count = counts[d] > max_count ? counts[d] : max_count;
    }
    int32_t *values = calloc((size_t)nr_dpus * max_count, sizeof(int32_t));
    int64_t *expected = calloc(nr_dpus, sizeof(int64_t));
    int64_t *sums = calloc(nr_dpus, sizeof(int64_t));
    for (uint32_t d = 0; d < nr_dpus; d++) {
        for (uint32_t i = 0; i < counts[d]; i++) {
            int32_t v = value(total_count++);
            values[(size_t)d * max_count + i] = v;
            expected[d] += v;
        }
    }

    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, &counts[each_dpu]));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, "nr_elements", 0, sizeof(uint32_t),
                             DPU_XFER_DEFAULT));
    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, values + (size_t)each_dpu * max_count));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, 0,
                             max_count * sizeof(int32_t), DPU_XFER_DEFAULT));

    DPU_ASSERT(dpu_launch(set, DPU_SYNCHRONOUS));

    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, &sums[each_dpu]));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "dpu_sum", 0, sizeof(int64_t),
                             DPU_XFER_DEFAULT));

    int64_t total = 0;
    uint32_t wrong = 0;
    for (uint32_t d = 0; d < nr_dpus; d++) {
        total += sums[d];
        if (sums[d] != expected[d]) {
            printf("DPU %u: sum %lld, expected %lld\n", d, (long long)sums[d],
                   (long long)expected[d]);
            wrong++;
        }
    }
    printf("reduction: %u values on %u DPUs x %d tasklets, total %lld: %s\n", total_count,
           nr_dpus, NR_TASKLETS, (long long)total, wrong ? "ERROR" : "OK");

    DPU_ASSERT(dpu_free(set));
    free(counts);
    free(values);
    free(expected);
    free(sums);
    return wrong ? 1 : 0;
}
