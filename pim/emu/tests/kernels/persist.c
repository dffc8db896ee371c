/* Globals are initialised by dpu_load only: `launches` counts launches, `factorial` follows
 * the SDK documentation's example (120, then 14400 when multiplied by itself each launch). */
#include <defs.h>
#include <stdint.h>

__host uint32_t launches = 0;
__host uint64_t factorial = 120;
__host uint32_t seen_at_start;
static uint32_t hidden_state = 7; /* not host-visible, but persistent as well */
__host uint32_t hidden_copy;

int main(void)
{
    if (me() == 0) {
        seen_at_start = launches;
        launches++;
        hidden_state += 1;
        hidden_copy = hidden_state;
        if (launches > 1)
            factorial *= factorial;
    }
    return 0;
}
