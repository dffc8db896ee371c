/* Baseline for bench_dpu_binding.py: the same libdpu calls from C, timed the same way.
 * Usage: baseline <kernel> <nr_dpus> <reps>; prints "<operation> <median seconds>" lines. */
#define _POSIX_C_SOURCE 199309L
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WORDS 64 /* mram_words of tests/dpu_programs/symbols/dpu.c */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *times, int reps) {
    qsort(times, (size_t)reps, sizeof(double), cmp);
    return times[reps / 2];
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s <kernel> <nr_dpus> <reps>\n", argv[0]);
        return 2;
    }
    uint32_t nr_dpus = (uint32_t)atoi(argv[2]);
    int reps = atoi(argv[3]);
    struct dpu_set_t set, dpu;
    uint32_t each_dpu;
    DPU_ASSERT(dpu_alloc(nr_dpus, NULL, &set));
    DPU_ASSERT(dpu_load(set, argv[1], NULL));
    uint64_t *data = calloc((size_t)nr_dpus * WORDS, sizeof(uint64_t));
    uint32_t zero = 0;
    DPU_ASSERT(dpu_broadcast_to(set, "spin_rounds", 0, &zero, sizeof(zero), DPU_XFER_DEFAULT));
    double *times = calloc((size_t)reps, sizeof(double));

    for (int r = 0; r < reps; r++) {
        double start = now();
        DPU_ASSERT(dpu_broadcast_to(set, "mram_words", 0, data, sizeof(uint64_t) * WORDS,
                                    DPU_XFER_DEFAULT));
        times[r] = now() - start;
    }
    printf("broadcast %.9f\n", median(times, reps));

    for (int r = 0; r < reps; r++) {
        double start = now();
        DPU_FOREACH(set, dpu, each_dpu) {
            DPU_ASSERT(dpu_prepare_xfer(dpu, data + (size_t)each_dpu * WORDS));
        }
        DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_TO_DPU, "mram_words", 0, sizeof(uint64_t) * WORDS,
                                 DPU_XFER_DEFAULT));
        times[r] = now() - start;
    }
    printf("push_to %.9f\n", median(times, reps));

    for (int r = 0; r < reps; r++) {
        double start = now();
        uint64_t *out = malloc((size_t)nr_dpus * WORDS * sizeof(uint64_t));
        DPU_FOREACH(set, dpu, each_dpu) {
            DPU_ASSERT(dpu_prepare_xfer(dpu, out + (size_t)each_dpu * WORDS));
        }
        DPU_ASSERT(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "mram_words", 0,
                                 sizeof(uint64_t) * WORDS, DPU_XFER_DEFAULT));
        times[r] = now() - start;
        free(out);
    }
    printf("push_from %.9f\n", median(times, reps));

    for (int r = 0; r < reps; r++) {
        double start = now();
        DPU_ASSERT(dpu_launch(set, DPU_SYNCHRONOUS));
        times[r] = now() - start;
    }
    printf("launch %.9f\n", median(times, reps));

    DPU_ASSERT(dpu_free(set));
    free(data);
    free(times);
    return 0;
}
