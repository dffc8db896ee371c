/* Emulator speed probe (host): row lookups per second for NR_DPUS DPUs x NR_TASKLETS tasklets
 * on a 64-dim fp32 table; prints the median of several launches and checks one DPU's result.
 * usage: gather_host KERNEL [nr_dpus] [lookups_per_tasklet] [launches] */
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DIM 64
#define NR_ROWS 20000

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL [nr_dpus] [lookups_per_tasklet] [launches]\n", argv[0]);
        return 2;
    }
    uint32_t nr_dpus = argc > 2 ? (uint32_t)atoi(argv[2]) : 64;
    uint32_t lookups = argc > 3 ? (uint32_t)atoi(argv[3]) : 4096;
    int launches = argc > 4 ? atoi(argv[4]) : 5;
    struct dpu_set_t set, dpu;
    DPU_ASSERT(dpu_alloc(nr_dpus, NULL, &set));
    DPU_ASSERT(dpu_load(set, argv[1], NULL));

    size_t table_bytes = (size_t)NR_ROWS * DIM * sizeof(float);
    size_t index_bytes = (size_t)NR_TASKLETS * lookups * sizeof(uint32_t);
    float *table = malloc(table_bytes);
    uint32_t *indices = malloc(index_bytes);
    srand(1);
    for (size_t i = 0; i < (size_t)NR_ROWS * DIM; i++)
        table[i] = (float)(rand() % 1000) / 8.0f;
    for (size_t i = 0; i < (size_t)NR_TASKLETS * lookups; i++)
        indices[i] = (uint32_t)rand() % NR_ROWS;
    uint32_t rows = NR_ROWS;
    DPU_ASSERT(dpu_broadcast_to(set, DPU_MRAM_HEAP_POINTER_NAME, 0, table, table_bytes, DPU_XFER_DEFAULT));
    DPU_ASSERT(dpu_broadcast_to(set, DPU_MRAM_HEAP_POINTER_NAME, table_bytes, indices, index_bytes, DPU_XFER_DEFAULT));
    DPU_ASSERT(dpu_broadcast_to(set, "nr_rows", 0, &rows, 4, DPU_XFER_DEFAULT));
    DPU_ASSERT(dpu_broadcast_to(set, "lookups_per_tasklet", 0, &lookups, 4, DPU_XFER_DEFAULT));

    double *seconds = calloc((size_t)launches, sizeof(double));
    for (int r = 0; r < launches; r++) {
        double t0 = now();
        DPU_ASSERT(dpu_launch(set, DPU_SYNCHRONOUS));
        seconds[r] = now() - t0;
    }
    qsort(seconds, (size_t)launches, sizeof(double), compare);
    double median = seconds[launches / 2];
    double total_lookups = (double)nr_dpus * NR_TASKLETS * lookups;

    /* check tasklet 3 of the first DPU against the host */
    float result[NR_TASKLETS][DIM];
    DPU_FOREACH(set, dpu) {
        DPU_ASSERT(dpu_copy_from(dpu, "result", 0, result, sizeof(result)));
        break;
    }
    int ok = 1;
    for (int d = 0; d < DIM; d++) {
        float acc = 0.0f;
        for (uint32_t j = 0; j < lookups; j++)
            acc += table[(size_t)indices[3 * lookups + j] * DIM + d];
        ok &= acc == result[3][d];
    }
    printf("%u DPUs x %d tasklets x %u lookups, 64-dim fp32: median %.4f s over %d launches -> %.2f M lookups/s (%s)\n",
           nr_dpus, NR_TASKLETS, lookups, median, launches, total_lookups / median / 1e6, ok ? "result OK" : "RESULT WRONG");
    free(seconds);
    free(table);
    free(indices);
    DPU_ASSERT(dpu_free(set));
    return ok ? 0 : 1;
}
