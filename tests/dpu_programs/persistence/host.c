/* Launches the persistence kernel three times, reloads it and launches once more.
 * Usage: host <dpu binary>.  Expected: 120 14400 1728000, then 120 after the reload. */
#include <dpu.h>
#include <stdint.h>
#include <stdio.h>

#ifndef NR_DPUS
#define NR_DPUS 4
#endif

/* Launches `set` once, prints the first DPU's factorial and checks that every DPU holds
 * `expected` in factorial and `launches` in nr_launches. */
static int launch_and_check(struct dpu_set_t set, uint64_t expected, uint32_t launches) {
    struct dpu_set_t dpu;
    uint32_t each_dpu;
    int wrong = 0;
    DPU_ASSERT(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu, each_dpu) {
        uint64_t factorial;
        uint32_t nr_launches;
        DPU_ASSERT(dpu_copy_from(dpu, "factorial", 0, &factorial, sizeof(factorial)));
        DPU_ASSERT(dpu_copy_from(dpu, "nr_launches", 0, &nr_launches, sizeof(nr_launches)));
        wrong |= factorial != expected || nr_launches != launches;
        if (each_dpu == 0) {
            printf(" %llu", (unsigned long long)factorial);
        }
    }
    return wrong;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <dpu binary>\n", argv[0]);
        return 2;
    }
    struct dpu_set_t set;
    int wrong = 0;
    DPU_ASSERT(dpu_alloc(NR_DPUS, NULL, &set));
    DPU_ASSERT(dpu_load(set, argv[1], NULL));
    printf("persistence:");
    wrong |= launch_and_check(set, 120, 1);
    wrong |= launch_and_check(set, 14400, 2);
    wrong |= launch_and_check(set, 1728000, 3);
    DPU_ASSERT(dpu_load(set, argv[1], NULL));
    printf(" reload");
    wrong |= launch_and_check(set, 120, 1);
    printf(": %s\n", wrong ? "ERROR" : "OK");
    DPU_ASSERT(dpu_free(set));
    return wrong;
}
