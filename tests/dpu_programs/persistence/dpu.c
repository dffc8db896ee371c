/* WRAM globals keep their values from one launch to the next; only dpu_load resets them. */
#include <barrier.h>
#include <defs.h>
#include <stdint.h>

__host uint64_t factorial = 1;
__host uint32_t nr_launches = 0;

BARRIER_INIT(done_barrier, NR_TASKLETS);

int main(void) {
    if (me() == 0) {
        for (uint64_t i = 2; i <= 5; i++) {
            factorial *= i;
        }
        nr_launches++;
    }
    barrier_wait(&done_barrier);
    return 0;
}
