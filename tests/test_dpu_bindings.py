"""The libdpu binding through Python: every host-API rule gives the SDK's error by name, data
round-trips through DPU symbols, launches (sync, async, persistence), logs and counters.

Kernels come from tests/dpu_programs and are compiled with ``updlrm.pim.toolchain cc``; the
expected values are computed independently with NumPy.  Tests not marked ``emulator_only`` are
meant to pass on UPMEM hardware too (not run there yet: no SDK on the development machine).
"""
from __future__ import annotations

import math
import pickle
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from dpu_programs.build import build_kernel
from updlrm.errors import InvalidInputError, UpdlrmError
from updlrm.pim import DpuError, DpuSet, backend_info, toolchain
from updlrm.pim._dpu import libdpu_kind

NR_TASKLETS = 4
MRAM_WORDS = 64  # symbols/dpu.c: __mram_noinit uint64_t mram_words[64]
WRAM_WORDS = 8   # symbols/dpu.c: __host uint32_t wram_words[8]
BLOCK_BYTES = 256  # vector_add/common.h
EMULATOR = libdpu_kind() == "emulator"
# symbols/dpu.c busy work, so that a launch still runs when launch(sync=False) returns: about
# 0.06 s per DPU in the emulator (measured); the hardware figure is an estimate, not measured.
SPIN_ROUNDS = 200_000_000 if EMULATOR else 2_000_000

# Emulator-only: its counters, profile keys, machine size, fault log and what the SDK leaves
# undefined (a DMA of 12 bytes is a fault in the emulator, undefined behaviour on hardware).
emulator_only = pytest.mark.skipif(not EMULATOR, reason="checks the emulator's libdpu")


@pytest.fixture(scope="module")
def kernels(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dpu_kernels")
    return {
        "symbols": build_kernel("symbols", out, NR_TASKLETS),
        "persistence": build_kernel("persistence", out, NR_TASKLETS),
        "vector_add": build_kernel("vector_add", out, 11),
    }


@pytest.fixture
def dpus(kernels):
    with DpuSet(8) as dpu_set:
        dpu_set.load(kernels["symbols"])
        yield dpu_set


def sdk_error(code_name: str):
    """pytest.raises for a DpuError whose SDK name is ``code_name``; checks the SDK message."""
    return pytest.raises(DpuError, match=rf"\b{code_name}\b")


# --- every host-API rule: the SDK's error, by name -----------------------------------------------

@pytest.mark.parametrize("call, code_name", [
    (lambda s: s.copy("mram_words", np.zeros(2, np.uint64), offset=4),
     "DPU_ERR_INVALID_MRAM_ACCESS"),
    (lambda s: s.copy("mram_words", np.zeros(12, np.uint8)), "DPU_ERR_INVALID_MRAM_ACCESS"),
    (lambda s: s.copy("mram_words", [np.zeros(12, np.uint8)] * len(s)),
     "DPU_ERR_INVALID_MRAM_ACCESS"),
    (lambda s: s.read("mram_words", 4, offset=8), "DPU_ERR_INVALID_MRAM_ACCESS"),
    (lambda s: s.copy("wram_words", np.zeros(1, np.uint32), offset=2),
     "DPU_ERR_INVALID_WRAM_ACCESS"),
    (lambda s: s.copy("wram_words", np.zeros(6, np.uint8)), "DPU_ERR_INVALID_WRAM_ACCESS"),
    (lambda s: s.read("wram_words", 2), "DPU_ERR_INVALID_WRAM_ACCESS"),
    (lambda s: s.copy("wram_words", np.zeros(WRAM_WORDS + 1, np.uint32)),
     "DPU_ERR_INVALID_SYMBOL_ACCESS"),
    (lambda s: s.read("mram_words", 8, np.uint64, offset=8 * (MRAM_WORDS - 4)),
     "DPU_ERR_INVALID_SYMBOL_ACCESS"),
    (lambda s: s.copy("no_such_symbol", np.zeros(8, np.uint8)), "DPU_ERR_UNKNOWN_SYMBOL"),
    (lambda s: s.read("no_such_symbol", 8), "DPU_ERR_UNKNOWN_SYMBOL"),
    (lambda s: s.copy_from("wram_words", np.zeros(WRAM_WORDS, np.uint32)),
     "DPU_ERR_INVALID_DPU_SET"),
], ids=["mram-offset", "mram-length", "mram-length-push", "mram-read-length", "wram-offset",
        "wram-length", "wram-read-length", "wram-bounds", "mram-bounds", "unknown-symbol-write",
        "unknown-symbol-read", "copy-from-several-dpus"])
def test_host_api_rule_violations_raise_the_sdk_error(dpus, call, code_name):
    with sdk_error(code_name) as caught:
        call(dpus)
    err = caught.value
    assert isinstance(err, UpdlrmError)
    assert err.code_name == code_name
    assert err.message  # the SDK's own text, from dpu_error_to_string
    assert err.call.startswith("dpu_")


def test_error_carries_call_code_and_message(dpus):
    with pytest.raises(DpuError) as caught:
        dpus.read("no_such_symbol", 8)
    err = caught.value
    assert (err.call, err.code_name, err.async_job) == ("dpu_push_xfer",
                                                        "DPU_ERR_UNKNOWN_SYMBOL", False)
    assert str(err) == f"dpu_push_xfer failed: DPU_ERR_UNKNOWN_SYMBOL: {err.message}"
    copy = pickle.loads(pickle.dumps(err))  # e.g. from a worker process
    assert (copy.code_name, copy.message, str(copy)) == (err.code_name, err.message, str(err))


def test_a_failed_push_leaves_no_prepared_buffer_behind(dpus):
    with sdk_error("DPU_ERR_INVALID_MRAM_ACCESS"):
        dpus.copy("mram_words", [np.zeros(12, np.uint8)] * len(dpus))
    data = np.arange(MRAM_WORDS, dtype=np.uint64)
    dpus.copy("mram_words", [data] * len(dpus))  # would fail with TRANSFER_ALREADY_SET
    np.testing.assert_array_equal(dpus.read("mram_words", MRAM_WORDS, np.uint64),
                                  np.tile(data, (len(dpus), 1)))


@emulator_only
def test_launch_and_transfer_without_a_program(kernels):
    with DpuSet(2) as dpus:
        with sdk_error("DPU_ERR_NO_PROGRAM_LOADED"):
            dpus.launch()
        with sdk_error("DPU_ERR_NO_PROGRAM_LOADED"):
            dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))


def test_launch_while_running_asynchronously(dpus):
    dpus.copy("spin_rounds", np.array([SPIN_ROUNDS], np.uint32))
    dpus.launch(sync=False)
    with sdk_error("DPU_ERR_DPU_ALREADY_RUNNING"):
        dpus.launch(sync=False)
    dpus.sync()
    assert dpus.status() == (True, False)


@emulator_only
def test_load_errors(kernels, tmp_path):
    with DpuSet(1) as dpus:
        with sdk_error("DPU_ERR_ELF_NO_SUCH_FILE"):
            dpus.load(tmp_path / "missing.dpu")
        not_a_kernel = tmp_path / "garbage.dpu"
        not_a_kernel.write_bytes(b"not a DPU binary")
        with sdk_error("DPU_ERR_ELF_INVALID_FILE"):
            dpus.load(not_a_kernel)


@emulator_only
def test_invalid_profile():
    with sdk_error("DPU_ERR_INVALID_PROFILE"):
        DpuSet(1, profile="noSuchKey=1")


@emulator_only
def test_dma_fault_reaches_the_host_with_the_log(dpus):
    dpus.copy("mram_words", np.zeros(MRAM_WORDS, np.uint64))
    dpus.copy("fault_mode", np.array([1], np.uint32))
    with sdk_error("DPU_ERR_DPU_FAULT"):
        dpus.launch()
    assert dpus.status().fault
    assert "tasklet 0" in dpus.dpus[0].log()


# --- Python-side checks: types and the one-length-per-push rule ----------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda s: s.copy("mram_words", [np.zeros(8, np.uint8), np.zeros(16, np.uint8)]
                      + [None] * (len(s) - 2)), "common size"),
    (lambda s: s.copy("mram_words", [np.zeros(8, np.uint8)] * (len(s) - 1)), "one per DPU"),
    (lambda s: s.copy("mram_words", np.zeros((4, 4), np.uint64)[:, ::2]), "C-contiguous"),
    (lambda s: s.copy("mram_words", np.array([1, None], dtype=object)), "object"),
    (lambda s: s.copy("mram_words", 3.0), "NumPy array or a bytes-like"),
    (lambda s: s.copy("mram_words", np.zeros(0, np.uint64)), "empty"),
    (lambda s: s.copy("mram_words", np.zeros(1, np.uint64), offset=-8), "offset"),
    (lambda s: s.copy("", np.zeros(1, np.uint64)), "symbol"),
    (lambda s: s.copy(b"mram_words", np.zeros(1, np.uint64)), "symbol"),
    (lambda s: s.read("mram_words", 0), "empty"),
    (lambda s: s.read("mram_words", 1, dtype=object), "objects"),
    (lambda s: s.dpus[0].copy_from("mram_words", b"\0" * 8), "read-only"),
])
def test_python_side_misuse_is_rejected_before_libdpu(dpus, call, message):
    with pytest.raises(InvalidInputError, match=message):
        call(dpus)


def test_allocation_arguments_are_checked():
    for kwargs in ({"nr_dpus": 0}, {"nr_dpus": 2, "nr_ranks": 1}, {"nr_dpus": 1.5},
                   {"nr_dpus": True}, {"nr_dpus": 1, "profile": 3}):
        with pytest.raises(InvalidInputError):
            DpuSet(**kwargs)


def test_freed_sets_and_views(kernels):
    dpus = DpuSet(2)
    view = dpus.dpus[1]
    with pytest.raises(InvalidInputError, match="allocation"):
        view.free()
    dpus.free()
    dpus.free()  # idempotent
    for call in (lambda: dpus.load(kernels["symbols"]), lambda: view.read("wram_words", 4),
                 dpus.launch, lambda: dpus.dpus):
        with pytest.raises(InvalidInputError, match="freed"):
            call()
    assert "freed" in repr(view)


# --- round trips --------------------------------------------------------------------------------

def test_broadcast_then_read_every_dpu(dpus):
    data = np.arange(MRAM_WORDS, dtype=np.uint64) * 3 + 1
    dpus.copy("mram_words", data)
    out = dpus.read("mram_words", MRAM_WORDS, np.uint64)
    assert out.shape == (len(dpus), MRAM_WORDS) and out.dtype == np.uint64
    np.testing.assert_array_equal(out, np.tile(data, (len(dpus), 1)))


def test_per_dpu_copy_with_skipped_dpus_and_offsets(dpus):
    rng = np.random.default_rng(0)
    dpus.copy("mram_words", np.full(MRAM_WORDS, 7, np.uint64))
    rows = rng.integers(0, 2**63, size=(len(dpus), 16), dtype=np.uint64)
    data = [row if i % 3 else None for i, row in enumerate(rows)]  # rows are zero-copy views
    dpus.copy("mram_words", data, offset=8 * 8)
    expected = np.full((len(dpus), MRAM_WORDS), 7, np.uint64)
    for i, row in enumerate(data):
        if row is not None:
            expected[i, 8:24] = row
    np.testing.assert_array_equal(dpus.read("mram_words", MRAM_WORDS, np.uint64), expected)
    np.testing.assert_array_equal(dpus.read("mram_words", (2, 8), np.uint64, offset=64),
                                  expected[:, 8:24].reshape(len(dpus), 2, 8))


def test_wram_round_trip_with_bytes_and_float_views(dpus):
    values = np.linspace(-1, 1, WRAM_WORDS, dtype=np.float32)
    dpus.copy("wram_words", values.tobytes())
    np.testing.assert_array_equal(dpus.read("wram_words", WRAM_WORDS, np.float32),
                                  np.tile(values, (len(dpus), 1)))


def test_single_dpu_views_read_one_array(dpus):
    data = [np.full(WRAM_WORDS, i, np.uint32) for i in range(len(dpus))]
    dpus.copy("wram_words", data)
    views = list(dpus)
    assert len(views) == len(dpus) and all(v.is_single_dpu and len(v) == 1 for v in views)
    for i, view in enumerate(views):
        np.testing.assert_array_equal(view.read("wram_words", WRAM_WORDS, np.uint32), data[i])
        out = np.empty(WRAM_WORDS, np.uint32)
        view.copy_from("wram_words", out)
        np.testing.assert_array_equal(out, data[i])
    views[2].copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
    assert dpus.read("wram_words", WRAM_WORDS, np.uint32)[2].sum() == 0


def test_kernel_sees_what_the_host_wrote(dpus):
    rng = np.random.default_rng(1)
    mram = rng.integers(0, 2**20, size=(len(dpus), MRAM_WORDS), dtype=np.uint64)
    wram = rng.integers(0, 2**20, size=(len(dpus), WRAM_WORDS), dtype=np.uint32)
    dpus.copy("mram_words", list(mram))
    dpus.copy("wram_words", list(wram))
    dpus.copy("spin_rounds", np.zeros(1, np.uint32))
    dpus.launch()
    expected = mram.sum(axis=1) + wram.sum(axis=1, dtype=np.uint64)
    np.testing.assert_array_equal(dpus.read("checksum", 1, np.uint64)[:, 0], expected)


# --- launches -----------------------------------------------------------------------------------

def test_globals_persist_across_launches_until_reload(kernels):
    with DpuSet(3) as dpus:
        dpus.load(kernels["persistence"])
        factorials = []
        for _ in range(3):
            dpus.launch()
            factorials.append(dpus.read("factorial", 1, np.uint64)[:, 0])
        np.testing.assert_array_equal(factorials, [[120] * 3, [14400] * 3, [1728000] * 3])
        np.testing.assert_array_equal(dpus.read("nr_launches", 1, np.uint32)[:, 0], [3] * 3)
        dpus.load(kernels["persistence"])
        dpus.launch()
        np.testing.assert_array_equal(dpus.read("factorial", 1, np.uint64)[:, 0], [120] * 3)


def test_async_launch_then_sync(dpus):
    data = np.arange(MRAM_WORDS, dtype=np.uint64)
    dpus.copy("mram_words", data)
    dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
    dpus.copy("spin_rounds", np.array([20_000_000], np.uint32))
    dpus.launch(sync=False)
    dpus.sync()
    assert dpus.status() == (True, False)
    np.testing.assert_array_equal(dpus.read("checksum", 1, np.uint64)[:, 0],
                                  [data.sum()] * len(dpus))


def test_async_transfers_keep_their_buffers_until_sync(dpus):
    data = [np.full(MRAM_WORDS, i + 1, np.uint64) for i in range(len(dpus))]
    dpus.copy("mram_words", data, sync=False)
    pending = dpus.read("mram_words", MRAM_WORDS, np.uint64, sync=False)
    del data  # the binding holds the buffers, not the caller
    dpus.sync()
    np.testing.assert_array_equal(pending, np.repeat(np.arange(1, len(dpus) + 1, dtype=np.uint64),
                                                     MRAM_WORDS).reshape(len(dpus), -1))


def test_launch_releases_the_gil(dpus):
    """While one thread is inside a long synchronous launch, another thread runs Python.

    With a huge switch interval a thread keeps the GIL until it blocks, so the main thread can
    only run before ``finished`` is set if the launch released the GIL.
    """
    dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
    dpus.copy("spin_rounds", np.array([SPIN_ROUNDS], np.uint32))
    launched = threading.Event()
    finished = threading.Event()

    def launch():
        launched.set()
        dpus.launch()
        finished.set()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        worker = threading.Thread(target=launch)
        worker.start()
        launched.wait()
        ran_during_launch = not finished.is_set()
        worker.join()
    finally:
        sys.setswitchinterval(interval)
    assert ran_during_launch


# --- structure: ranks, DPUs, logs ---------------------------------------------------------------

@emulator_only
def test_ranks_and_dpus_of_an_allocation(kernels):
    with DpuSet(20, profile="nrDpusPerRank=8") as dpus:
        assert len(dpus) == 20
        ranks = dpus.ranks
        assert dpus.nr_ranks == len(ranks) == 3
        assert [len(r) for r in ranks] == [8, 8, 4]
        assert sum(len(list(r)) for r in ranks) == 20
        dpus.load(kernels["symbols"])
        dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
        ranks[1].copy("wram_words", np.ones(WRAM_WORDS, np.uint32))
        firsts = dpus.read("wram_words", 1, np.uint32)[:, 0]
        np.testing.assert_array_equal(firsts, [0] * 8 + [1] * 8 + [0] * 4)
        np.testing.assert_array_equal(ranks[1].read("wram_words", 1, np.uint32)[:, 0], [1] * 8)


@emulator_only
def test_allocating_whole_ranks_with_disabled_dpus():
    with DpuSet(nr_ranks=2, profile="nrDpusPerRank=16") as dpus:
        assert (len(dpus), dpus.nr_ranks) == (32, 2)
    with DpuSet(nr_ranks=3, profile="nrDisabledDpus=5") as dpus:  # ranks of 59 working DPUs
        assert len(dpus) == 3 * 59
        assert [len(rank) for rank in dpus.ranks] == [59] * 3


def test_log_of_one_dpu_and_of_a_set(dpus):
    data = np.arange(MRAM_WORDS, dtype=np.uint64)
    dpus.copy("mram_words", data)
    dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
    dpus.copy("spin_rounds", np.zeros(1, np.uint32))
    dpus.launch()
    line = f"tasklet 0 of {NR_TASKLETS}: checksum {data.sum()}\n"
    assert dpus.dpus[3].log() == line
    assert dpus.log() == [line] * len(dpus)


# --- counters -----------------------------------------------------------------------------------

def vector_add_on_dpus(dpus: DpuSet, a: np.ndarray, b: np.ndarray):
    """C = A + B split over the DPUs as vector_add/host.c does.

    Returns C, the bytes each DPU added, and the common per-DPU byte size of the pushes.
    """
    per_dpu = 2 * math.ceil(math.ceil(len(a) / len(dpus)) / 2)  # even: 8-byte multiples
    a_pad = np.zeros((len(dpus), per_dpu), np.int32)
    b_pad = np.zeros((len(dpus), per_dpu), np.int32)
    a_pad.reshape(-1)[:len(a)] = a
    b_pad.reshape(-1)[:len(b)] = b
    sizes = [4 * min(per_dpu, max(0, len(a) - d * per_dpu)) for d in range(len(dpus))]
    dpus.copy("DPU_INPUT_ARGUMENTS", [np.array([size, 4 * per_dpu], np.uint32) for size in sizes])
    heap = "__sys_used_mram_end"  # DPU_MRAM_HEAP_POINTER_NAME
    dpus.copy(heap, list(a_pad))
    dpus.copy(heap, list(b_pad), offset=4 * per_dpu)
    dpus.launch()
    c = dpus.read(heap, per_dpu, np.int32, offset=8 * per_dpu)
    return c.reshape(-1)[:len(a)], sizes, 4 * per_dpu


@emulator_only
def test_counters_match_what_the_vector_add_did(kernels):
    rng = np.random.default_rng(2)
    n = 5_002
    a = rng.integers(-1000, 1000, n, dtype=np.int32)
    b = rng.integers(-1000, 1000, n, dtype=np.int32)
    with DpuSet(4) as dpus:
        dpus.load(kernels["vector_add"])
        dpus.reset_counters()
        c, sizes, per_dpu_bytes = vector_add_on_dpus(dpus, a, b)
        np.testing.assert_array_equal(c, a + b)

        counters = dpus.counters()
        blocks = [-(-size // BLOCK_BYTES) for size in sizes]
        dma = counters.dpus["dma"]
        np.testing.assert_array_equal(dma["read_bytes"], [2 * s for s in sizes])
        np.testing.assert_array_equal(dma["write_bytes"], sizes)
        np.testing.assert_array_equal(dma["read_calls"], [2 * k for k in blocks])
        np.testing.assert_array_equal(dma["write_calls"], blocks)
        np.testing.assert_array_equal(counters.dpus["launches"], [1] * 4)
        np.testing.assert_array_equal(counters.nr_tasklets, [11] * 4)

        # Tasklet t handled blocks t, t + 11, ...: its share of the DMA calls and bytes.
        for d, size in enumerate(sizes):
            per_tasklet = counters.last_launch[d]
            for t in range(11):
                starts = range(t * BLOCK_BYTES, size, 11 * BLOCK_BYTES)
                nbytes = sum(min(BLOCK_BYTES, size - s) for s in starts)
                assert per_tasklet[t]["read_calls"] == 2 * len(starts)
                assert per_tasklet[t]["write_bytes"] == nbytes
            assert not per_tasklet[11:]["read_calls"].any()

        transfers = counters.transfers
        assert [(int(r["direction"]), int(r["nr_dpus"]), int(r["bytes_per_dpu"]))
                for r in transfers] == [(0, 4, 8), (0, 4, per_dpu_bytes), (0, 4, per_dpu_bytes),
                                        (1, 4, per_dpu_bytes)]
        totals = counters.totals
        assert totals["to_dpu_bytes"] == 4 * (8 + 2 * per_dpu_bytes)
        assert totals["from_dpu_bytes"] == 4 * per_dpu_bytes
        assert totals["launches"] == 1

        dpus.reset_counters()
        cleared = dpus.counters()
        assert not cleared.dpus["dma"]["read_bytes"].any() and len(cleared.transfers) == 0


# --- scale and backend info ---------------------------------------------------------------------

def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@emulator_only
def test_2560_dpus_with_small_data_use_little_memory(kernels):
    before = rss_bytes()
    with DpuSet(2560) as dpus:
        assert len(dpus) == 2560 and dpus.nr_ranks == 40
        dpus.load(kernels["symbols"])
        data = np.arange(MRAM_WORDS, dtype=np.uint64)
        dpus.copy("mram_words", data)
        dpus.copy("wram_words", np.zeros(WRAM_WORDS, np.uint32))
        dpus.copy("spin_rounds", np.zeros(1, np.uint32))
        dpus.launch()
        np.testing.assert_array_equal(dpus.read("checksum", 1, np.uint64)[:, 0],
                                      np.full(2560, data.sum()))
        grown = rss_bytes() - before
    # 2,560 DPUs x 64 MiB of MRAM would be 160 GiB; only touched pages may count (about 15 MiB
    # measured on the dev machine).
    assert grown < 64 * 2**20, f"RSS grew by {grown / 2**20:.0f} MiB"


@emulator_only
def test_backend_info_names_the_emulator():
    info = backend_info()
    assert info.libdpu == "emulator"
    assert "emulator" in info.version
    assert info.nr_dpus_available == 2560  # the emulator's default machine: 40 ranks of 64
    assert backend_info("nrRanks=2,nrDpusPerRank=60").nr_dpus_available == 120
    assert "emb_bag" in info.kernels


def test_load_a_kernel_shipped_in_the_package_by_name():
    with DpuSet(2) as dpus:
        dpus.load("emb_bag")
        assert Path(dpus.kernel).name == "emb_bag" + (".emu.so" if EMULATOR else ".dpu")
        with pytest.raises(InvalidInputError, match="no DPU kernel named"):
            dpus.load("no_such_kernel")


# --- the same binding source against an SDK-style dpu.h ------------------------------------------

SDK_BUILD = textwrap.dedent("""
    import sys
    import numpy as np
    from Cython.Build import cythonize
    from setuptools import Extension, setup
    repo, include, lib_dir, build = sys.argv[1:5]
    sys.argv[1:] = ["build_ext", "--build-lib", build, "--build-temp", build + "/tmp"]
    extension = Extension("_dpu", [repo + "/pim/_dpu.pyx"],
                          include_dirs=[np.get_include(), repo + "/pim", include],
                          library_dirs=[lib_dir],
                          libraries=["dpuemu"], runtime_library_dirs=[lib_dir],
                          define_macros=[("UPDLRM_SDK_VERSION", '"2025.1.0"')])
    setup(name="sdk_check", packages=[], ext_modules=cythonize([extension], include_path=[repo],
                                                 build_dir=build, language_level=3, quiet=True))
""")

SDK_RUN = textwrap.dedent("""
    import importlib.util, pathlib, sys
    from updlrm.pim.counters import CountersUnavailableError
    path = next(pathlib.Path(sys.argv[1]).glob("_dpu*.so"))
    spec = importlib.util.spec_from_file_location("_dpu", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(module.libdpu_kind(), module.libdpu_version())
    with module.DpuSet(2) as dpus:
        try:
            dpus.counters()
        except CountersUnavailableError as err:
            print(err)
""")


@emulator_only
def test_the_binding_builds_against_an_sdk_style_header(tmp_path):
    """pim/_dpu.pyx against a dpu.h without the emulator's marker, as the SDK's: it compiles,
    reports the SDK and its version, and counters() says they do not exist on hardware.
    (No SDK here: the SDK-style build links the emulator's library, which has the same ABI.)"""
    repo = Path(__file__).resolve().parents[1]
    include = tmp_path / "include"
    include.mkdir()
    for header in ("dpu.h", "dpu_error.h", "dpu_types.h", "dpu_macro_utils.h"):
        text = (Path(toolchain.EMU_INCLUDE_DIR) / header).read_text()
        (include / header).write_text(text.replace("#define UPDLRM_DPU_EMULATOR 1\n", ""))
    assert "UPDLRM_DPU_EMULATOR" not in (include / "dpu.h").read_text()
    lib_dir = toolchain.emulator_library_dir()
    build = subprocess.run([sys.executable, "-c", SDK_BUILD, str(repo), str(include), str(lib_dir),
                            str(tmp_path / "build")], capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stderr[-4000:]
    run = subprocess.run([sys.executable, "-c", SDK_RUN, str(tmp_path / "build")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-4000:]
    assert run.stdout.splitlines() == [
        "upmem-sdk 2025.1.0",
        "DPU counters are not available on hardware: this build links the UPMEM SDK's libdpu; "
        "they exist only in updlrm's emulator",
    ]
