"""Cython binding to libdpu (the UPMEM SDK's or updlrm's emulator) and the Pythonic :class:`DpuSet`.

Every libdpu status other than ``DPU_OK`` becomes a :class:`DpuError` carrying the SDK's name and
message.  libdpu calls that can block (allocation, load, launch, sync, transfers, log reads) run
without the GIL.  Alignment, bounds and set-shape rules are left to libdpu, so that the error a
caller sees is the one the SDK reports; only Python-side types (buffer protocol, contiguity,
dtypes, lengths shared by a push) are checked here.
"""
import os
from collections import namedtuple
from pathlib import Path

import numpy as np

cimport cython
cimport numpy as cnp
from cpython.memoryview cimport PyMemoryView_GET_BUFFER
from libc.stdint cimport uint8_t, uint32_t
from libc.stdio cimport FILE, SEEK_END, fclose, fflush, fread, fseek, ftell, rewind, tmpfile
from libc.stdlib cimport free, malloc

from pim.libdpu cimport *  # the repository root is on cythonize's include path

from updlrm.errors import InvalidInputError, UpdlrmError
from updlrm.pim.counters import (DMA_COUNTERS, DPU_COUNTERS, MAX_TASKLETS, XFER_RECORD,
                                 XFER_TOTALS, CountersUnavailableError, DpuCounters)


cnp.import_array()

cdef extern from "numpy/arrayobject.h":
    bint PyDataType_REFCHK(cnp.PyArray_Descr *descr)  # the dtype holds Python objects

# The low 16 bits of a status hold the error; DPU_ERR_ASYNC_JOBS and a job type may be OR-ed on.
cdef uint32_t _ERROR_CODE_MASK = 0xFFFF


cdef dict _error_names():
    cdef size_t i
    names = {}
    for i in range(updlrm_dpu_nr_error_names):
        names[<int>updlrm_dpu_error_names[i].code] = updlrm_dpu_error_names[i].name.decode("ascii")
    return names


cdef dict _ERROR_NAMES = _error_names()

# Unsigned 32-bit limit of symbol offsets.
cdef object _MAX_U32 = 0xFFFFFFFF


class DpuError(UpdlrmError):
    """A libdpu call returned a status other than ``DPU_OK``.

    Attributes:
        call: the libdpu function that failed, e.g. ``"dpu_push_xfer"``.
        code: the raw status value (its number depends on the SDK version; compare names).
        code_name: the SDK's name of the error, e.g. ``"DPU_ERR_INVALID_MRAM_ACCESS"``.
        message: the SDK's own text for it (``dpu_error_to_string``).
        async_job: True when the error came from a queued asynchronous job.
    """

    def __init__(self, call: str, code: int, code_name: str, message: str, async_job: bool):
        super().__init__(f"{call} failed: {code_name}: {message}")
        self.call = call
        self.code = code
        self.code_name = code_name
        self.message = message
        self.async_job = async_job

    def __reduce__(self):
        return type(self), (self.call, self.code, self.code_name, self.message, self.async_job)


DpuStatus = namedtuple("DpuStatus", ["done", "fault"])
DpuStatus.__doc__ = "What ``dpu_status`` says about a set: every DPU done, any DPU faulted."


cdef int _check(dpu_error_t status, str call) except -1:
    """Raise the DpuError for ``status`` unless it is DPU_OK."""
    if status == DPU_OK:
        return 0
    cdef uint32_t raw = <uint32_t>status
    cdef int code = <int>(raw & _ERROR_CODE_MASK)
    cdef char *text = dpu_error_to_string(status)
    try:
        message = text.decode("utf-8", "replace") if text != NULL else ""
    finally:
        free(text)  # SDK 2025.1 hands the string to the caller
    raise DpuError(call, <int>status, _ERROR_NAMES.get(code, f"unknown libdpu error {code}"),
                   message, bool(raw & <uint32_t>DPU_ERR_ASYNC_JOBS))


cdef str _label(str name, Py_ssize_t index):
    return name if index < 0 else f"{name}[{index}]"


cdef Py_ssize_t _host_buffer(object data, str name, Py_ssize_t index, list keep, void **address,
                             bint writable=False) except -1:
    """Address and byte size of the memory of ``data`` (NumPy array or bytes-like), no copy.

    Appends to ``keep`` the object that holds that memory: keep it until libdpu is done.
    Errors name the argument ``name`` (item ``index`` of it unless negative).
    """
    cdef cnp.ndarray array
    cdef bint contiguous, has_objects, readonly
    cdef Py_ssize_t nbytes
    if isinstance(data, cnp.ndarray):  # the common case, without a memoryview per buffer
        array = data
        contiguous = cnp.PyArray_IS_C_CONTIGUOUS(array)
        has_objects = PyDataType_REFCHK(cnp.PyArray_DESCR(array))
        readonly = not cnp.PyArray_ISWRITEABLE(array)
        nbytes = cnp.PyArray_NBYTES(array)
        address[0] = cnp.PyArray_DATA(array)
    else:
        try:
            data = memoryview(data)
        except TypeError:
            raise InvalidInputError(f"{_label(name, index)}: expected a NumPy array or a "
                                    f"bytes-like object, got {type(data).__name__}") from None
        contiguous = data.c_contiguous
        has_objects = "O" in data.format
        readonly = data.readonly
        nbytes = data.nbytes
        address[0] = PyMemoryView_GET_BUFFER(data).buf
    if has_objects:
        raise InvalidInputError(f"{_label(name, index)}: object arrays hold pointers, not data")
    if not contiguous:
        raise InvalidInputError(
            f"{_label(name, index)} is not C-contiguous; pass np.ascontiguousarray(...)")
    if nbytes == 0:
        raise InvalidInputError(f"{_label(name, index)} is empty: nothing to transfer")
    if writable and readonly:
        raise InvalidInputError(f"{_label(name, index)} is read-only")
    keep.append(data)
    return nbytes


cdef bytes _symbol_name(object symbol):
    if not isinstance(symbol, str) or not symbol:
        raise InvalidInputError(f"symbol must be a non-empty str, got {symbol!r}")
    return symbol.encode("ascii")


cdef uint32_t _symbol_offset(object offset) except? 0:
    if not isinstance(offset, (int, np.integer)) or isinstance(offset, bool):
        raise InvalidInputError(f"offset must be an int, got {type(offset).__name__}")
    if not 0 <= offset <= _MAX_U32:
        raise InvalidInputError(f"offset must lie in [0, 2**32), got {offset}")
    return <uint32_t>offset


cdef dpu_error_t _push(dpu_set_t dpu_set, void **buffers, size_t nr_buffers,
                       dpu_xfer_t direction, const char *symbol, uint32_t offset, size_t length,
                       dpu_xfer_flags_t flags) noexcept nogil:
    """Prepare ``buffers[i]`` for the i-th DPU of the set (NULL: skip that DPU) and push once."""
    cdef dpu_set_dpu_iterator_t it = dpu_set_dpu_iterator_from(&dpu_set)
    cdef size_t i = 0
    cdef dpu_error_t status = DPU_OK
    while it.has_next and i < nr_buffers:
        if buffers[i] != NULL:
            status = dpu_prepare_xfer(it.next, buffers[i])
            if status != DPU_OK:
                break
        i += 1
        dpu_set_dpu_iterator_next(&it)
    if status == DPU_OK:
        status = dpu_push_xfer(dpu_set, direction, symbol, offset, length, flags)
    if status != DPU_OK:
        # Leave no stale pointer behind for the next push.
        dpu_prepare_xfer(dpu_set, NULL)
    return status


def libdpu_kind() -> str:
    """``"emulator"`` or ``"upmem-sdk"``: the libdpu this extension was built against."""
    return updlrm_libdpu_kind.decode("ascii")


def libdpu_version() -> str:
    """The emulator's identification string, or the SDK version the extension was built with."""
    return updlrm_libdpu_version().decode("utf-8", "replace")


cdef int _require_counters() except -1:
    if not updlrm_counters_available:
        raise CountersUnavailableError(
            "DPU counters are not available on hardware: this build links the UPMEM SDK's "
            "libdpu; they exist only in updlrm's emulator")
    for dtype, size in ((DPU_COUNTERS, updlrm_sizeof_dpu_counters),
                        (DMA_COUNTERS, updlrm_sizeof_dma_counters),
                        (XFER_RECORD, updlrm_sizeof_xfer_record),
                        (XFER_TOTALS, updlrm_sizeof_xfer_totals)):
        if dtype.itemsize != size:
            raise UpdlrmError(f"emulator counter struct of {size} bytes does not match "
                              f"updlrm.pim.counters ({dtype.itemsize} bytes): rebuild updlrm")
    return 0


def _resolve_kernel(kernel) -> str:
    """A path as given, or the binary of a kernel shipped in ``updlrm.pim.kernels``."""
    path = Path(os.fspath(kernel))
    if path.exists() or len(path.parts) > 1:
        return str(path)
    from updlrm.pim import kernels
    return str(kernels.binary_path(str(path)))


# Annotations document the API; arguments are checked by hand (Cython would coerce 1.5 to int).
@cython.annotation_typing(False)
cdef class DpuSet:
    """A set of DPUs: an allocation, one of its ranks, or one of its DPUs.

    ``DpuSet(nr_dpus)`` allocates that many DPUs, ``DpuSet(nr_ranks=r)`` allocates whole ranks,
    ``DpuSet()`` takes every DPU available.  ``profile`` is libdpu's ``key=value,...`` string.
    Use it as a context manager or call :meth:`free`.  ``len()`` is the number of DPUs;
    iterating yields single-DPU views and :attr:`ranks` single-rank views, which share the
    allocation and accept the same calls (``load``, ``copy``, ``read``, ``launch``, ``log``...).

    Typical use::

        with DpuSet(64) as dpus:
            dpus.load("emb_bag")                       # or a path to a DPU binary
            dpus.copy("params", np.array([n], np.uint32))        # one buffer: broadcast
            dpus.copy("__sys_used_mram_end", list(rows))         # one buffer per DPU
            dpus.launch()
            out = dpus.read("results", 16, np.int64)   # [64, 16], one push
            print(dpus.dpus[0].log())

    Not thread-safe: use one allocation from one thread at a time.
    """

    cdef dpu_set_t _set
    cdef DpuSet _top           # the allocation a rank/DPU view belongs to; None on the allocation
    cdef bint _freed           # meaningful on the allocation only
    cdef uint32_t _nr_dpus
    cdef uint32_t _nr_ranks
    cdef list _async_buffers   # on the allocation: host buffers libdpu uses until the next sync
    cdef object _kernel_path

    def __cinit__(self):
        self._freed = True  # becomes False once libdpu hands out a set
        self._async_buffers = []

    def __init__(self, nr_dpus: int | None = None, *, nr_ranks: int | None = None,
                 profile: str = ""):
        if nr_dpus is not None and nr_ranks is not None:
            raise InvalidInputError("give nr_dpus or nr_ranks, not both")
        cdef uint32_t count = DPU_ALLOCATE_ALL
        cdef bint by_ranks = nr_ranks is not None
        requested = nr_ranks if by_ranks else nr_dpus
        if requested is not None:
            if (not isinstance(requested, (int, np.integer)) or isinstance(requested, bool)
                    or not 1 <= requested < DPU_ALLOCATE_ALL):
                raise InvalidInputError(
                    f"{'nr_ranks' if by_ranks else 'nr_dpus'} must be a positive int, "
                    f"got {requested!r}")
            count = <uint32_t>requested
        if not isinstance(profile, str):
            raise InvalidInputError(f"profile must be a str, got {type(profile).__name__}")
        cdef bytes profile_bytes = profile.encode("ascii")
        cdef const char *profile_ptr = NULL  # libdpu's "no profile"
        if profile_bytes:
            profile_ptr = profile_bytes
        cdef dpu_error_t status
        with nogil:
            if by_ranks:
                status = dpu_alloc_ranks(count, profile_ptr, &self._set)
            else:
                status = dpu_alloc(count, profile_ptr, &self._set)
        _check(status, "dpu_alloc_ranks" if by_ranks else "dpu_alloc")
        self._freed = False
        self._count()

    cdef int _count(self) except -1:
        _check(dpu_get_nr_dpus(self._set, &self._nr_dpus), "dpu_get_nr_dpus")
        if self._set.kind == DPU_SET_RANKS:
            _check(dpu_get_nr_ranks(self._set, &self._nr_ranks), "dpu_get_nr_ranks")
        return 0

    # Views point to their allocation, never the other way round: no reference cycles, so the
    # allocation is freed as soon as the last reference to it (or to one of its views) goes.
    @staticmethod
    cdef DpuSet _view(DpuSet top, dpu_set_t dpu_set):
        cdef DpuSet view = DpuSet.__new__(DpuSet)
        view._top = top
        view._set = dpu_set
        view._count()
        return view

    cdef DpuSet _allocation(self):
        return self if self._top is None else self._top

    def __dealloc__(self):
        if self._top is None and not self._freed:
            with nogil:
                dpu_sync(self._set)  # asynchronous jobs may still use the buffers we hold
                dpu_free(self._set)

    cdef int _alive(self) except -1:
        if self._allocation()._freed:
            raise InvalidInputError("this DpuSet was freed")
        return 0

    # --- set structure -------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._nr_dpus

    def __iter__(self):
        return iter(self.dpus)

    def __enter__(self) -> DpuSet:
        return self

    def __exit__(self, *exc_info) -> None:
        self.free()

    def __repr__(self) -> str:
        if self._allocation()._freed:
            state = "freed"
        elif self._set.kind == DPU_SET_DPU:
            state = "single DPU"
        else:
            state = f"{self._nr_dpus} DPUs in {self._nr_ranks} ranks"
        kind = "allocation" if self._top is None else "view"
        return f"<DpuSet {kind}: {state}>"

    @property
    def is_single_dpu(self) -> bool:
        """True for a single-DPU view (what iteration yields)."""
        return self._set.kind == DPU_SET_DPU

    @property
    def nr_ranks(self) -> int:
        """Number of ranks in the set (0 for a single-DPU view)."""
        return self._nr_ranks

    @property
    def dpus(self) -> tuple:
        """Single-DPU views, in libdpu's iteration order (the order of per-DPU buffers)."""
        self._alive()
        if self._set.kind == DPU_SET_DPU:
            return (self,)
        cdef DpuSet top = self._allocation()
        views = []
        cdef dpu_set_dpu_iterator_t it = dpu_set_dpu_iterator_from(&self._set)
        while it.has_next:
            views.append(DpuSet._view(top, it.next))
            dpu_set_dpu_iterator_next(&it)
        return tuple(views)

    @property
    def ranks(self) -> tuple:
        """Single-rank views (empty for a single-DPU view)."""
        self._alive()
        if self._set.kind == DPU_SET_DPU:
            return ()
        cdef DpuSet top = self._allocation()
        views = []
        cdef dpu_set_rank_iterator_t it = dpu_set_rank_iterator_from(&self._set)
        while it.has_next:
            views.append(DpuSet._view(top, it.next))
            dpu_set_rank_iterator_next(&it)
        return tuple(views)

    @property
    def kernel(self) -> str | None:
        """Path of the DPU binary last loaded through this object, or None."""
        return self._kernel_path

    # --- lifetime -----------------------------------------------------------------------------

    def free(self) -> None:
        """Release the allocation (idempotent).  Views die with it; they cannot be freed alone."""
        if self._top is not None:
            raise InvalidInputError("free() the allocation, not one of its rank or DPU views")
        if self._freed:
            return
        cdef dpu_error_t sync_status = DPU_OK
        cdef dpu_error_t free_status
        # libdpu may still point into buffers of asynchronous jobs: finish them first.
        cdef bint pending = len(self._async_buffers) > 0
        with nogil:
            if pending:
                sync_status = dpu_sync(self._set)
            free_status = dpu_free(self._set)
        self._freed = True
        self._async_buffers.clear()
        _check(sync_status, "dpu_sync")
        _check(free_status, "dpu_free")

    # --- program ------------------------------------------------------------------------------

    def load(self, kernel: str | os.PathLike) -> None:
        """Load a DPU binary into every DPU of the set (``dpu_load``).

        ``kernel`` is a path, or the bare name of a kernel shipped in ``updlrm.pim.kernels``.
        WRAM globals and ``__mram`` data get their initial values here, not at each launch.
        """
        self._alive()
        path = _resolve_kernel(kernel)
        cdef bytes path_bytes = os.fsencode(path)
        cdef const char *path_ptr = path_bytes
        cdef dpu_error_t status
        with nogil:
            status = dpu_load(self._set, path_ptr, NULL)
        _check(status, "dpu_load")
        self._kernel_path = path

    # --- transfers ----------------------------------------------------------------------------

    def copy(self, symbol: str, data, offset: int = 0, *, sync: bool = True) -> None:
        """Write host data into DPU symbol ``symbol`` at byte ``offset``.

        ``data`` is one buffer (NumPy array or bytes-like), broadcast to every DPU
        (``dpu_broadcast_to``), or a list/tuple with one buffer per DPU in :attr:`dpus` order,
        all of the same byte size, ``None`` to skip a DPU (``dpu_prepare_xfer`` +
        ``dpu_push_xfer``).  Buffers are used in place, never copied.  ``sync=False`` queues the
        transfer (``DPU_XFER_ASYNC``); the buffers are kept alive until :meth:`sync`.
        """
        self._alive()
        cdef bytes name = _symbol_name(symbol)
        cdef uint32_t off = _symbol_offset(offset)
        cdef dpu_xfer_flags_t flags = DPU_XFER_DEFAULT if sync else DPU_XFER_ASYNC
        if isinstance(data, (list, tuple)):
            self._copy_each(name, data, off, flags)
            return
        keep = []
        cdef void *src
        cdef size_t length = _host_buffer(data, "data", -1, keep, &src)
        cdef const char *name_ptr = name
        cdef dpu_error_t status
        with nogil:
            status = dpu_broadcast_to(self._set, name_ptr, off, src, length, flags)
        _check(status, "dpu_broadcast_to")
        if not sync:
            self._allocation()._async_buffers.extend(keep)

    cdef int _copy_each(self, bytes name, object data, uint32_t off,
                        dpu_xfer_flags_t flags) except -1:
        if len(data) != self._nr_dpus:
            raise InvalidInputError(
                f"data has {len(data)} buffers for {self._nr_dpus} DPUs: give one per DPU "
                f"(None skips a DPU) or a single buffer to broadcast")
        keep = []
        cdef void **buffers = <void **>malloc(self._nr_dpus * sizeof(void *))
        if buffers == NULL:
            raise MemoryError()
        cdef Py_ssize_t length = -1
        cdef Py_ssize_t nbytes
        cdef Py_ssize_t i = 0
        cdef dpu_error_t status
        cdef const char *name_ptr = name
        try:
            for item in data:
                if item is None:
                    buffers[i] = NULL
                else:
                    nbytes = _host_buffer(item, "data", i, keep, &buffers[i])
                    if length < 0:
                        length = nbytes
                    elif nbytes != length:
                        raise InvalidInputError(
                            f"data[{i}] has {nbytes} bytes, earlier buffers {length}: one push "
                            f"moves the same length to every DPU, so pad them to a common size")
                i += 1
            if length < 0:
                return 0  # every DPU skipped
            with nogil:
                status = _push(self._set, buffers, self._nr_dpus, DPU_XFER_TO_DPU, name_ptr,
                               off, <size_t>length, flags)
            _check(status, "dpu_push_xfer")
        finally:
            free(buffers)
        if flags == DPU_XFER_ASYNC:
            self._allocation()._async_buffers.extend(keep)
        return 0

    def read(self, symbol: str, shape, dtype=np.uint8, offset: int = 0, *,
             sync: bool = True) -> np.ndarray:
        """Read ``shape`` elements of ``dtype`` from DPU symbol ``symbol`` at byte ``offset``.

        One ``DPU_XFER_FROM_DPU`` push fills a new array of shape ``(len(self), *shape)`` in
        place (row i is the i-th DPU of :attr:`dpus`); a single-DPU view returns ``shape``.
        ``read(sym, nbytes)`` reads raw bytes.  ``sync=False`` queues the push and returns the
        array at once; its contents are valid after :meth:`sync`.
        """
        self._alive()
        cdef bytes name = _symbol_name(symbol)
        cdef uint32_t off = _symbol_offset(offset)
        dt = np.dtype(dtype)
        if dt.hasobject:
            raise InvalidInputError(f"dtype {dt} holds Python objects, not DPU data")
        dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
        if not all(isinstance(d, (int, np.integer)) and d >= 0 for d in dims):
            raise InvalidInputError(f"shape must be non-negative ints, got {shape!r}")
        row_bytes = int(np.prod(dims, dtype=np.int64)) * dt.itemsize
        if row_bytes == 0:
            raise InvalidInputError(f"shape {dims} of {dt} is empty: nothing to read")
        single = self._set.kind == DPU_SET_DPU
        cdef cnp.ndarray out = np.empty(dims if single else (self._nr_dpus, *dims), dtype=dt)
        cdef uint8_t *base = <uint8_t *>cnp.PyArray_DATA(out)
        cdef size_t row = <size_t>row_bytes
        cdef void **buffers = <void **>malloc(self._nr_dpus * sizeof(void *))
        if buffers == NULL:
            raise MemoryError()
        cdef uint32_t i
        for i in range(self._nr_dpus):
            buffers[i] = base + i * row
        cdef const char *name_ptr = name
        cdef dpu_xfer_flags_t flags = DPU_XFER_DEFAULT if sync else DPU_XFER_ASYNC
        cdef dpu_error_t status
        with nogil:
            status = _push(self._set, buffers, self._nr_dpus, DPU_XFER_FROM_DPU, name_ptr, off,
                           row, flags)
        free(buffers)
        _check(status, "dpu_push_xfer")
        if not sync:
            self._allocation()._async_buffers.append(out)
        return out

    def copy_from(self, symbol: str, out, offset: int = 0) -> None:
        """Fill the writable buffer ``out`` from ``symbol`` of one DPU (``dpu_copy_from``).

        libdpu accepts a single-DPU set only; on larger sets use :meth:`read`.
        """
        self._alive()
        cdef bytes name = _symbol_name(symbol)
        cdef uint32_t off = _symbol_offset(offset)
        keep = []
        cdef void *dst
        cdef size_t length = _host_buffer(out, "out", -1, keep, &dst, writable=True)
        cdef const char *name_ptr = name
        cdef dpu_error_t status
        with nogil:
            status = dpu_copy_from(self._set, name_ptr, off, dst, length)
        _check(status, "dpu_copy_from")

    # --- execution ----------------------------------------------------------------------------

    def launch(self, sync: bool = True) -> None:
        """Boot every DPU of the set (``dpu_launch``); with ``sync=False`` return once booted."""
        self._alive()
        cdef dpu_launch_policy_t policy = DPU_SYNCHRONOUS if sync else DPU_ASYNCHRONOUS
        cdef dpu_error_t status
        with nogil:
            status = dpu_launch(self._set, policy)
        _check(status, "dpu_launch")
        if sync and self._top is None:
            self._async_buffers.clear()

    def sync(self) -> None:
        """Wait for the set's asynchronous launches and transfers (``dpu_sync``)."""
        self._alive()
        cdef dpu_error_t status
        with nogil:
            status = dpu_sync(self._set)
        _check(status, "dpu_sync")
        if self._top is None:
            self._async_buffers.clear()

    def status(self) -> DpuStatus:
        """``dpu_status``: whether every DPU of the set is done and whether any faulted."""
        self._alive()
        cdef c_bool done = False
        cdef c_bool fault = False
        cdef dpu_error_t status
        with nogil:
            status = dpu_status(self._set, &done, &fault)
        _check(status, "dpu_status")
        return DpuStatus(bool(done), bool(fault))

    def log(self):
        """The DPU's ``printf`` output of its last launch (``dpu_log_read``) as a str.

        On a set of several DPUs: a list with one str per DPU, in :attr:`dpus` order.
        """
        self._alive()
        if self._set.kind != DPU_SET_DPU:
            return [dpu.log() for dpu in self.dpus]
        cdef FILE *stream = tmpfile()
        if stream == NULL:
            raise OSError("tmpfile() failed: no temporary file for the DPU log")
        cdef dpu_error_t status
        cdef long size
        try:
            with nogil:
                status = dpu_log_read(self._set, stream)
            _check(status, "dpu_log_read")
            fflush(stream)
            fseek(stream, 0, SEEK_END)
            size = ftell(stream)
            rewind(stream)
            text = bytearray(size)
            if size and fread(<char *>text, 1, size, stream) != <size_t>size:
                raise OSError("could not read back the DPU log")
        finally:
            fclose(stream)
        return text.decode("utf-8", "replace")

    # --- emulator counters --------------------------------------------------------------------

    def counters(self) -> DpuCounters:
        """The emulator's counters for this set (see :class:`updlrm.pim.counters.DpuCounters`).

        Raises :class:`~updlrm.pim.counters.CountersUnavailableError` with the real SDK.
        """
        self._alive()
        _require_counters()
        cdef cnp.ndarray per_dpu = np.zeros(self._nr_dpus, dtype=DPU_COUNTERS)
        cdef cnp.ndarray last = np.zeros((self._nr_dpus, MAX_TASKLETS), dtype=DMA_COUNTERS)
        cdef cnp.ndarray nr_tasklets = np.zeros(self._nr_dpus, dtype=np.uint32)
        cdef uint8_t *per_dpu_ptr = <uint8_t *>cnp.PyArray_DATA(per_dpu)
        cdef uint8_t *last_ptr = <uint8_t *>cnp.PyArray_DATA(last)
        cdef uint32_t *nr_tasklets_ptr = <uint32_t *>cnp.PyArray_DATA(nr_tasklets)
        cdef size_t last_row = MAX_TASKLETS * updlrm_sizeof_dma_counters
        cdef dpu_error_t status = DPU_OK
        cdef size_t i = 0
        cdef dpu_set_dpu_iterator_t it = dpu_set_dpu_iterator_from(&self._set)
        while it.has_next and status == DPU_OK:
            status = updlrm_get_dpu_counters(it.next, per_dpu_ptr + i * updlrm_sizeof_dpu_counters)
            if status == DPU_OK:
                status = updlrm_get_last_launch(it.next, last_ptr + i * last_row, MAX_TASKLETS,
                                                nr_tasklets_ptr + i)
            i += 1
            dpu_set_dpu_iterator_next(&it)
        _check(status, "dpu_emu_get_dpu_counters")

        cdef cnp.ndarray totals = np.zeros((), dtype=XFER_TOTALS)
        _check(updlrm_get_xfer_totals(self._set, cnp.PyArray_DATA(totals)),
               "dpu_emu_get_xfer_totals")
        cdef uint32_t count = 0
        _check(updlrm_get_xfer_log(self._set, NULL, 0, &count), "dpu_emu_get_xfer_log")
        cdef cnp.ndarray transfers = np.zeros(count, dtype=XFER_RECORD)
        if count:
            _check(updlrm_get_xfer_log(self._set, cnp.PyArray_DATA(transfers), count, &count),
                   "dpu_emu_get_xfer_log")
        return DpuCounters(dpus=per_dpu, last_launch=last, nr_tasklets=nr_tasklets,
                           transfers=transfers, totals=totals[()])

    def reset_counters(self) -> None:
        """Zero the emulator's counters of these DPUs and their allocation's transfer history."""
        self._alive()
        _require_counters()
        _check(updlrm_reset_counters(self._set), "dpu_emu_reset_counters")
