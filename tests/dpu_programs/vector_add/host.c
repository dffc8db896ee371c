/* Vector add on NR_DPUS DPUs, written like UPMEM's PrIM host programs.
 * Usage: host <dpu binary>.  Prints the checksum of C and OK when C == A + B. */
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common.h"

#ifndef NR_DPUS
#define NR_DPUS 8
#endif
#define NR_ELEMENTS 10002u /* not a multiple of the DPU count: the last DPU gets less */

static uint32_t divceil(uint32_t n, uint32_t d) { return (n + d - 1) / d; }

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

    /* Elements per DPU, even so that every DPU's byte size is a multiple of 8. */
    uint32_t per_dpu = divceil(divceil(NR_ELEMENTS, nr_dpus), 2) * 2;
    uint32_t padded = per_dpu * nr_dpus;
    int32_t *a = calloc(padded, sizeof(int32_t));
    int32_t *b = calloc(padded, sizeof(int32_t));
    int32_t *c = calloc(padded, sizeof(int32_t));
    dpu_arguments_t *args = calloc(nr_dpus, sizeof(dpu_arguments_t));
    for (uint32_t i = 0; i < NR_ELEMENTS; i++) {
        a[i] = (int32_t)i;
        b[i] = 3 * (int32_t)i + 1;
    }
    for (uint32_t d = 0; d < nr_dpus; d++) {
        uint32_t first = d * per_dpu;
        uint32_t count = first >= NR_ELEMENTS ? 0
                         : (NR_ELEMENTS - first < per_dpu ? NR_ELEMENTS - first : per_dpu);
        args[d].size_bytes = count * sizeof(int32_t);
        args[d].stride_bytes = per_dpu * sizeof(int32_t);
    }

    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, &args[each_dpu]));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, "DPU_INPUT_ARGUMENTS", 0, sizeof(args[0]),
                             DPU_XFER_DEFAULT));
    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, a + each_dpu * per_dpu));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, 0,
                             per_dpu * sizeof(int32_t), DPU_XFER_DEFAULT));
    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, b + each_dpu * per_dpu));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME,
                             per_dpu * sizeof(int32_t), per_dpu * sizeof(int32_t),
                             DPU_XFER_DEFAULT));

    DPU_ASSERT(dpu_launch(set, DPU_SYNCHRONOUS));

    DPU_FOREACH(set, dpu, each_dpu) {
        DPU_ASSERT(dpu_prepare_xfer(dpu, c + each_dpu * per_dpu));
    }
    DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_FROM_DPU, DPU_MRAM_HEAP_POINTER_NAME,
                             2 * per_dpu * sizeof(int32_t), per_dpu * sizeof(int32_t),
                             DPU_XFER_DEFAULT));

    int64_t checksum = 0;
    uint32_t wrong = 0;
    for (uint32_t i = 0; i < NR_ELEMENTS; i++) {
        checksum += c[i];
        wrong += c[i] != a[i] + b[i];
    }
    printf("vector_add: %u elements on %u DPUs x %d tasklets, checksum %lld: %s\n", NR_ELEMENTS,
           nr_dpus, NR_TASKLETS, (long long)checksum, wrong ? "ERROR" : "OK");

    DPU_ASSERT(dpu_free(set));
    free(a);
    free(b);
    free(c);
    free(args);
    return wrong ? 1 : 0;
}
