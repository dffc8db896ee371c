/* A host program written the way PrIM's VA/app.c is: NR_DPUS / NR_TASKLETS from -D, inputs
 * split over DPUs, arguments pushed to a __host struct, inputs pushed to the MRAM heap, one
 * synchronous launch, per-DPU logs, results pulled back and checked on the host. */
#include <assert.h>
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common.h"

#ifndef NR_DPUS
#define NR_DPUS 8
#endif
#ifndef DPU_BINARY
#define DPU_BINARY "./bin/vecadd"
#endif

#define divceil(n, m) (((n) - 1) / (m) + 1)
#define roundup(n, m) ((n / m) * m + m)

static uint32_t *A, *B, *C, *C2;

static void read_input(uint32_t *a, uint32_t *b, unsigned int nr_elements)
{
    srand(0);
    for (unsigned int i = 0; i < nr_elements; i++) {
        a[i] = (uint32_t)(rand() % (nr_elements * NR_TASKLETS));
        b[i] = (uint32_t)(rand() % (nr_elements * NR_TASKLETS));
    }
}

int main(int argc, char **argv)
{
    const char *binary = argc > 1 ? argv[1] : DPU_BINARY;
    const unsigned int input_size = argc > 2 ? (unsigned int)atoi(argv[2]) : 100003;
    struct dpu_set_t dpu_set, dpu;
    uint32_t nr_of_dpus;

    DPU_ASSERT(dpu_alloc(NR_DPUS, NULL, &dpu_set));
    DPU_ASSERT(dpu_load(dpu_set, binary, NULL));
    DPU_ASSERT(dpu_get_nr_dpus(dpu_set, &nr_of_dpus));
    printf("Allocated %d DPU(s)\n", nr_of_dpus);

    const unsigned int input_size_8bytes = ((input_size * sizeof(uint32_t)) % 8) != 0 ? roundup(input_size, 8) : input_size;
    const unsigned int input_size_dpu = divceil(input_size, nr_of_dpus);
    const unsigned int input_size_dpu_8bytes = ((input_size_dpu * sizeof(uint32_t)) % 8) != 0 ? roundup(input_size_dpu, 8) : input_size_dpu;

    A = malloc(input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    B = malloc(input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    C = malloc(input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    C2 = malloc(input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    memset(A, 0, input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    memset(B, 0, input_size_dpu_8bytes * nr_of_dpus * sizeof(uint32_t));
    read_input(A, B, input_size);
    (void)input_size_8bytes;

    for (unsigned int i = 0; i < input_size; i++)
        C[i] = A[i] + B[i];

    unsigned int kernel = 0;
    dpu_arguments_t input_arguments[NR_DPUS];
    for (unsigned int i = 0; i < nr_of_dpus - 1; i++) {
        input_arguments[i].size = input_size_dpu_8bytes * sizeof(uint32_t);
        input_arguments[i].transfer_size = input_size_dpu_8bytes * sizeof(uint32_t);
    }
    input_arguments[nr_of_dpus - 1].size = (input_size_8bytes - input_size_dpu_8bytes * (NR_DPUS - 1)) * sizeof(uint32_t);
    input_arguments[nr_of_dpus - 1].transfer_size = input_size_dpu_8bytes * sizeof(uint32_t);
    (void)kernel;

    unsigned int i = 0;
    DPU_FOREACH(dpu_set, dpu, i) { DPU_ASSERT(dpu_prepare_xfer(dpu, &input_arguments[i])); }
    DPU_ASSERT(dpu_push_xfer(dpu_set, DPU_XFER_TO_DPU, "DPU_INPUT_ARGUMENTS", 0, sizeof(input_arguments[0]), DPU_XFER_DEFAULT));

    DPU_FOREACH(dpu_set, dpu, i) { DPU_ASSERT(dpu_prepare_xfer(dpu, A + input_size_dpu_8bytes * i)); }
    DPU_ASSERT(dpu_push_xfer(dpu_set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, 0, input_size_dpu_8bytes * sizeof(uint32_t), DPU_XFER_DEFAULT));
    DPU_FOREACH(dpu_set, dpu, i) { DPU_ASSERT(dpu_prepare_xfer(dpu, B + input_size_dpu_8bytes * i)); }
    DPU_ASSERT(dpu_push_xfer(dpu_set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, input_size_dpu_8bytes * sizeof(uint32_t),
                             input_size_dpu_8bytes * sizeof(uint32_t), DPU_XFER_DEFAULT));

    DPU_ASSERT(dpu_launch(dpu_set, DPU_SYNCHRONOUS));

    unsigned int each_dpu = 0;
    DPU_FOREACH(dpu_set, dpu) {
        if (each_dpu == 0)
            DPU_ASSERT(dpu_log_read(dpu, stdout));
        each_dpu++;
    }

    dpu_results_t results[NR_DPUS][NR_TASKLETS];
    DPU_FOREACH(dpu_set, dpu, i) { DPU_ASSERT(dpu_prepare_xfer(dpu, &results[i])); }
    DPU_ASSERT(dpu_push_xfer(dpu_set, DPU_XFER_FROM_DPU, "DPU_RESULTS", 0, sizeof(results[0]), DPU_XFER_DEFAULT));

    DPU_FOREACH(dpu_set, dpu, i) { DPU_ASSERT(dpu_prepare_xfer(dpu, C2 + input_size_dpu_8bytes * i)); }
    DPU_ASSERT(dpu_push_xfer(dpu_set, DPU_XFER_FROM_DPU, DPU_MRAM_HEAP_POINTER_NAME, input_size_dpu_8bytes * sizeof(uint32_t),
                             input_size_dpu_8bytes * sizeof(uint32_t), DPU_XFER_DEFAULT));

    int status = 1;
    for (i = 0; i < input_size; i++) {
        if (C[i] != C2[i]) {
            status = 0;
            printf("mismatch at %u: %u != %u\n", i, C[i], C2[i]);
            break;
        }
    }
    uint64_t dpu_sum = 0, host_sum = 0;
    for (unsigned int d = 0; d < nr_of_dpus; d++)
        for (unsigned int t = 0; t < NR_TASKLETS; t++)
            dpu_sum += results[d][t].sum;
    for (i = 0; i < input_size; i++)
        host_sum += C[i];
    if (dpu_sum != host_sum) {
        status = 0;
        printf("sum mismatch: %llu != %llu\n", (unsigned long long)dpu_sum, (unsigned long long)host_sum);
    }
    printf(status ? "[OK] Outputs are equal\n" : "[ERROR] Outputs differ!\n");
    free(A);
    free(B);
    free(C);
    free(C2);
    DPU_ASSERT(dpu_free(dpu_set));
    return status ? 0 : 1;
}
