/* Tests of the emulator's host API rules and DPU runtime semantics.
 * usage: test_api KERNEL_DIR  (the kernels of tests/kernels built by the toolchain's cc) */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dpu.h>
#include <dpu_emu.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../common.h"

#define NR_TASKLETS 16 /* the kernels are built with -DNR_TASKLETS=16 */

#ifdef INCBIN_KERNEL
DPU_INCBIN(persist_binary, INCBIN_KERNEL)
#endif

static int g_failures;
static const char *g_dir;
static const char *g_self;

#define CHECK(cond)                                                                                   \
    do {                                                                                              \
        if (!(cond)) {                                                                                \
            fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, __func__, #cond);   \
            g_failures++;                                                                             \
        }                                                                                             \
    } while (0)

#define CHECK_ERR(expected, call)                                                                     \
    do {                                                                                              \
        dpu_error_t _got = (call);                                                                    \
        if (_got != (expected)) {                                                                     \
            char *_text = dpu_error_to_string(_got);                                                  \
            fprintf(stderr, "%s:%d: %s: %s returned %d (%s), expected %s\n", __FILE__, __LINE__,      \
                    __func__, #call, (int)_got, _text, #expected);                                    \
            free(_text);                                                                              \
            g_failures++;                                                                             \
        }                                                                                             \
    } while (0)

#define OK(call) CHECK_ERR(DPU_OK, call)

static const char *kernel(const char *name)
{
    static char path[8][4096];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, sizeof(path[0]), "%s/%s", g_dir, name);
    return p;
}

static uint32_t count_dpus(struct dpu_set_t set)
{
    struct dpu_set_t dpu;
    uint32_t n = 0;
    DPU_FOREACH(set, dpu) {
        (void)dpu;
        n++;
    }
    return n;
}

/* Reads the DPU log into a malloc'd string. */
static char *read_log(struct dpu_set_t dpu)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    dpu_error_t status = dpu_log_read(dpu, f);
    fclose(f);
    if (status != DPU_OK) {
        free(text);
        return strdup("");
    }
    return text;
}

static void test_error_enum(void)
{
    /* SDK 2025.1 numbering */
    CHECK(DPU_ERR_INVALID_WRAM_ACCESS == 8);
    CHECK(DPU_ERR_INVALID_MRAM_ACCESS == 10);
    CHECK(DPU_ERR_NO_PROGRAM_LOADED == 16);
    CHECK(DPU_ERR_DPU_ALREADY_RUNNING == 20);
    CHECK(DPU_ERR_DPU_FAULT == 23);
    CHECK(DPU_ERR_INVALID_PROFILE == 28);
    CHECK(DPU_ERR_UNKNOWN_SYMBOL == 29);
    CHECK(DPU_ERR_SG_NOT_MRAM_SYMBOL == 42);
    CHECK((unsigned)DPU_ERR_ASYNC_JOBS == 1u << 31);
    CHECK(DPU_XFER_NO_RESET == 1 && DPU_XFER_ASYNC == 2 && DPU_SYNCHRONOUS == 1 && DPU_XFER_FROM_DPU == 1);
    char *text = dpu_error_to_string(DPU_ERR_DPU_FAULT);
    CHECK(text != NULL && strstr(text, "fault") != NULL);
    free(text); /* SDK 2025.1: the caller owns the string */
    text = dpu_error_to_string((dpu_error_t)1000);
    CHECK(text != NULL);
    free(text);
}

static void test_alloc_and_profiles(void)
{
    struct dpu_set_t set, dpu, rank;
    uint32_t n, r, i, j;

    OK(dpu_alloc(100, NULL, &set));
    OK(dpu_get_nr_dpus(set, &n));
    OK(dpu_get_nr_ranks(set, &r));
    CHECK(n == 100 && r == 2);
    CHECK(count_dpus(set) == 100);
    j = 0;
    DPU_FOREACH(set, dpu, i) { CHECK(i == j++); }
    uint32_t per_rank[2] = {0, 0}, nr_rank = 0;
    DPU_RANK_FOREACH(set, rank, i) {
        OK(dpu_get_nr_dpus(rank, &per_rank[i]));
        CHECK(count_dpus(rank) == per_rank[i]);
        CHECK_ERR(DPU_ERR_INVALID_DPU_SET, dpu_free(rank)); /* only the allocated set can be freed */
        nr_rank++;
    }
    CHECK(nr_rank == 2 && per_rank[0] == 64 && per_rank[1] == 36);
    DPU_FOREACH(set, dpu) {
        CHECK_ERR(DPU_ERR_INVALID_DPU_SET, dpu_free(dpu));
        OK(dpu_get_nr_dpus(dpu, &n));
        CHECK(n == 1);
        break;
    }
    OK(dpu_free(set));

    OK(dpu_alloc_ranks(3, "backend=simulator, nrDpusPerRank=8,nrDisabledDpus=2", &set));
    OK(dpu_get_nr_dpus(set, &n));
    OK(dpu_get_nr_ranks(set, &r));
    CHECK(n == 18 && r == 3);
    OK(dpu_free(set));
    OK(dpu_alloc_ranks(1, "nrDpusPerCI=2,disabledMask=0x5", &set)); /* 16 DPUs, 2 disabled */
    OK(dpu_get_nr_dpus(set, &n));
    CHECK(n == 14);
    OK(dpu_free(set));
    OK(dpu_alloc(DPU_ALLOCATE_ALL, "nrRanks=3", &set));
    OK(dpu_get_nr_dpus(set, &n));
    CHECK(n == 192);
    OK(dpu_free(set));

    CHECK_ERR(DPU_ERR_INVALID_PROFILE, dpu_alloc(4, "noSuchKey=1", &set));
    CHECK_ERR(DPU_ERR_INVALID_PROFILE, dpu_alloc(4, "nrDpusPerRank=65", &set));
    CHECK_ERR(DPU_ERR_INVALID_PROFILE, dpu_alloc(4, "nrDpusPerRank", &set));
    CHECK_ERR(DPU_ERR_ALLOCATION, dpu_alloc(200, "nrRanks=3", &set));
    CHECK_ERR(DPU_ERR_ALLOCATION, dpu_alloc(0, NULL, &set));
}

static void test_load_errors(void)
{
    struct dpu_set_t set;
    OK(dpu_alloc(2, NULL, &set));
    uint32_t v = 0;
    CHECK_ERR(DPU_ERR_NO_PROGRAM_LOADED, dpu_launch(set, DPU_SYNCHRONOUS));
    CHECK_ERR(DPU_ERR_NO_PROGRAM_LOADED, dpu_copy_to(set, "launches", 0, &v, 4));
    CHECK_ERR(DPU_ERR_ELF_NO_SUCH_FILE, dpu_load(set, kernel("no_such_kernel"), NULL));
    char text_file[] = "/tmp/dpuemu-test-XXXXXX";
    int fd = mkstemp(text_file);
    CHECK(fd >= 0 && write(fd, "not an ELF file\n", 16) == 16);
    close(fd);
    CHECK_ERR(DPU_ERR_ELF_INVALID_FILE, dpu_load(set, text_file, NULL));
    unlink(text_file);
    CHECK_ERR(DPU_ERR_ELF_INVALID_FILE, dpu_load(set, "/bin/sh", NULL));
    CHECK_ERR(DPU_ERR_ELF_INVALID_FILE, dpu_load(set, g_self, NULL)); /* an ELF, but not a kernel */
    OK(dpu_free(set));
}

static void test_symbols_and_transfers(void)
{
    struct dpu_set_t set, dpu;
    struct dpu_program_t *program = NULL;
    struct dpu_symbol_t sym;
    uint32_t i;
    OK(dpu_alloc(4, NULL, &set));
    OK(dpu_load(set, kernel("mram_vars"), &program));
    CHECK(program != NULL);

    OK(dpu_get_symbol(program, "sum_initialised", &sym));
    CHECK(sym.size == 8 && sym.address < 0x08000000u && sym.address % 8 == 0);
    OK(dpu_get_symbol(program, "table", &sym));
    CHECK(sym.size == 8u << 20 && sym.address >= 0x08000000u);
    OK(dpu_get_symbol(program, "initialised", &sym));
    CHECK(sym.size == 32 && sym.address >= 0x08000000u);
    struct dpu_symbol_t heap;
    OK(dpu_get_symbol(program, DPU_MRAM_HEAP_POINTER_NAME, &heap));
    CHECK(heap.address >= sym.address + sym.size && heap.address + heap.size == 0x08000000u + (64u << 20));
    CHECK_ERR(DPU_ERR_UNKNOWN_SYMBOL, dpu_get_symbol(program, "no_such_symbol", &sym));

    uint64_t buf[8] = {0};
    CHECK_ERR(DPU_ERR_UNKNOWN_SYMBOL, dpu_copy_to(set, "no_such_symbol", 0, buf, 8));
    CHECK_ERR(DPU_ERR_INVALID_MRAM_ACCESS, dpu_copy_to(set, "table", 4, buf, 8));
    CHECK_ERR(DPU_ERR_INVALID_MRAM_ACCESS, dpu_copy_to(set, "table", 0, buf, 12));
    CHECK_ERR(DPU_ERR_INVALID_MRAM_ACCESS, dpu_broadcast_to(set, DPU_MRAM_HEAP_POINTER_NAME, 8, buf, 4, DPU_XFER_DEFAULT));
    CHECK_ERR(DPU_ERR_INVALID_WRAM_ACCESS, dpu_copy_to(set, "seq_sum", 2, buf, 4));
    CHECK_ERR(DPU_ERR_INVALID_WRAM_ACCESS, dpu_copy_to(set, "seq_sum", 0, buf, 6));
    OK(dpu_copy_to(set, "seq_sum", 4, buf, 4)); /* WRAM: multiples of 4 are fine */
    CHECK_ERR(DPU_ERR_INVALID_SYMBOL_ACCESS, dpu_copy_to(set, "seq_sum", 8, buf, 8));
    CHECK_ERR(DPU_ERR_INVALID_SYMBOL_ACCESS, dpu_copy_to(set, "initialised", 0, buf, 40));
    CHECK_ERR(DPU_ERR_INVALID_SYMBOL_ACCESS, dpu_copy_to(set, DPU_MRAM_HEAP_POINTER_NAME, heap.size - 8, buf, 16));
    CHECK_ERR(DPU_ERR_INVALID_DPU_SET, dpu_copy_from(set, "seq_sum", 0, buf, 8));
    CHECK_ERR(DPU_ERR_INVALID_MEMORY_TRANSFER, dpu_push_xfer(set, (dpu_xfer_t)7, "seq_sum", 0, 8, DPU_XFER_DEFAULT));

    /* host data for the sequential reader: 100 words per DPU, different per DPU */
    uint64_t words[4][100];
    DPU_FOREACH(set, dpu, i) {
        for (int k = 0; k < 100; k++)
            words[i][k] = 1000 * i + (uint64_t)k;
        OK(dpu_prepare_xfer(dpu, words[i]));
    }
    OK(dpu_push_xfer(set, DPU_XFER_TO_DPU, "table", 0, sizeof(words[0]), DPU_XFER_DEFAULT));
    uint32_t count = 100;
    OK(dpu_broadcast_to(set, "seq_count", 0, &count, sizeof(count), DPU_XFER_DEFAULT));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu, i) {
        uint64_t s = 0, expected = 0;
        for (int k = 0; k < 100; k++)
            expected += words[i][k];
        OK(dpu_copy_from(dpu, "seq_sum", 0, &s, 8));
        CHECK(s == expected);
        OK(dpu_copy_from(dpu, "sum_initialised", 0, &s, 8));
        CHECK(s == 110);
        uint64_t doubled[4];
        OK(dpu_copy_from(dpu, "doubled", 0, doubled, sizeof(doubled)));
        CHECK(doubled[0] == 22 && doubled[3] == 88);
        uint64_t past_the_end = 0;
        OK(dpu_copy_from(dpu, DPU_MRAM_HEAP_POINTER_NAME, 0, &past_the_end, 8));
        CHECK(past_the_end == 0x5eed);
        char *log = read_log(dpu);
        CHECK(strstr(log, "sum=110") != NULL);
        free(log);
    }
    CHECK_ERR(DPU_ERR_INVALID_DPU_SET, dpu_log_read(set, stdout));

    /* push rules: NULL-prepared DPUs are skipped, buffers reset unless NO_RESET */
    uint64_t marks[4] = {1, 2, 3, 4}, back[4] = {0};
    uint64_t zero = 0;
    OK(dpu_broadcast_to(set, "seq_sum", 0, &zero, 8, DPU_XFER_DEFAULT));
    DPU_FOREACH(set, dpu, i) {
        if (i != 2)
            OK(dpu_prepare_xfer(dpu, &marks[i]));
    }
    OK(dpu_push_xfer(set, DPU_XFER_TO_DPU, "seq_sum", 0, 8, DPU_XFER_NO_RESET));
    DPU_FOREACH(set, dpu, i) { CHECK_ERR(i == 2 ? DPU_OK : DPU_ERR_TRANSFER_ALREADY_SET, dpu_prepare_xfer(dpu, &back[i])); }
    OK(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "seq_sum", 0, 8, DPU_XFER_DEFAULT));
    CHECK(back[0] == 1 && back[1] == 2 && back[2] == 0 && back[3] == 4);
    /* after a default push nothing is prepared: a push moves nothing */
    memset(back, 0xff, sizeof(back));
    OK(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "seq_sum", 0, 8, DPU_XFER_DEFAULT));
    CHECK(back[0] == UINT64_MAX && back[3] == UINT64_MAX);

    /* transfers by symbol */
    OK(dpu_get_symbol(program, "seq_sum", &sym));
    uint64_t v = 77, w = 0;
    OK(dpu_copy_to_symbol(set, sym, 0, &v, 8));
    DPU_FOREACH(set, dpu) {
        OK(dpu_copy_from_symbol(dpu, sym, 0, &w, 8));
        CHECK(w == 77);
    }
    CHECK_ERR(DPU_ERR_INVALID_SYMBOL_ACCESS, dpu_copy_to_symbol(set, sym, 4, &v, 8));

    /* transfer history */
    struct dpu_emu_xfer_record records[64];
    uint32_t nr_records = 0;
    OK(dpu_emu_reset_counters(set));
    DPU_FOREACH(set, dpu, i) { OK(dpu_prepare_xfer(dpu, words[i])); }
    OK(dpu_push_xfer(set, DPU_XFER_TO_DPU, "table", 0, 96, DPU_XFER_DEFAULT));
    OK(dpu_broadcast_to(set, "seq_count", 0, &count, 4, DPU_XFER_DEFAULT));
    OK(dpu_emu_get_xfer_log(set, records, 64, &nr_records));
    CHECK(nr_records == 2);
    CHECK(records[0].kind == DPU_EMU_XFER_PUSH && records[0].nr_dpus == 4 && records[0].bytes_per_dpu == 96 &&
          records[0].is_mram == 1 && records[0].total_bytes == 384 && records[0].direction == DPU_XFER_TO_DPU);
    CHECK(records[1].kind == DPU_EMU_XFER_BROADCAST && records[1].is_mram == 0 && records[1].total_bytes == 16);
    struct dpu_emu_xfer_totals totals;
    OK(dpu_emu_get_xfer_totals(set, &totals));
    CHECK(totals.to_dpu_calls == 2 && totals.to_dpu_bytes == 400 && totals.from_dpu_calls == 0);
    DPU_FOREACH(set, dpu) {
        struct dpu_emu_dpu_counters c;
        OK(dpu_emu_get_dpu_counters(dpu, &c));
        CHECK(c.to_dpu_calls == 2 && c.to_dpu_bytes == 100);
        break;
    }
    OK(dpu_free(set));
}

static dpu_error_t count_rank(struct dpu_set_t rank, uint32_t index, void *args)
{
    uint32_t *seen = args, n = 0;
    if (dpu_get_nr_dpus(rank, &n) != DPU_OK || index != seen[0])
        return DPU_ERR_INTERNAL;
    seen[0]++;
    seen[1] += n;
    return index == 1 && seen[2] ? DPU_ERR_TIMEOUT : DPU_OK;
}

static uint32_t launches_of_first_dpu(struct dpu_set_t set)
{
    struct dpu_set_t dpu;
    uint32_t launches = 0;
    DPU_FOREACH(set, dpu) {
        OK(dpu_copy_from(dpu, "launches", 0, &launches, 4));
        break;
    }
    return launches;
}

static void test_load_variants_and_callback(void)
{
    struct dpu_set_t set;
    OK(dpu_alloc(70, NULL, &set));
#ifdef INCBIN_KERNEL
    OK(dpu_load_from_incbin(set, &persist_binary, NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    CHECK(launches_of_first_dpu(set) == 1);
#endif
    FILE *f = fopen(kernel("persist"), "rb");
    static uint8_t image[1 << 20];
    size_t size = f != NULL ? fread(image, 1, sizeof(image), f) : 0;
    if (f != NULL)
        fclose(f);
    CHECK(size > 0 && size < sizeof(image));
    OK(dpu_load_from_memory(set, image, size, NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    CHECK(launches_of_first_dpu(set) == 2);
    uint32_t seen[3] = {0, 0, 0};
    OK(dpu_callback(set, count_rank, seen, DPU_CALLBACK_DEFAULT));
    CHECK(seen[0] == 2 && seen[1] == 70);
    uint32_t failing[3] = {0, 0, 1};
    CHECK_ERR(DPU_ERR_TIMEOUT, dpu_callback(set, count_rank, failing, DPU_CALLBACK_ASYNC));
    OK(dpu_free(set));
}

static void test_different_programs(void)
{
    struct dpu_set_t set, dpu;
    uint32_t i, v = 0;
    OK(dpu_alloc(2, NULL, &set));
    DPU_FOREACH(set, dpu, i) { OK(dpu_load(dpu, kernel(i == 0 ? "persist" : "busy"), NULL)); }
    CHECK_ERR(DPU_ERR_DIFFERENT_DPU_PROGRAMS, dpu_copy_to(set, "launches", 0, &v, 4));
    OK(dpu_free(set));
}

/* Distinct files mapped as kernel copies (each worker thread must have its own). */
static int count_kernel_copies(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    unsigned long inodes[256];
    int n = 0;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        unsigned long inode = 0;
        if (strstr(line, "dpuemu-kernel") == NULL || sscanf(line, "%*s %*s %*s %*s %lu", &inode) != 1)
            continue;
        int known = 0;
        for (int i = 0; i < n; i++)
            known |= inodes[i] == inode;
        if (!known && n < 256)
            inodes[n++] = inode;
    }
    if (f != NULL)
        fclose(f);
    return n;
}

static void test_private_copies_per_worker(void)
{
    struct dpu_set_t set;
    uint32_t workers = dpu_emu_nr_threads();
    int before = count_kernel_copies();
    OK(dpu_alloc(8, NULL, &set));
    OK(dpu_load(set, kernel("persist"), NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    CHECK(count_kernel_copies() - before == (int)(workers < 8 ? workers : 8));
    OK(dpu_free(set));
    CHECK(count_kernel_copies() == before);
}

/* A forked child starts its own worker threads. */
static void test_launch_after_fork(void)
{
    struct dpu_set_t set;
    OK(dpu_alloc(3, NULL, &set));
    OK(dpu_load(set, kernel("persist"), NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS)); /* workers started in the parent */
    fflush(NULL);
    pid_t child = fork();
    if (child == 0) {
        int ok = dpu_launch(set, DPU_SYNCHRONOUS) == DPU_OK && launches_of_first_dpu(set) == 2;
        _exit(ok ? 0 : 1);
    }
    int status = -1;
    CHECK(child > 0 && waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(launches_of_first_dpu(set) == 1); /* the child's launch is its own */
    OK(dpu_free(set));
}

static void test_persistence(void)
{
    struct dpu_set_t set, dpu;
    OK(dpu_alloc(3, NULL, &set));
    OK(dpu_load(set, kernel("persist"), NULL));
    for (uint32_t launch = 1; launch <= 3; launch++) {
        OK(dpu_launch(set, DPU_SYNCHRONOUS));
        DPU_FOREACH(set, dpu) {
            uint32_t launches = 0, seen = 99, hidden = 0;
            uint64_t factorial = 0;
            OK(dpu_copy_from(dpu, "launches", 0, &launches, 4));
            OK(dpu_copy_from(dpu, "seen_at_start", 0, &seen, 4));
            OK(dpu_copy_from(dpu, "factorial", 0, &factorial, 8));
            OK(dpu_copy_from(dpu, "hidden_copy", 0, &hidden, 4));
            CHECK(launches == launch && seen == launch - 1 && hidden == 7 + launch);
            CHECK(factorial == (launch == 1 ? 120u : launch == 2 ? 14400u : 207360000u));
        }
    }
    /* the host's writes persist too; dpu_load restores the initial values */
    uint32_t forty = 40;
    OK(dpu_copy_to(set, "launches", 0, &forty, 4));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) {
        uint32_t launches = 0;
        OK(dpu_copy_from(dpu, "launches", 0, &launches, 4));
        CHECK(launches == 41);
    }
    OK(dpu_load(set, kernel("persist"), NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) {
        uint32_t launches = 0;
        OK(dpu_copy_from(dpu, "launches", 0, &launches, 4));
        CHECK(launches == 1);
    }
    OK(dpu_free(set));
}

static void test_reduction_with_mutex(void)
{
    struct dpu_set_t set, dpu;
    uint32_t i;
    enum { WORDS = 5000, DPUS = 5 };
    static uint64_t input[DPUS][WORDS];
    OK(dpu_alloc(DPUS, NULL, &set));
    OK(dpu_load(set, kernel("reduce_mutex"), NULL));
    uint64_t expected[DPUS] = {0};
    DPU_FOREACH(set, dpu, i) {
        for (uint32_t k = 0; k < WORDS; k++) {
            input[i][k] = (uint64_t)k * k + i;
            expected[i] += input[i][k];
        }
        OK(dpu_prepare_xfer(dpu, input[i]));
    }
    OK(dpu_push_xfer(set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, 0, sizeof(input[0]), DPU_XFER_DEFAULT));
    uint32_t n = WORDS;
    OK(dpu_broadcast_to(set, "nr_words", 0, &n, 4, DPU_XFER_DEFAULT));
    for (int run = 0; run < 2; run++) { /* same answer every time */
        OK(dpu_launch(set, DPU_SYNCHRONOUS));
        DPU_FOREACH(set, dpu, i) {
            uint64_t total = 0, partial[NR_TASKLETS], partial_sum = 0;
            OK(dpu_copy_from(dpu, "total", 0, &total, 8));
            OK(dpu_copy_from(dpu, "partial", 0, partial, sizeof(partial)));
            for (int t = 0; t < NR_TASKLETS; t++)
                partial_sum += partial[t];
            CHECK(total == expected[i] && partial_sum == expected[i]);
            CHECK(partial[1] != 0 && partial[NR_TASKLETS - 1] != 0);
        }
    }
    /* DMA counters: every tasklet read its strided words and wrote once */
    DPU_FOREACH(set, dpu) {
        struct dpu_emu_dma_counters total, per_tasklet[NR_TASKLETS + 2];
        uint32_t nr = 0;
        OK(dpu_emu_get_last_launch(dpu, &total, per_tasklet, NR_TASKLETS + 2, &nr));
        CHECK(nr == NR_TASKLETS);
        CHECK(total.read_calls == WORDS && total.read_bytes == 8 * WORDS && total.write_calls == NR_TASKLETS);
        CHECK(per_tasklet[0].read_calls == (WORDS + NR_TASKLETS - 1) / NR_TASKLETS);
        CHECK(per_tasklet[NR_TASKLETS - 1].read_calls == WORDS / NR_TASKLETS);
        CHECK(per_tasklet[NR_TASKLETS].read_calls == 0);
        CHECK(total.modelled_cycles == (uint64_t)WORDS * (77 + 4) + NR_TASKLETS * (61 + 4));
        struct dpu_emu_dpu_counters c;
        OK(dpu_emu_get_dpu_counters(dpu, &c));
        CHECK(c.launches == 2 && c.dma.read_calls == 2 * WORDS);
    }
    OK(dpu_free(set));
}

static void test_sequential_only_kernel_fails(void)
{
    struct dpu_set_t set, dpu;
    OK(dpu_alloc(1, NULL, &set));
    OK(dpu_load(set, kernel("sequential_only"), NULL));
    uint64_t input[NR_TASKLETS], out[NR_TASKLETS];
    for (int t = 0; t < NR_TASKLETS; t++)
        input[t] = 100 + (uint64_t)t;
    OK(dpu_copy_to(set, DPU_MRAM_HEAP_POINTER_NAME, 0, input, sizeof(input)));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) { OK(dpu_copy_from(dpu, "out", 0, out, sizeof(out))); }
    int wrong = 0;
    for (int t = 0; t < NR_TASKLETS; t++)
        wrong += out[t] != input[t];
    CHECK(wrong > 0); /* run one after another, every out[t] would equal input[t] */
    OK(dpu_free(set));
}

static void test_semaphores_and_handshakes(void)
{
    struct dpu_set_t set, dpu;
    OK(dpu_alloc(2, NULL, &set));
    OK(dpu_load(set, kernel("sync"), NULL));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) {
        uint64_t counter = 0;
        uint32_t order[NR_TASKLETS], len = 0;
        int32_t status[3];
        OK(dpu_copy_from(dpu, "counter", 0, &counter, 8));
        OK(dpu_copy_from(dpu, "order", 0, order, sizeof(order)));
        OK(dpu_copy_from(dpu, "order_len", 0, &len, 4));
        OK(dpu_copy_from(dpu, "handshake_status", 0, status, sizeof(status)));
        CHECK(counter == 3 * NR_TASKLETS);
        CHECK(len == NR_TASKLETS);
        for (uint32_t k = 0; k < len && k < NR_TASKLETS; k++)
            CHECK(order[k] == NR_TASKLETS - 1 - k);
        CHECK(status[0] == EINVAL && status[1] == EINVAL);
    }
    OK(dpu_free(set));
}

static void test_modelled_perfcounter(void)
{
    struct dpu_set_t set, dpu;
    OK(dpu_alloc(2, NULL, &set));
    OK(dpu_load(set, kernel("perf"), NULL));
    uint32_t reads = 10;
    OK(dpu_broadcast_to(set, "reads", 0, &reads, 4, DPU_XFER_DEFAULT));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) {
        uint64_t seen[NR_TASKLETS], before = 0;
        uint32_t hz = 0;
        OK(dpu_copy_from(dpu, "seen", 0, seen, sizeof(seen)));
        OK(dpu_copy_from(dpu, "before_reset", 0, &before, 8));
        OK(dpu_copy_from(dpu, "clocks_per_sec", 0, &hz, 4));
        CHECK(before == 77 + 4);
        for (int t = 0; t < NR_TASKLETS; t++)
            CHECK(seen[t] == (uint64_t)NR_TASKLETS * reads * (77 + 64 / 2));
        CHECK(hz == 350000000u);
    }
    OK(dpu_free(set));
}

static void test_faults(void)
{
    static const char *const expected_text[FAULT_KINDS] = {
        [FAULT_MRAM_UNALIGNED] = "0x08", [FAULT_SIZE_SMALL] = "size 4", [FAULT_SIZE_LARGE] = "size 4096",
        [FAULT_SIZE_ODD] = "size 12", [FAULT_WRAM_UNALIGNED] = "WRAM address", [FAULT_OUT_OF_BOUNDS] = "0x0bfffff8",
        [FAULT_NOT_MRAM] = "not an MRAM address", [FAULT_HALT] = "halt", [FAULT_HEAP] = "heap exhausted",
        [FAULT_DEADLOCK] = "deadlock", [FAULT_WRITE_OUT_OF_BOUNDS] = "0x0c000000",
        [FAULT_DIRECT_MRAM] = "direct access to an MRAM address", [FAULT_STACK_OVERFLOW] = "stack overflow",
    };
    struct dpu_set_t set, dpu;
    uint32_t i;
    OK(dpu_alloc(3, NULL, &set));
    OK(dpu_load(set, kernel("faults"), NULL));
    for (uint32_t mode = FAULT_MRAM_UNALIGNED; mode < FAULT_KINDS; mode++) {
        if (mode == FAULT_DIRECT_MRAM && getenv("DPU_EMU_TEST_UNDER_VALGRIND") != NULL)
            continue; /* valgrind does not let the emulator reserve the MRAM address window */
        uint32_t culprit = 5, zero = 0, none = FAULT_NONE;
        OK(dpu_broadcast_to(set, "reached", 0, &zero, 4, DPU_XFER_DEFAULT));
        OK(dpu_broadcast_to(set, "culprit", 0, &culprit, 4, DPU_XFER_DEFAULT));
        DPU_FOREACH(set, dpu, i) { OK(dpu_copy_to(dpu, "mode", 0, i == 1 ? &mode : &none, 4)); }
        CHECK_ERR(DPU_ERR_DPU_FAULT, dpu_launch(set, DPU_SYNCHRONOUS));
        CHECK_ERR(DPU_ERR_DPU_FAULT, dpu_sync(set));
        bool done = false, fault = false;
        OK(dpu_status(set, &done, &fault));
        CHECK(done && fault);
        DPU_FOREACH(set, dpu, i) {
            OK(dpu_status(dpu, &done, &fault));
            CHECK(done && fault == (i == 1));
            uint32_t reached = 7;
            OK(dpu_copy_from(dpu, "reached", 0, &reached, 4));
            CHECK(reached == (i == 1 ? 0u : 1u) || mode == FAULT_DEADLOCK);
            char *log = read_log(dpu);
            if (i == 1) {
                CHECK(strstr(log, "[DPU fault]") != NULL);
                CHECK(strstr(log, expected_text[mode]) != NULL);
                CHECK(mode == FAULT_DEADLOCK || strstr(log, "tasklet 5:") != NULL);
                if (strstr(log, expected_text[mode]) == NULL)
                    fprintf(stderr, "mode %u log: %s\n", mode, log);
            } else {
                CHECK(strstr(log, "fault") == NULL);
            }
            free(log);
        }
        /* the DPUs work again after a fault */
        OK(dpu_broadcast_to(set, "mode", 0, &none, 4, DPU_XFER_DEFAULT));
        OK(dpu_launch(set, DPU_SYNCHRONOUS));
    }
    OK(dpu_free(set));
}

static void test_async_launch(void)
{
    struct dpu_set_t set, dpu;
    enum { DPUS = 4 };
    OK(dpu_alloc(DPUS, NULL, &set));
    OK(dpu_load(set, kernel("busy"), NULL));
    static uint64_t data[1024];
    for (int k = 0; k < 1024; k++)
        data[k] = (uint64_t)k * 3;
    OK(dpu_copy_to(set, DPU_MRAM_HEAP_POINTER_NAME, 0, data, sizeof(data)));
    uint32_t iterations = 200000;
    OK(dpu_broadcast_to(set, "iterations", 0, &iterations, 4, DPU_XFER_DEFAULT));
    CHECK_ERR(DPU_ERR_INVALID_LAUNCH_POLICY, dpu_launch(set, (dpu_launch_policy_t)5));
    OK(dpu_launch(set, DPU_ASYNCHRONOUS));
    CHECK_ERR(DPU_ERR_DPU_ALREADY_RUNNING, dpu_launch(set, DPU_SYNCHRONOUS));
    DPU_FOREACH(set, dpu) {
        CHECK_ERR(DPU_ERR_DPU_ALREADY_RUNNING, dpu_launch(dpu, DPU_ASYNCHRONOUS));
        break;
    }
    OK(dpu_sync(set));
    bool done = false, fault = true;
    OK(dpu_status(set, &done, &fault));
    CHECK(done && !fault);
    uint64_t expected = 0;
    for (uint32_t k = 0; k < iterations; k++)
        expected += data[k & 1023] + k;
    DPU_FOREACH(set, dpu) {
        uint64_t sums[NR_TASKLETS];
        OK(dpu_copy_from(dpu, "checksum", 0, sums, sizeof(sums)));
        CHECK(sums[0] == expected && sums[NR_TASKLETS - 1] == expected);
    }
    /* DPU_XFER_ASYNC pushes, then dpu_sync */
    uint64_t pulled[DPUS][NR_TASKLETS];
    uint32_t k;
    DPU_FOREACH(set, dpu, k) { OK(dpu_prepare_xfer(dpu, pulled[k])); }
    OK(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "checksum", 0, sizeof(pulled[0]), DPU_XFER_ASYNC));
    OK(dpu_sync(set));
    CHECK(pulled[0][0] == expected && pulled[DPUS - 1][NR_TASKLETS - 1] == expected);
    /* a transfer right after an asynchronous launch waits for it */
    iterations = 1000;
    OK(dpu_broadcast_to(set, "iterations", 0, &iterations, 4, DPU_XFER_DEFAULT));
    OK(dpu_launch(set, DPU_ASYNCHRONOUS));
    expected = 0;
    for (uint32_t k = 0; k < iterations; k++)
        expected += data[k & 1023] + k;
    DPU_FOREACH(set, dpu) {
        uint64_t sum = 0;
        OK(dpu_copy_from(dpu, "checksum", 8, &sum, 8));
        CHECK(sum == expected);
    }
    OK(dpu_sync(set));
    OK(dpu_free(set));
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = strtol(line + 6, NULL, 10);
    }
    if (f != NULL)
        fclose(f);
    return kib;
}

static void test_many_dpus_small_memory(void)
{
    struct dpu_set_t set, dpu;
    uint32_t n = 0, i;
    long before = rss_kib();
    dpu_error_t status = dpu_alloc(2560, NULL, &set); /* 160 GiB of MRAM if it were committed */
    if (status == DPU_ERR_ALLOCATION && getenv("DPU_EMU_TEST_UNDER_VALGRIND") != NULL) {
        fprintf(stderr, "2560 DPUs: skipped (160 GiB of address space not available under valgrind)\n");
        return;
    }
    OK(status);
    OK(dpu_get_nr_dpus(set, &n));
    CHECK(n == 2560);
    OK(dpu_load(set, kernel("reduce_mutex"), NULL));
    static uint64_t input[2560][16];
    DPU_FOREACH(set, dpu, i) {
        for (int k = 0; k < 16; k++)
            input[i][k] = i + (uint64_t)k;
        OK(dpu_prepare_xfer(dpu, input[i]));
    }
    OK(dpu_push_xfer(set, DPU_XFER_TO_DPU, DPU_MRAM_HEAP_POINTER_NAME, 0, sizeof(input[0]), DPU_XFER_DEFAULT));
    uint32_t words = 16;
    OK(dpu_broadcast_to(set, "nr_words", 0, &words, 4, DPU_XFER_DEFAULT));
    OK(dpu_launch(set, DPU_SYNCHRONOUS));
    uint64_t totals[2560];
    DPU_FOREACH(set, dpu, i) { OK(dpu_prepare_xfer(dpu, &totals[i])); }
    OK(dpu_push_xfer(set, DPU_XFER_FROM_DPU, "total", 0, 8, DPU_XFER_DEFAULT));
    for (i = 0; i < 2560; i++)
        CHECK(totals[i] == 16ull * i + 120);
    long after = rss_kib();
    fprintf(stderr, "2560 DPUs: RSS %ld KiB -> %ld KiB\n", before, after);
    CHECK(after - before < 128 * 1024); /* far below the 160 GiB of MRAM and 160 MiB of WRAM emulated */
    OK(dpu_free(set));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s KERNEL_DIR\n", argv[0]);
        return 2;
    }
    g_dir = argv[1];
    g_self = argv[0];
    test_error_enum();
    test_alloc_and_profiles();
    test_load_errors();
    test_symbols_and_transfers();
    test_different_programs();
    test_load_variants_and_callback();
    test_private_copies_per_worker();
    test_launch_after_fork();
    test_persistence();
    test_reduction_with_mutex();
    test_sequential_only_kernel_fails();
    test_semaphores_and_handshakes();
    test_modelled_perfcounter();
    test_faults();
    test_async_launch();
    test_many_dpus_small_memory();
    if (g_failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    printf("all emulator API tests passed (%s)\n", dpu_emu_version());
    return 0;
}
