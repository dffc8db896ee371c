/* Kernel programs: ELF inspection, per-worker private instances (dlopen of a private copy),
 * per-DPU images of the kernel's WRAM globals, dpu_load and symbols. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "emu_internal.h"

#if defined(__x86_64__)
#define EMU_ELF_MACHINE EM_X86_64
#elif defined(__aarch64__)
#define EMU_ELF_MACHINE EM_AARCH64
#else
#define EMU_ELF_MACHINE EM_NONE
#endif

#ifdef EMU_ASAN
/* Kernel globals are separated by ASan redzones: copy them without the checked memcpy. */
__attribute__((no_sanitize_address, optimize("no-tree-loop-distribute-patterns"))) void
emu_raw_copy(void *dst, const void *src, size_t n)
{
    volatile uint8_t *d = dst;
    const volatile uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
}
#else
void emu_raw_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
#endif

/* ---- ELF inspection ---- */

static uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

struct elf_view {
    const uint8_t *data;
    size_t size;
    const Elf64_Ehdr *eh;
    const Elf64_Shdr *sh;
    const char *shstr;
};

static bool in_file(const struct elf_view *v, uint64_t off, uint64_t len)
{
    return off <= v->size && len <= v->size - off;
}

static const Elf64_Shdr *find_section(const struct elf_view *v, const char *name, uint32_t *index)
{
    for (uint32_t i = 0; i < v->eh->e_shnum; i++) {
        const Elf64_Shdr *s = &v->sh[i];
        if (strcmp(v->shstr + s->sh_name, name) == 0) {
            if (index != NULL)
                *index = i;
            return s;
        }
    }
    return NULL;
}

static dpu_error_t open_view(struct elf_view *v, const uint8_t *data, size_t size)
{
    v->data = data;
    v->size = size;
    if (size < sizeof(Elf64_Ehdr) || memcmp(data, ELFMAG, SELFMAG) != 0)
        return DPU_ERR_ELF_INVALID_FILE;
    v->eh = (const Elf64_Ehdr *)data;
    if (v->eh->e_ident[EI_CLASS] != ELFCLASS64 || v->eh->e_type != ET_DYN || v->eh->e_machine != EMU_ELF_MACHINE)
        return DPU_ERR_ELF_INVALID_FILE; /* e.g. a real DPU binary: rebuild with updlrm.pim.toolchain cc */
    if (v->eh->e_shentsize != sizeof(Elf64_Shdr) || !in_file(v, v->eh->e_shoff, (uint64_t)v->eh->e_shnum * sizeof(Elf64_Shdr)) ||
        v->eh->e_shstrndx >= v->eh->e_shnum)
        return DPU_ERR_ELF_INVALID_FILE;
    v->sh = (const Elf64_Shdr *)(data + v->eh->e_shoff);
    const Elf64_Shdr *str = &v->sh[v->eh->e_shstrndx];
    if (!in_file(v, str->sh_offset, str->sh_size) || str->sh_size == 0 || data[str->sh_offset + str->sh_size - 1] != 0)
        return DPU_ERR_ELF_INVALID_FILE;
    v->shstr = (const char *)data + str->sh_offset;
    for (uint32_t i = 0; i < v->eh->e_shnum; i++) {
        if (v->sh[i].sh_name >= str->sh_size)
            return DPU_ERR_ELF_INVALID_FILE;
    }
    return DPU_OK;
}

static dpu_error_t add_symbol(struct dpu_program_t *p, const char *name, uint32_t address, uint32_t size)
{
    struct emu_symbol *grown = realloc(p->symbols, (p->nr_symbols + 1) * sizeof(*grown));
    if (grown == NULL)
        return DPU_ERR_SYSTEM;
    p->symbols = grown;
    grown[p->nr_symbols].name = strdup(name);
    if (grown[p->nr_symbols].name == NULL)
        return DPU_ERR_SYSTEM;
    grown[p->nr_symbols].symbol.address = address;
    grown[p->nr_symbols].symbol.size = size;
    p->nr_symbols++;
    return DPU_OK;
}

/** Reads the kernel descriptor's plain fields from the file (no need to run the kernel). */
static dpu_error_t read_info(const struct elf_view *v, const Elf64_Sym *sym, struct dpu_program_t *p)
{
    if (sym->st_shndx == SHN_UNDEF || sym->st_shndx >= v->eh->e_shnum || sym->st_size < 16)
        return DPU_ERR_ELF_INVALID_FILE;
    const Elf64_Shdr *s = &v->sh[sym->st_shndx];
    uint64_t off = s->sh_offset + (sym->st_value - s->sh_addr);
    if (s->sh_type == SHT_NOBITS || !in_file(v, off, 16))
        return DPU_ERR_ELF_INVALID_FILE;
    uint32_t fields[4];
    memcpy(fields, v->data + off, sizeof(fields));
    if (fields[0] != DPU_EMU_KERNEL_MAGIC || fields[1] != DPU_EMU_KERNEL_ABI || fields[2] < 1 ||
        fields[2] > EMU_MAX_TASKLETS)
        return DPU_ERR_ELF_INVALID_FILE;
    p->nr_tasklets = fields[2];
    p->stack_size = fields[3];
    return DPU_OK;
}

static dpu_error_t inspect(struct dpu_program_t *p)
{
    struct elf_view v;
    dpu_error_t status = open_view(&v, p->elf, p->elf_size);
    if (status != DPU_OK)
        return status;

    static const char *const range_names[EMU_NR_RANGES] = {".data", ".bss", "dpu_host"};
    uint64_t image = 0;
    for (int r = 0; r < EMU_NR_RANGES; r++) {
        const Elf64_Shdr *s = find_section(&v, range_names[r], NULL);
        if (s == NULL)
            continue;
        p->ranges[r].addr = s->sh_addr;
        p->ranges[r].size = s->sh_size;
        /* keep the address modulo 8, so that WRAM symbol addresses keep their alignment */
        p->ranges[r].image_offset = align_up(image, 8) + (s->sh_addr & 7);
        image = p->ranges[r].image_offset + s->sh_size;
    }
    p->image_size = image;
    p->host_addr = p->ranges[2].addr;

    uint32_t mram_index = UINT32_MAX, noinit_index = UINT32_MAX, host_index = UINT32_MAX;
    const Elf64_Shdr *mram = find_section(&v, "dpu_mram", &mram_index);
    const Elf64_Shdr *noinit = find_section(&v, "dpu_mram_noinit", &noinit_index);
    find_section(&v, "dpu_host", &host_index);
    if (noinit != NULL) {
        p->noinit_addr = noinit->sh_addr;
        p->noinit_size = noinit->sh_size;
    }
    p->mram_offset = (uint32_t)align_up(p->noinit_size, 8);
    if (mram != NULL) {
        if (mram->sh_type == SHT_NOBITS || !in_file(&v, mram->sh_offset, mram->sh_size))
            return DPU_ERR_ELF_INVALID_FILE;
        p->mram_addr = mram->sh_addr;
        p->mram_size = mram->sh_size;
        p->mram_file_offset = mram->sh_offset;
    }
    uint64_t heap = align_up(p->mram_offset + p->mram_size, 8);
    if (heap > EMU_MRAM_SIZE)
        return DPU_ERR_ELF_INVALID_FILE; /* MRAM variables larger than the MRAM */
    p->heap_offset = (uint32_t)heap;

    uint32_t symtab_index;
    const Elf64_Shdr *symtab = find_section(&v, ".symtab", &symtab_index);
    if (symtab == NULL || symtab->sh_link >= v.eh->e_shnum || !in_file(&v, symtab->sh_offset, symtab->sh_size))
        return DPU_ERR_ELF_INVALID_FILE; /* stripped kernel: symbols are needed */
    const Elf64_Shdr *strtab = &v.sh[symtab->sh_link];
    if (!in_file(&v, strtab->sh_offset, strtab->sh_size) || strtab->sh_size == 0)
        return DPU_ERR_ELF_INVALID_FILE;
    const char *names = (const char *)p->elf + strtab->sh_offset;
    const Elf64_Sym *syms = (const Elf64_Sym *)(p->elf + symtab->sh_offset);
    size_t nr_syms = symtab->sh_size / sizeof(Elf64_Sym);
    bool have_info = false;
    for (size_t i = 0; i < nr_syms; i++) {
        const Elf64_Sym *s = &syms[i];
        if (s->st_name >= strtab->sh_size)
            return DPU_ERR_ELF_INVALID_FILE;
        const char *name = names + s->st_name;
        if (strcmp(name, DPU_EMU_KERNEL_INFO_SYMBOL) == 0) {
            status = read_info(&v, s, p);
            if (status != DPU_OK)
                return status;
            have_info = true;
            continue;
        }
        if (ELF64_ST_TYPE(s->st_info) != STT_OBJECT || s->st_size == 0 || *name == '\0')
            continue;
        if (s->st_shndx == host_index) {
            uint64_t address = p->ranges[2].image_offset + (s->st_value - p->host_addr);
            status = add_symbol(p, name, (uint32_t)address, (uint32_t)s->st_size);
        } else if (s->st_shndx == noinit_index) {
            status = add_symbol(p, name, DPU_EMU_MRAM_BASE + (uint32_t)(s->st_value - p->noinit_addr), (uint32_t)s->st_size);
        } else if (s->st_shndx == mram_index) {
            status = add_symbol(p, name, DPU_EMU_MRAM_BASE + p->mram_offset + (uint32_t)(s->st_value - p->mram_addr),
                                (uint32_t)s->st_size);
        }
        if (status != DPU_OK)
            return status;
    }
    if (!have_info)
        return DPU_ERR_ELF_INVALID_FILE; /* not built by updlrm.pim.toolchain cc */
    status = add_symbol(p, EMU_SYMBOL_HEAP, DPU_EMU_MRAM_BASE + p->heap_offset, EMU_MRAM_SIZE - p->heap_offset);
    if (status != DPU_OK)
        return status;

    uint64_t wram_used = p->ranges[0].size + p->ranges[1].size + p->ranges[2].size +
                         (uint64_t)p->nr_tasklets * p->stack_size;
    if (wram_used > EMU_WRAM_SIZE)
        return DPU_ERR_ELF_INVALID_FILE; /* would not fit the 64 KiB WRAM */
    p->wram_heap_size = (uint32_t)(EMU_WRAM_SIZE - wram_used);
    return DPU_OK;
}

static void close_copy(void *handle, int memfd)
{
    dlclose(handle);
    if (memfd >= 0)
        close(memfd);
}

static void program_free(struct dpu_program_t *p)
{
    for (uint32_t w = 0; w < EMU_MAX_WORKERS; w++) {
        struct emu_kernel_copy *c = &p->copies[w];
        if (c->handle != NULL) {
            emu_image_transfer(p, c, c->pristine, true); /* destructors see the load-time state */
            close_copy(c->handle, c->memfd);
        }
        free(c->pristine);
    }
    for (uint32_t i = 0; i < p->nr_symbols; i++)
        free(p->symbols[i].name);
    free(p->symbols);
    free(p->elf);
    pthread_mutex_destroy(&p->copies_lock);
    free(p);
}

void emu_program_release(struct dpu_program_t *p)
{
    if (--p->refcount == 0)
        program_free(p);
}

/* ---- per-worker kernel instances ---- */

void emu_image_transfer(const struct dpu_program_t *p, const struct emu_kernel_copy *c, uint8_t *image, bool to_kernel)
{
    for (int r = 0; r < EMU_NR_RANGES; r++) {
        const struct emu_range *range = &p->ranges[r];
        if (range->size == 0)
            continue;
        uint8_t *live = (uint8_t *)(c->base + range->addr);
        if (to_kernel)
            emu_raw_copy(live, image + range->image_offset, range->size);
        else
            emu_raw_copy(image + range->image_offset, live, range->size);
    }
}

static bool write_all(int fd, const uint8_t *data, size_t size)
{
    size_t done = 0;
    while (done < size) {
        ssize_t n = write(fd, data + done, size - done);
        if (n <= 0)
            return false;
        done += (size_t)n;
    }
    return true;
}

/** dlopen()s a private copy of the kernel: every copy has its own globals. The copy is an
 * anonymous memory file (no disk, no noexec /tmp trouble) or, failing that, a temporary file.
 * The memory file stays open while the copy is loaded: glibc recognises loaded objects by
 * path, and a reused descriptor number must not name a copy still in use. */
static void *open_private_copy(const struct dpu_program_t *p, int *memfd_out, char *err, size_t errlen)
{
    char path[4096];
    *memfd_out = -1;
#ifdef MFD_CLOEXEC
    int memfd = memfd_create("dpuemu-kernel", MFD_CLOEXEC);
    if (memfd >= 0) {
        void *handle = NULL;
        if (write_all(memfd, p->elf, p->elf_size)) {
            snprintf(path, sizeof(path), "/proc/self/fd/%d", memfd);
            handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        }
        if (handle != NULL) {
            *memfd_out = memfd;
            return handle;
        }
        close(memfd);
    }
#endif
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof(path), "%s/dpuemu-kernel-XXXXXX", dir != NULL && *dir != '\0' ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a kernel copy in %s: %s", path, strerror(errno));
        return NULL;
    }
    bool written = write_all(fd, p->elf, p->elf_size);
    close(fd);
    void *handle = written ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    unlink(path);
    if (handle == NULL)
        snprintf(err, errlen, "cannot load the kernel: %s", written ? dlerror() : strerror(errno));
    return handle;
}

static bool open_copy(struct dpu_program_t *p, struct emu_kernel_copy *c, char *err, size_t errlen)
{
    int memfd;
    void *handle = open_private_copy(p, &memfd, err, errlen);
    if (handle == NULL)
        return false;
    c->memfd = memfd;
    struct link_map *map = NULL;
    const struct dpu_emu_kernel_info *info = dlsym(handle, DPU_EMU_KERNEL_INFO_SYMBOL);
    if (info == NULL || dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == NULL) {
        snprintf(err, errlen, "the kernel has no %s", DPU_EMU_KERNEL_INFO_SYMBOL);
        close_copy(handle, memfd);
        return false;
    }
    c->pristine = calloc(1, p->image_size + 1);
    if (c->pristine == NULL) {
        snprintf(err, errlen, "out of memory");
        close_copy(handle, memfd);
        return false;
    }
    c->handle = handle;
    c->base = (uintptr_t)map->l_addr;
    c->info = info;
    emu_image_transfer(p, c, c->pristine, false);
    return true;
}

const struct emu_kernel_copy *emu_program_copy(struct dpu_program_t *p, uint32_t worker, char *err, size_t errlen)
{
    struct emu_kernel_copy *c = &p->copies[worker];
    pthread_mutex_lock(&p->copies_lock);
    bool ok = c->handle != NULL || open_copy(p, c, err, errlen);
    pthread_mutex_unlock(&p->copies_lock);
    return ok ? c : NULL;
}

dpu_error_t emu_dpu_image(struct dpu_t *dpu)
{
    if (dpu->image != NULL)
        return DPU_OK;
    char err[512];
    const struct emu_kernel_copy *c = emu_program_copy(dpu->program, dpu->worker, err, sizeof(err));
    if (c == NULL) {
        fprintf(stderr, "dpu emulator: %s\n", err);
        return DPU_ERR_ELF_INVALID_FILE;
    }
    dpu->image = malloc(dpu->program->image_size + 1);
    if (dpu->image == NULL)
        return DPU_ERR_SYSTEM;
    memcpy(dpu->image, c->pristine, dpu->program->image_size);
    return DPU_OK;
}

/* ---- loading ---- */

static dpu_error_t load_bytes(struct dpu_set_t set, uint8_t *elf, size_t size, struct dpu_program_t **program)
{
    if (emu_set_alloc(&set) == NULL) {
        free(elf);
        return DPU_ERR_INVALID_DPU_SET;
    }
    struct dpu_program_t *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        free(elf);
        return DPU_ERR_SYSTEM;
    }
    pthread_mutex_init(&p->copies_lock, NULL);
    p->elf = elf;
    p->elf_size = size;
    dpu_error_t status = inspect(p);
    /* Open the instance of the first DPU's worker now, so that a kernel that cannot be
     * loaded (missing library, wrong toolchain) fails here rather than at launch. */
    uint64_t pos = 0;
    struct dpu_t *first = emu_set_next(&set, &pos);
    if (status == DPU_OK && first != NULL) {
        char err[512];
        if (emu_program_copy(p, first->worker, err, sizeof(err)) == NULL) {
            fprintf(stderr, "dpu emulator: %s\n", err);
            status = DPU_ERR_ELF_INVALID_FILE;
        }
    }
    if (status != DPU_OK) {
        program_free(p);
        return status;
    }

    pthread_mutex_lock(&g_emu.lock);
    pos = 0;
    struct dpu_t *d;
    while ((d = emu_set_next(&set, &pos)) != NULL) {
        if (d->running) {
            pthread_mutex_unlock(&g_emu.lock);
            if (p->refcount == 0)
                program_free(p);
            return DPU_ERR_DPU_ALREADY_RUNNING;
        }
    }
    pos = 0;
    while ((d = emu_set_next(&set, &pos)) != NULL) {
        p->refcount++;
        if (d->program != NULL)
            emu_program_release(d->program);
        d->program = p;
        free(d->image);
        d->image = NULL;
        d->heap_used = 0;
        d->fault = false;
        d->log_len = 0;
        d->log_truncated = false;
        d->xfer_buffer = NULL;
        if (p->mram_size > 0)
            memcpy(d->mram + p->mram_offset, p->elf + p->mram_file_offset, p->mram_size);
    }
    if (p->refcount == 0) { /* empty set */
        pthread_mutex_unlock(&g_emu.lock);
        program_free(p);
        return DPU_ERR_INVALID_DPU_SET;
    }
    pthread_mutex_unlock(&g_emu.lock);
    if (program != NULL)
        *program = p;
    return DPU_OK;
}

static dpu_error_t read_file(const char *path, uint8_t **out, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return DPU_ERR_ELF_NO_SUCH_FILE;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return DPU_ERR_ELF_INVALID_FILE;
    }
    uint8_t *buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        close(fd);
        return DPU_ERR_SYSTEM;
    }
    size_t done = 0;
    while (done < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);
        if (n <= 0) {
            free(buf);
            close(fd);
            return DPU_ERR_ELF_INVALID_FILE;
        }
        done += (size_t)n;
    }
    close(fd);
    *out = buf;
    *size = done;
    return DPU_OK;
}

dpu_error_t dpu_load(struct dpu_set_t dpu_set, const char *binary_path, struct dpu_program_t **program)
{
    if (binary_path == NULL)
        return DPU_ERR_ELF_NO_SUCH_FILE;
    uint8_t *elf;
    size_t size;
    dpu_error_t status = read_file(binary_path, &elf, &size);
    if (status != DPU_OK)
        return status;
    return load_bytes(dpu_set, elf, size, program);
}

dpu_error_t dpu_load_from_memory(struct dpu_set_t dpu_set, uint8_t *buffer, size_t buffer_size,
                                 struct dpu_program_t **program)
{
    if (buffer == NULL || buffer_size == 0)
        return DPU_ERR_ELF_INVALID_FILE;
    uint8_t *elf = malloc(buffer_size);
    if (elf == NULL)
        return DPU_ERR_SYSTEM;
    memcpy(elf, buffer, buffer_size);
    return load_bytes(dpu_set, elf, buffer_size, program);
}

dpu_error_t dpu_load_from_incbin(struct dpu_set_t dpu_set, struct dpu_incbin_t *incbin, struct dpu_program_t **program)
{
    if (incbin == NULL)
        return DPU_ERR_ELF_INVALID_FILE;
    if (incbin->buffer != NULL && incbin->size > 0)
        return dpu_load_from_memory(dpu_set, incbin->buffer, incbin->size, program);
    return dpu_load(dpu_set, incbin->path, program);
}

dpu_error_t dpu_get_symbol(struct dpu_program_t *program, const char *symbol_name, struct dpu_symbol_t *symbol)
{
    if (program == NULL)
        return DPU_ERR_NO_PROGRAM_LOADED;
    if (symbol_name == NULL || symbol == NULL)
        return DPU_ERR_UNKNOWN_SYMBOL;
    for (uint32_t i = 0; i < program->nr_symbols; i++) {
        if (strcmp(program->symbols[i].name, symbol_name) == 0) {
            *symbol = program->symbols[i].symbol;
            return DPU_OK;
        }
    }
    return DPU_ERR_UNKNOWN_SYMBOL;
}
