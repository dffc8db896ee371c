/* Allocation of DPU sets: profiles, ranks, DPUs (with lazily committed MRAM), iterators. */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "emu_internal.h"

struct emu_global g_emu = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .done = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t g_init_once = PTHREAD_ONCE_INIT;

/* A forked child has none of the parent's worker threads: start afresh (allocations stay; DPUs
 * that were running in the parent at the fork never finish in the child). */
static void after_fork_in_child(void)
{
    pthread_mutex_init(&g_emu.lock, NULL);
    pthread_cond_init(&g_emu.done, NULL);
    for (uint32_t i = 0; i < EMU_MAX_WORKERS; i++)
        g_emu.workers[i].head = g_emu.workers[i].tail = NULL;
    g_emu.workers_started = false;
}

static void init_once(void)
{
    pthread_atfork(NULL, NULL, after_fork_in_child);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const char *env = getenv("DPU_EMU_NR_THREADS");
    if (env != NULL && *env != '\0')
        cpus = strtol(env, NULL, 10);
    if (cpus < 1)
        cpus = 1;
    if (cpus > (long)EMU_MAX_WORKERS)
        cpus = EMU_MAX_WORKERS;
    g_emu.nr_workers = (uint32_t)cpus;
}

void emu_init(void) { pthread_once(&g_init_once, init_once); }

/* Kernels use 32-bit MRAM addresses (0x08000000 + offset) as pointers. Reserving that window
 * keeps host objects (e.g. a kernel's own MRAM sections, when a tool such as valgrind maps
 * libraries low) out of it, so that such an address is never also a host address. */
__attribute__((constructor)) static void reserve_mram_window(void)
{
    void *want = (void *)(uintptr_t)DPU_EMU_MRAM_BASE;
#ifdef MAP_FIXED_NOREPLACE
    int fixed = MAP_FIXED_NOREPLACE;
#else
    int fixed = 0;
#endif
    void *got = mmap(want, EMU_MRAM_WINDOW, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | fixed, -1, 0);
    if (got != MAP_FAILED && got != want)
        munmap(got, EMU_MRAM_WINDOW); /* only a hint on old kernels: give the other place back */
}

uint32_t dpu_emu_nr_threads(void)
{
    emu_init();
    return g_emu.nr_workers;
}

/* ---- profiles ---- */

struct emu_profile {
    uint32_t dpus_per_rank;
    uint64_t disabled_mask;
    uint32_t nr_disabled;
    uint32_t nr_ranks;
};

static bool parse_u64(const char *value, uint64_t *out)
{
    char *end;
    if (*value == '\0' || *value == '-')
        return false;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 0);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

static dpu_error_t parse_entry(struct emu_profile *p, const char *key, const char *value)
{
    uint64_t v = 0;
    if (strcmp(key, "backend") == 0)
        return DPU_OK; /* hw, simulator, ...: all are emulated */
    if (strcmp(key, "nrThreadsPerRank") == 0 || strcmp(key, "sgXferEnable") == 0 ||
        strcmp(key, "disableResetOnAlloc") == 0 || strcmp(key, "disableSafeChecks") == 0)
        return DPU_OK; /* accepted, no effect on the emulator */
    if (strcmp(key, "nrDpusPerRank") == 0) {
        if (!parse_u64(value, &v) || v < 1 || v > EMU_DPUS_PER_RANK)
            return DPU_ERR_INVALID_PROFILE;
        p->dpus_per_rank = (uint32_t)v;
        return DPU_OK;
    }
    if (strcmp(key, "nrDpusPerCI") == 0) {
        if (!parse_u64(value, &v) || v < 1 || v > DPU_MAX_NR_DPUS_PER_CI)
            return DPU_ERR_INVALID_PROFILE;
        p->dpus_per_rank = (uint32_t)v * DPU_MAX_NR_CIS;
        return DPU_OK;
    }
    if (strcmp(key, "disabledMask") == 0) {
        if (!parse_u64(value, &v))
            return DPU_ERR_INVALID_PROFILE;
        p->disabled_mask = v;
        return DPU_OK;
    }
    if (strcmp(key, "nrDisabledDpus") == 0) {
        if (!parse_u64(value, &v) || v >= EMU_DPUS_PER_RANK)
            return DPU_ERR_INVALID_PROFILE;
        p->nr_disabled = (uint32_t)v;
        return DPU_OK;
    }
    if (strcmp(key, "nrRanks") == 0) {
        if (!parse_u64(value, &v) || v < 1 || v > 4096)
            return DPU_ERR_INVALID_PROFILE;
        p->nr_ranks = (uint32_t)v;
        return DPU_OK;
    }
    return DPU_ERR_INVALID_PROFILE;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static dpu_error_t parse_profile_string(struct emu_profile *p, const char *profile)
{
    if (profile == NULL)
        return DPU_OK;
    char *copy = strdup(profile);
    if (copy == NULL)
        return DPU_ERR_SYSTEM;
    dpu_error_t status = DPU_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok != NULL && status == DPU_OK; tok = strtok_r(NULL, ",", &save)) {
        char *entry = trim(tok);
        if (*entry == '\0')
            continue;
        char *eq = strchr(entry, '=');
        if (eq == NULL) {
            status = DPU_ERR_INVALID_PROFILE;
            break;
        }
        *eq = '\0';
        status = parse_entry(p, trim(entry), trim(eq + 1));
    }
    free(copy);
    return status;
}

static dpu_error_t parse_profile(const char *profile, struct emu_profile *p)
{
    p->dpus_per_rank = EMU_DPUS_PER_RANK;
    p->disabled_mask = 0;
    p->nr_disabled = 0;
    p->nr_ranks = EMU_DEFAULT_NR_RANKS;
    dpu_error_t status = parse_profile_string(p, getenv("UPMEM_PROFILE_BASE"));
    if (status == DPU_OK)
        status = parse_profile_string(p, profile);
    return status;
}

/** Whether position `i` of a rank is a working DPU. */
static bool position_enabled(const struct emu_profile *p, uint32_t i)
{
    if (i >= p->dpus_per_rank)
        return false;
    if (i < 64 && (p->disabled_mask >> i) & 1u)
        return false;
    return i < p->dpus_per_rank - p->nr_disabled;
}

static uint32_t usable_per_rank(const struct emu_profile *p)
{
    uint32_t n = 0;
    for (uint32_t i = 0; i < p->dpus_per_rank; i++)
        n += position_enabled(p, i);
    return n;
}

/* ---- allocation ---- */

static void destroy_alloc(struct emu_alloc *a)
{
    for (uint32_t i = 0; i < a->nr_dpus; i++) {
        struct dpu_t *d = &a->dpu_storage[i];
        if (d->mram != NULL)
            munmap(d->mram, EMU_MRAM_SIZE);
        free(d->image);
        free(d->log);
        free(d->last_tasklets);
    }
    free(a->dpu_storage);
    free(a->dpu_pointers);
    free(a->rank_storage);
    free(a->ranks);
    free(a->xfer_log);
    if (a->wram_heaps != NULL)
        munmap(a->wram_heaps, (size_t)a->nr_dpus * EMU_WRAM_SIZE);
    pthread_mutex_destroy(&a->stats_lock);
    free(a);
}

/** Allocates `nr_ranks` ranks exposing `nr_dpus` DPUs in total (the last rank may expose fewer). */
static dpu_error_t make_alloc(uint32_t nr_ranks, uint32_t nr_dpus, uint32_t per_rank, struct dpu_set_t *out)
{
    emu_init();
    struct emu_alloc *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return DPU_ERR_SYSTEM;
    pthread_mutex_init(&a->stats_lock, NULL);
    a->nr_ranks = nr_ranks;
    a->nr_dpus = nr_dpus;
    a->ranks = calloc(nr_ranks, sizeof(*a->ranks));
    a->rank_storage = calloc(nr_ranks, sizeof(*a->rank_storage));
    a->dpu_storage = calloc(nr_dpus, sizeof(*a->dpu_storage));
    a->dpu_pointers = calloc(nr_dpus, sizeof(*a->dpu_pointers));
    if (a->ranks == NULL || a->rank_storage == NULL || a->dpu_storage == NULL || a->dpu_pointers == NULL) {
        destroy_alloc(a);
        return DPU_ERR_SYSTEM;
    }
    /* WRAM heaps of all DPUs, committed page by page when a kernel uses them */
    void *heaps = mmap(NULL, (size_t)nr_dpus * EMU_WRAM_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (heaps == MAP_FAILED) {
        destroy_alloc(a);
        return DPU_ERR_ALLOCATION;
    }
    a->wram_heaps = heaps;
    uint32_t next = 0;
    for (uint32_t r = 0; r < nr_ranks; r++) {
        struct dpu_rank_t *rank = &a->rank_storage[r];
        a->ranks[r] = rank;
        rank->alloc = a;
        rank->index = r;
        rank->dpus = &a->dpu_pointers[next];
        rank->nr_dpus = nr_dpus - next < per_rank ? nr_dpus - next : per_rank;
        for (uint32_t i = 0; i < rank->nr_dpus; i++, next++) {
            struct dpu_t *d = &a->dpu_storage[next];
            a->dpu_pointers[next] = d;
            d->alloc = a;
            d->rank = rank;
            d->index = next;
            d->worker = next % g_emu.nr_workers;
            d->heap = a->wram_heaps + (size_t)next * EMU_WRAM_SIZE;
            /* 64 MiB per DPU, committed page by page on first touch. */
            void *m = mmap(NULL, EMU_MRAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                           -1, 0);
            if (m == MAP_FAILED) {
                destroy_alloc(a);
                return DPU_ERR_ALLOCATION;
            }
            d->mram = m;
        }
    }
    pthread_mutex_lock(&g_emu.lock);
    a->next = g_emu.allocs;
    g_emu.allocs = a;
    pthread_mutex_unlock(&g_emu.lock);
    out->kind = DPU_SET_RANKS;
    out->list.nr_ranks = nr_ranks;
    out->list.ranks = a->ranks;
    return DPU_OK;
}

/* The part of dpu_alloc and dpu_alloc_ranks that reads the profile: the machine it describes
 * and how many DPUs each of its ranks exposes. */
static dpu_error_t read_alloc_profile(const char *profile, const struct dpu_set_t *dpu_set,
                                      struct emu_profile *p, uint32_t *per_rank)
{
    if (dpu_set == NULL)
        return DPU_ERR_INTERNAL;
    dpu_error_t status = parse_profile(profile, p);
    if (status != DPU_OK)
        return status;
    *per_rank = usable_per_rank(p);
    return DPU_OK;
}

dpu_error_t dpu_alloc(uint32_t nr_dpus, const char *profile, struct dpu_set_t *dpu_set)
{
    struct emu_profile p;
    uint32_t per_rank;
    dpu_error_t status = read_alloc_profile(profile, dpu_set, &p, &per_rank);
    if (status != DPU_OK)
        return status;
    if (per_rank == 0)
        return DPU_ERR_ALLOCATION;
    uint64_t available = (uint64_t)per_rank * p.nr_ranks;
    if (nr_dpus == DPU_ALLOCATE_ALL)
        nr_dpus = (uint32_t)available;
    if (nr_dpus == 0 || nr_dpus > available)
        return DPU_ERR_ALLOCATION;
    uint32_t nr_ranks = (nr_dpus + per_rank - 1) / per_rank;
    return make_alloc(nr_ranks, nr_dpus, per_rank, dpu_set);
}

dpu_error_t dpu_alloc_ranks(uint32_t nr_ranks, const char *profile, struct dpu_set_t *dpu_set)
{
    struct emu_profile p;
    uint32_t per_rank;
    dpu_error_t status = read_alloc_profile(profile, dpu_set, &p, &per_rank);
    if (status != DPU_OK)
        return status;
    if (nr_ranks == DPU_ALLOCATE_ALL)
        nr_ranks = p.nr_ranks;
    if (per_rank == 0 || nr_ranks == 0 || nr_ranks > p.nr_ranks)
        return DPU_ERR_ALLOCATION;
    return make_alloc(nr_ranks, nr_ranks * per_rank, per_rank, dpu_set);
}

dpu_error_t dpu_free(struct dpu_set_t dpu_set)
{
    struct emu_alloc *a = emu_set_alloc(&dpu_set);
    if (a == NULL || dpu_set.kind != DPU_SET_RANKS || dpu_set.list.ranks != a->ranks ||
        dpu_set.list.nr_ranks != a->nr_ranks)
        return DPU_ERR_INVALID_DPU_SET;
    pthread_mutex_lock(&g_emu.lock);
    emu_wait_idle_locked(&dpu_set);
    for (struct emu_alloc **p = &g_emu.allocs; *p != NULL; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            break;
        }
    }
    for (uint32_t i = 0; i < a->nr_dpus; i++) {
        if (a->dpu_storage[i].program != NULL)
            emu_program_release(a->dpu_storage[i].program);
    }
    pthread_mutex_unlock(&g_emu.lock);
    destroy_alloc(a);
    return DPU_OK;
}

/* ---- sets ---- */

struct emu_alloc *emu_set_alloc(const struct dpu_set_t *set)
{
    struct emu_alloc *candidate = NULL;
    if (set->kind == DPU_SET_DPU) {
        if (set->dpu != NULL)
            candidate = set->dpu->alloc;
    } else if (set->kind == DPU_SET_RANKS) {
        if (set->list.nr_ranks > 0 && set->list.ranks != NULL && set->list.ranks[0] != NULL)
            candidate = set->list.ranks[0]->alloc;
    }
    if (candidate == NULL)
        return NULL;
    pthread_mutex_lock(&g_emu.lock);
    struct emu_alloc *a = g_emu.allocs;
    while (a != NULL && a != candidate)
        a = a->next;
    pthread_mutex_unlock(&g_emu.lock);
    return a;
}

struct dpu_t *emu_set_next(const struct dpu_set_t *set, uint64_t *pos)
{
    if (set->kind == DPU_SET_DPU)
        return (*pos)++ == 0 ? set->dpu : NULL;
    uint32_t r = (uint32_t)(*pos >> 32), i = (uint32_t)*pos;
    while (r < set->list.nr_ranks) {
        struct dpu_rank_t *rank = set->list.ranks[r];
        if (i < rank->nr_dpus) {
            *pos = ((uint64_t)r << 32) | (i + 1);
            return rank->dpus[i];
        }
        r++;
        i = 0;
    }
    *pos = (uint64_t)r << 32;
    return NULL;
}

uint32_t emu_set_count(const struct dpu_set_t *set)
{
    if (set->kind == DPU_SET_DPU)
        return 1;
    uint32_t n = 0;
    for (uint32_t r = 0; r < set->list.nr_ranks; r++)
        n += set->list.ranks[r]->nr_dpus;
    return n;
}

void emu_wait_idle_locked(const struct dpu_set_t *set)
{
    uint64_t pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(set, &pos)) != NULL) {
        while (d->running) {
            d->awaited = true; /* its worker wakes us when it stops */
            pthread_cond_wait(&g_emu.done, &g_emu.lock);
        }
    }
}

void emu_wait_idle(const struct dpu_set_t *set)
{
    pthread_mutex_lock(&g_emu.lock);
    emu_wait_idle_locked(set);
    pthread_mutex_unlock(&g_emu.lock);
}

dpu_error_t dpu_get_nr_ranks(struct dpu_set_t dpu_set, uint32_t *nr_ranks)
{
    if (emu_set_alloc(&dpu_set) == NULL || nr_ranks == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    *nr_ranks = dpu_set.kind == DPU_SET_DPU ? 1 : dpu_set.list.nr_ranks;
    return DPU_OK;
}

dpu_error_t dpu_get_nr_dpus(struct dpu_set_t dpu_set, uint32_t *nr_dpus)
{
    if (emu_set_alloc(&dpu_set) == NULL || nr_dpus == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    *nr_dpus = emu_set_count(&dpu_set);
    return DPU_OK;
}

/* ---- iterators ---- */

struct dpu_set_rank_iterator_t dpu_set_rank_iterator_from(struct dpu_set_t *set)
{
    struct dpu_set_rank_iterator_t it;
    memset(&it, 0, sizeof(it));
    it.set = set;
    if (set->kind == DPU_SET_DPU) {
        it.has_next = set->dpu != NULL;
        it.next = *set;
        it.next_idx = 1;
    } else if (set->list.nr_ranks > 0) {
        it.has_next = true;
        it.next.kind = DPU_SET_RANKS;
        it.next.list.nr_ranks = 1;
        it.next.list.ranks = &set->list.ranks[0];
        it.next_idx = 1;
    }
    return it;
}

void dpu_set_rank_iterator_next(struct dpu_set_rank_iterator_t *it)
{
    it->count++;
    if (it->set->kind == DPU_SET_RANKS && it->next_idx < it->set->list.nr_ranks) {
        it->next.list.ranks = &it->set->list.ranks[it->next_idx];
        it->next_idx++;
    } else {
        it->has_next = false;
    }
}

static void dpu_iterator_advance(struct dpu_set_dpu_iterator_t *it)
{
    while (it->rank_iterator.has_next) {
        struct dpu_set_t r = it->rank_iterator.next;
        if (r.kind == DPU_SET_DPU) {
            if (it->next_idx == 0) {
                it->next = r;
                it->next_idx = 1;
                it->has_next = true;
                return;
            }
        } else {
            struct dpu_rank_t *rank = r.list.ranks[0];
            if (it->next_idx < rank->nr_dpus) {
                it->next.kind = DPU_SET_DPU;
                it->next.dpu = rank->dpus[it->next_idx];
                it->next_idx++;
                it->has_next = true;
                return;
            }
        }
        dpu_set_rank_iterator_next(&it->rank_iterator);
        it->next_idx = 0;
    }
    it->has_next = false;
}

struct dpu_set_dpu_iterator_t dpu_set_dpu_iterator_from(struct dpu_set_t *set)
{
    struct dpu_set_dpu_iterator_t it;
    memset(&it, 0, sizeof(it));
    it.rank_iterator = dpu_set_rank_iterator_from(set);
    dpu_iterator_advance(&it);
    return it;
}

void dpu_set_dpu_iterator_next(struct dpu_set_dpu_iterator_t *it)
{
    it->count++;
    dpu_iterator_advance(it);
}

dpu_error_t dpu_callback(struct dpu_set_t dpu_set, dpu_error_t (*callback)(struct dpu_set_t, uint32_t, void *),
                         void *args, dpu_callback_flags_t flags)
{
    (void)flags; /* every flavour runs synchronously on the calling thread */
    if (emu_set_alloc(&dpu_set) == NULL || callback == NULL)
        return DPU_ERR_INVALID_DPU_SET;
    emu_wait_idle(&dpu_set);
    struct dpu_set_t rank;
    uint32_t i;
    DPU_RANK_FOREACH(dpu_set, rank, i) {
        dpu_error_t status = callback(rank, i, args);
        if (status != DPU_OK)
            return status;
    }
    return DPU_OK;
}
