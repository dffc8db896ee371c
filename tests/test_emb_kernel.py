"""The embedding-bag DPU kernel (pim/kernels/emb_bag.c) on the emulator, against NumPy twins.

float32 results must be bit-identical to a sequential float32 sum in bag order; integer modes
must equal the exact integer pooling of the stored values and stay within the documented bound
of the true (float64) pooling of the original table; overflow must raise.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from updlrm.errors import CapacityError, InvalidInputError
from updlrm.pim import _emb_pack
from updlrm.pim.emb_host import (EmbKernelRunner, FixedPointOverflowError, KernelError,
                                 MRAM_HEAP_SYMBOL, PoolOp, ValueMode, int_error_bound,
                                 make_tile, mean_from_sum)
from updlrm.pim.kernels import KERNEL_DIR

_dpu = pytest.importorskip("updlrm.pim._dpu")
DpuSet = _dpu.DpuSet
INT32_MAX = 2**31 - 1


# --- NumPy twins --------------------------------------------------------------------------------

def random_bags(rng, n_bags, n_rows, max_len, empty_share=0.15):
    """CSR bags with lengths 0..max_len (some forced empty) over rows 0..n_rows-1."""
    lengths = rng.integers(1, max_len + 1, size=n_bags)
    lengths[rng.random(n_bags) < empty_share] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = rng.integers(0, n_rows, size=offsets[-1]).astype(np.int64)
    weights = rng.uniform(-2.0, 2.0, size=offsets[-1]).astype(np.float32)
    return offsets, indices, weights


def pool_sequential(values, op, offsets, indices, weights):
    """Pool bags over ``values`` (any dtype) adding rows one after another in bag order.

    With float32 values every add (and weight product) is rounded to float32, exactly as the
    kernel's sequential float32 accumulation; with int64 values it is the exact integer pooling.
    """
    lengths = np.diff(offsets)
    acc = np.zeros((lengths.size, values.shape[1]), dtype=values.dtype)
    for k in range(int(lengths.max(initial=0))):
        bags = np.flatnonzero(lengths > k)
        pos = offsets[bags] + k
        rows = values[indices[pos]]
        if op == PoolOp.SUM:
            acc[bags] = acc[bags] + rows
        elif op == PoolOp.WSUM:
            acc[bags] = acc[bags] + weights[pos][:, None] * rows
        else:
            acc[bags] = rows if k == 0 else np.maximum(acc[bags], rows)
    return acc


def quantised_weights(tile, offsets, indices, weights):
    """The int weights and their scale for one job, per the documented rule (module emb_host)."""
    lengths = np.diff(offsets)
    levels = min(32767, max(1, INT32_MAX // (max(tile.qmax, 1) * max(int(lengths.max(initial=0)), 1))))
    wmax = float(np.max(np.abs(weights[offsets[0]:offsets[-1]]), initial=0.0))
    scale = wmax / levels if wmax > 0 else 1.0
    return np.rint(weights.astype(np.float64) / scale).astype(np.int64), scale


def expected(tile, op, offsets, indices, weights):
    """What the kernel + host must return for one job on ``tile``."""
    if tile.mode == ValueMode.F32:
        values = tile.data.view(np.float32)[:, : tile.n_cols]
        return pool_sequential(values, op, offsets, indices, weights)
    stored = tile.data.view(np.int8 if tile.mode == ValueMode.I8 else np.int32)[:, : tile.n_cols]
    q = stored.astype(np.int64)
    factor = tile.scale
    if op == PoolOp.WSUM:
        p, wscale = quantised_weights(tile, offsets, indices, weights)
        factor *= wscale
        acc = pool_sequential(q, op, offsets, indices, p)
    else:
        acc = pool_sequential(q, op, offsets, indices, None)
    assert np.all(np.abs(acc) <= INT32_MAX), "test data must not overflow here"
    return (acc * factor).astype(np.float32)


# --- kernel binaries ----------------------------------------------------------------------------

@pytest.fixture(scope="session")
def kernels(tmp_path_factory):
    """emb_bag built with NR_TASKLETS = 1, 11, 16 and 24 (v1A's maximum, smaller WRAM buffers)
    by the emulator toolchain, as setup.py does."""
    out = tmp_path_factory.mktemp("emb_kernels")
    built = {}
    for tasklets in (1, 11, 16, 24):
        binary = out / f"emb_bag_{tasklets}.emu.so"
        subprocess.run([sys.executable, "-m", "updlrm.pim.toolchain", "cc", "-O3",
                        f"-DNR_TASKLETS={tasklets}", "-o", str(binary),
                        str(KERNEL_DIR / "emb_bag.c")], check=True)
        built[tasklets] = str(binary)
    return built


def one_job_run(kernel, tile, op, offsets, indices, weights, n_dpus=1, **caps):
    with DpuSet(n_dpus) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernel, **caps)
        (pl,) = runner.load_tile(tile, [0])
        return runner.run_batch([pl], op, [0, offsets.size - 1], offsets, indices, weights)[0]


def assert_same_bits(actual, wanted):
    np.testing.assert_array_equal(np.ascontiguousarray(actual).view(np.uint32),
                                  np.ascontiguousarray(wanted).view(np.uint32))


# --- tests --------------------------------------------------------------------------------------

ABI_FIELDS = {
    "emb_config_t": ["magic", "abi_version", "request_off", "request_cap", "output_off",
                     "output_cap", "reserved"],
    "emb_request_header_t": ["magic", "batch_id", "n_jobs", "total_bags", "total_bytes", "reserved"],
    "emb_job_t": ["tile_off", "n_rows", "row_bytes", "n_cols", "n_bags", "offsets_off",
                  "indices_off", "weights_off", "out_off", "mode", "op", "reserved0", "reserved"],
    "emb_status_t": ["magic", "batch_id", "error", "error_job", "error_bag", "error_value",
                     "overflow_bags", "first_overflow_bag", "cycles"],
}


def test_abi_structs_have_one_layout_on_host_and_dpu(tmp_path):
    # the DPU is ILP32 (32-bit pointers and size_t), the host LP64: the shared structs must not
    # care.  Offsets measured on this (LP64) host must hold when compiled for a 32-bit target.
    probe = tmp_path / "probe.c"
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "emb_abi.h"', "int main(void) {"]
    for struct, fields in ABI_FIELDS.items():
        lines.append(f'printf("{struct} sizeof %zu\\n", sizeof({struct}));')
        lines += [f'printf("{struct} {f} %zu\\n", offsetof({struct}, {f}));' for f in fields]
    probe.write_text("\n".join(lines + ["return 0; }"]))
    subprocess.run(["cc", f"-I{KERNEL_DIR}", str(probe), "-o", str(tmp_path / "probe")], check=True)
    layout = subprocess.run([str(tmp_path / "probe")], check=True, capture_output=True, text=True).stdout
    asserts = ['#include <stddef.h>', '#include "emb_abi.h"']
    for line in layout.splitlines():
        struct, field, value = line.split()
        expr = f"sizeof({struct})" if field == "sizeof" else f"offsetof({struct}, {field})"
        asserts.append(f'_Static_assert({expr} == {value}, "{struct}.{field}");')
    check = tmp_path / "check32.c"
    check.write_text("\n".join(asserts + ['_Static_assert(sizeof(void *) == 4, "ILP32");']))
    result = subprocess.run(["cc", "-m32", "-ffreestanding", "-std=c11", f"-I{KERNEL_DIR}",
                             "-fsyntax-only", str(check)], capture_output=True, text=True)
    if "unrecognized" in result.stderr or "not supported" in result.stderr:
        pytest.skip("this compiler cannot target a 32-bit ABI")
    assert result.returncode == 0, result.stderr  # a layout differs between LP64 and ILP32
    assert "emb_job_t sizeof 48" in layout


@pytest.mark.parametrize("n_dpus,tasklets", [(1, 1), (8, 11), (64, 16)])
def test_every_mode_and_op_matches_numpy(kernels, n_dpus, tasklets):
    rng = np.random.default_rng(n_dpus * 100 + tasklets)
    table = rng.normal(0.0, 0.5, size=(40, 13)).astype(np.float32)  # 13 columns: padded stride
    tiles = [make_tile(table, mode) for mode in ValueMode]
    offsets, indices, weights = random_bags(rng, n_dpus * 45, table.shape[0], max_len=7)
    n_bags = offsets.size - 1
    with DpuSet(n_dpus) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[tasklets])
        placement = {mode: runner.load_tile(tile, range(n_dpus)) for mode, tile in zip(ValueMode, tiles)}
        # every DPU gets one job per (mode, op), each on its own slice of the bags
        jobs = [(mode, op, d) for d in range(n_dpus) for mode in ValueMode for op in PoolOp]
        bag_ptr = np.linspace(0, n_bags, len(jobs) + 1).astype(np.int64)
        results = runner.run_batch([placement[m][d] for m, _, d in jobs], [op for _, op, _ in jobs],
                                   bag_ptr, offsets, indices, weights)
    for j, (mode, op, _) in enumerate(jobs):
        lo, hi = bag_ptr[j], bag_ptr[j + 1]
        job_offsets = offsets[lo:hi + 1]
        tile = tiles[mode]
        want = expected(tile, op, job_offsets, indices, weights)
        if mode == ValueMode.F32:
            assert_same_bits(results[j], want)
            continue
        np.testing.assert_array_equal(results[j], want)
        truth = pool_sequential(table.astype(np.float64), op, job_offsets, indices,
                                weights.astype(np.float64))
        lengths = np.diff(job_offsets)
        if op == PoolOp.WSUM:
            pos = [np.arange(a, b) for a, b in zip(job_offsets[:-1], job_offsets[1:])]
            abs_w = np.array([np.abs(weights[p].astype(np.float64)).sum() for p in pos])
            xmax = np.abs(tile.values()).max()
            _, wscale = quantised_weights(tile, job_offsets, indices, weights)
            bound = int_error_bound(tile, lengths, abs_weight_sums=abs_w,
                                    abs_value_sums=lengths * xmax, weight_scale=wscale)
        else:
            bound = int_error_bound(tile, np.minimum(lengths, 1) if op == PoolOp.MAX else lengths)
        slack = np.abs(truth) * 2.0**-23 + 1e-12  # the float32 rounding of the returned value
        assert np.all(np.abs(results[j] - truth) <= bound[:, None] + slack)


@pytest.mark.parametrize("tasklets", [1, 11])
def test_blocks_of_short_bags(kernels, tasklets):
    # many short and empty bags: tasklets pool them in blocks of up to 16 consecutive bags
    rng = np.random.default_rng(tasklets)
    table = rng.normal(size=(70, 24)).astype(np.float32)
    tiles = [make_tile(table, mode) for mode in ValueMode]
    offsets, indices, weights = random_bags(rng, 9 * 300, 70, max_len=3, empty_share=0.3)
    with DpuSet(1) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[tasklets])
        placement = [runner.load_tile(tile, [0])[0] for tile in tiles]
        jobs = [(mode, op) for mode in ValueMode for op in PoolOp]
        bag_ptr = np.arange(0, 9 * 300 + 1, 300)
        results = runner.run_batch([placement[m] for m, _ in jobs], [op for _, op in jobs],
                                   bag_ptr, offsets, indices, weights)
    for j, (mode, op) in enumerate(jobs):
        want = expected(tiles[mode], op, offsets[bag_ptr[j]:bag_ptr[j + 1] + 1], indices, weights)
        assert_same_bits(results[j], want)


def test_mean_is_sum_scaled_on_the_host(kernels):
    rng = np.random.default_rng(7)
    table = rng.normal(size=(30, 16)).astype(np.float32)
    offsets, indices, weights = random_bags(rng, 50, 30, max_len=6)
    sums = one_job_run(kernels[16], make_tile(table), PoolOp.SUM, offsets, indices, None)
    ref = pool_sequential(table, PoolOp.SUM, offsets, indices, None)
    lengths = np.diff(offsets)
    scale = np.float32(1.0) / np.maximum(lengths, 1).astype(np.float32)   # as the CPU kernel scales
    want = np.where(lengths[:, None] > 0, ref * scale[:, None], 0).astype(np.float32)
    got = mean_from_sum(sums, lengths)
    assert got is sums
    assert_same_bits(got, want)


@pytest.mark.parametrize("tasklets", [11, 24])
@pytest.mark.parametrize("mode,n_cols", [(ValueMode.F32, 600), (ValueMode.I8, 300), (ValueMode.I32, 129)])
def test_wide_rows_are_pooled_in_column_chunks(kernels, mode, n_cols, tasklets):
    # 600 float32 columns = 2,400-byte rows: more than one DMA may move
    rng = np.random.default_rng(n_cols)
    table = rng.normal(size=(25, n_cols)).astype(np.float32)
    tile = make_tile(table, mode)
    offsets, indices, weights = random_bags(rng, 60, 25, max_len=5)
    for op in PoolOp:
        got = one_job_run(kernels[tasklets], tile, op, offsets, indices, weights)
        want = expected(tile, op, offsets, indices, weights)
        assert_same_bits(got, want) if mode == ValueMode.F32 else np.testing.assert_array_equal(got, want)


def test_batch_larger_than_wram_is_streamed(kernels):
    # 160k indices + weights + 20k offsets: ~1.4 MB of request, 20x the DPU's WRAM
    rng = np.random.default_rng(3)
    table = rng.normal(size=(500, 16)).astype(np.float32)
    offsets, indices, weights = random_bags(rng, 20_000, 500, max_len=15)
    got = one_job_run(kernels[16], make_tile(table), PoolOp.WSUM, offsets, indices, weights,
                      request_capacity=2 << 20, output_capacity=2 << 20)
    assert_same_bits(got, pool_sequential(table, PoolOp.WSUM, offsets, indices, weights))


def test_replicas_and_several_tiles_per_dpu(kernels):
    rng = np.random.default_rng(5)
    a = rng.normal(size=(64, 8)).astype(np.float32)
    b = rng.normal(size=(33, 13)).astype(np.float32)
    offsets, indices, weights = random_bags(rng, 60, 33, max_len=5)
    with DpuSet(4) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[11])
        # one call: tile a replicated everywhere, tile b (another size) on DPUs 2 and 3 as well
        ids = runner.load_tiles([make_tile(a)] * 4 + [make_tile(b, ValueMode.I8)] * 2, [0, 1, 2, 3, 2, 3])
        pa, pb = ids[:4], ids[4:]
        placement = [pa[0], pa[3], pb[0], pa[2], pb[1]]
        bag_ptr = [0, 10, 25, 30, 45, 60]
        results = runner.run_batch(placement, PoolOp.SUM, bag_ptr, offsets, indices, weights)
        assert list(runner.placements["dpu"]) == [0, 1, 2, 3, 2, 3]
    for j, p in enumerate(placement):
        tile = make_tile(a) if p in pa else make_tile(b, ValueMode.I8)
        want = expected(tile, PoolOp.SUM, offsets[bag_ptr[j]:bag_ptr[j + 1] + 1], indices, weights)
        np.testing.assert_array_equal(results[j], want)


@pytest.mark.parametrize("op", list(PoolOp))
def test_collect_into_folds_row_shards_and_column_slices(kernels, op):
    # a 2-D tiling of one table: 3 row shards x 2 column slices (13 + 7 columns) on 6 DPUs; the
    # host splits each bag into sub-bags per row shard and folds the partials back together
    rng = np.random.default_rng(int(op) + 20)
    table = rng.normal(size=(90, 20)).astype(np.float32)
    shards, slices = [(0, 40), (40, 70), (70, 90)], [(0, 13), (13, 20)]
    offsets, indices, weights = random_bags(rng, 120, 90, max_len=6)
    modes = [ValueMode.F32, ValueMode.I8]  # one column slice per mode
    dst = np.full((120, 20), -np.inf if op == PoolOp.MAX else 0.0, dtype=np.float32)
    want = dst.copy()
    with DpuSet(6) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[16])
        jobs, bag_ptr, sub_offsets, sub_idx, sub_w, bag_row, job_col = [], [0], [0], [], [], [], []
        for s_i, (r0, r1) in enumerate(shards):
            for c_i, (c0, c1) in enumerate(slices):
                tile = make_tile(table[r0:r1, c0:c1], modes[c_i])
                (pl,) = runner.load_tile(tile, [2 * s_i + c_i])
                first_bag = len(bag_row)
                for b in range(120):
                    pos = np.arange(offsets[b], offsets[b + 1])
                    pos = pos[(indices[pos] >= r0) & (indices[pos] < r1)]
                    if pos.size:  # only non-empty sub-bags travel
                        sub_idx.extend(indices[pos] - r0)
                        sub_w.extend(weights[pos])
                        sub_offsets.append(sub_offsets[-1] + pos.size)
                        bag_row.append(b)
                jobs.append(pl)
                bag_ptr.append(len(bag_row))
                job_col.append(c0)
                part = expected(tile, op, np.array(sub_offsets[first_bag:]), np.array(sub_idx),
                                np.array(sub_w, dtype=np.float32))
                rows = np.array(bag_row[first_bag:])
                if op == PoolOp.MAX:
                    want[rows, c0:c1] = np.maximum(want[rows, c0:c1], part)
                else:
                    want[rows, c0:c1] = want[rows, c0:c1] + part
        runner.submit(jobs, op, bag_ptr, sub_offsets, np.array(sub_idx), np.array(sub_w, dtype=np.float32))
        runner.collect_into(dst, bag_row, job_col)
    assert_same_bits(dst, want)


def test_async_batches_reuse_the_tiles(kernels):
    rng = np.random.default_rng(9)
    table = rng.normal(size=(50, 16)).astype(np.float32)
    with DpuSet(8) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[16])
        pl = runner.load_tile(make_tile(table), range(8))
        for _ in range(3):
            offsets, indices, weights = random_bags(rng, 80, 50, max_len=6)
            bag_ptr = np.arange(0, 81, 10)
            runner.submit(pl, PoolOp.SUM, bag_ptr, offsets, indices)
            results = runner.collect()
            got = np.concatenate(results)
            assert_same_bits(got, pool_sequential(table, PoolOp.SUM, offsets, indices, None))


def test_cycle_counter_grows_with_the_work(kernels):
    # the kernel reports the DPU's cycle counter (measured on hardware; the emulator models
    # DMA cycles): more rows to gather on DPU 1 than on DPU 0 must cost DPU 1 more cycles
    rng = np.random.default_rng(11)
    table = rng.normal(size=(64, 32)).astype(np.float32)
    with DpuSet(2) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[16])
        pl = runner.load_tile(make_tile(table), [0, 1])
        offsets = np.arange(0, 20 * 10 + 1, 10)               # 20 bags x 10 rows
        indices = rng.integers(0, 64, size=200)
        runner.run_batch(pl, PoolOp.SUM, [0, 4, 20], offsets, indices)  # 40 rows on DPU 0, 160 on 1
        cycles = runner.last_cycles.copy()
    assert 0 < cycles[0] < cycles[1]


def test_int32_overflow_raises(kernels):
    table = np.full((4, 8), 1.0, dtype=np.float32)
    tile = make_tile(table, ValueMode.I32, headroom=1)  # q = 2**31 - 1: any two rows overflow
    offsets = np.array([0, 1, 3], dtype=np.int64)
    indices = np.array([0, 1, 2], dtype=np.int64)
    with pytest.raises(FixedPointOverflowError, match="bag 1"):
        one_job_run(kernels[11], tile, PoolOp.SUM, offsets, indices, None)
    weights = np.array([1.0, 1.0, 1.0], dtype=np.float32)
    with pytest.raises(FixedPointOverflowError, match="bag 1"):
        one_job_run(kernels[11], tile, PoolOp.WSUM, offsets, indices, weights)
    # a single row fits: same tile, same kernel, no error
    single = one_job_run(kernels[11], tile, PoolOp.SUM, offsets[:2], indices, None)
    np.testing.assert_allclose(single, 1.0, rtol=1e-6)


@pytest.mark.parametrize("section,item,value,error,bag,reported", [
    ("offsets", 1, 5, "bag offsets decrease or run past the indices", 0, 5),   # bag 0 would end past the 3 indices
    ("offsets", 2, 1, "bag offsets decrease or run past the indices", 0, 2),   # now 1 index: bag 0 ends past it
    ("indices", 2, 99, "local row out of range", 1, 99),  # row 99 of a 10-row tile
])
def test_kernel_flags_a_corrupt_request(kernels, section, item, value, error, bag, reported):
    # the host packer rejects bad rows and offsets; a request corrupted after packing must
    # still not be pooled silently: the kernel checks offsets and rows itself
    table = np.ones((10, 8), dtype=np.float32)
    with DpuSet(1) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[1])
        (pl,) = runner.load_tile(make_tile(table), [0])
        cols = runner.placements
        packed = _emb_pack.pack_requests(
            1, 77, runner.request_capacity, runner.output_capacity, cols["dpu"], cols["tile_off"],
            cols["n_rows"], cols["row_bytes"], cols["n_cols"], cols["mode"], cols["qmax"],
            np.array([pl]), np.array([PoolOp.SUM], dtype=np.uint8), np.array([0, 2]),
            np.array([0, 2, 3]), np.array([1, 2, 3]), None)
        words = packed.requests[0].view(np.uint32)
        # request = header (8 words), one job (12 words: offsets_off, indices_off at words 5, 6)
        start = words[8 + (5 if section == "offsets" else 6)] // 4
        words[start + item] = value
        dpus.copy(MRAM_HEAP_SYMBOL, [packed.requests[0]], 0)
        dpus.launch()
        status = _emb_pack.read_status(dpus.read(MRAM_HEAP_SYMBOL, packed.output_bytes, np.uint8,
                                                 runner.request_capacity))
    assert status["batch_id"][0] == 77
    assert _emb_pack.ERRORS[int(status["error"][0])] == error
    assert (status["error_bag"][0], status["error_value"][0]) == (bag, reported)


def test_a_kernel_that_wrote_no_result_is_an_error(kernels):
    # a clobbered EMB_CONFIG: the kernel cannot know where to write its status, so the host
    # must notice that the pulled status is not this batch's
    with DpuSet(2) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[11])
        pl = runner.load_tile(make_tile(np.ones((4, 8), dtype=np.float32)), [0, 1])
        runner.run_batch(pl, PoolOp.SUM, [0, 1, 2], [0, 1, 2], [0, 1])
        dpus.copy("EMB_CONFIG", np.zeros(_emb_pack.CONFIG_BYTES, dtype=np.uint8))
        with pytest.raises(KernelError, match="no result for batch 2"):
            runner.run_batch(pl, PoolOp.SUM, [0, 1, 2], [0, 1, 2], [0, 1])


def test_host_rejects_bad_batches(kernels):
    table = np.ones((10, 8), dtype=np.float32)
    with DpuSet(1) as dpus:
        runner = EmbKernelRunner(dpus, kernel=kernels[1], request_capacity=1024)
        (pl,) = runner.load_tile(make_tile(table), [0])
        with pytest.raises(InvalidInputError, match="local row 10"):
            runner.run_batch([pl], PoolOp.SUM, [0, 1], [0, 2], [3, 10])
        with pytest.raises(InvalidInputError, match="needs weights"):
            runner.run_batch([pl], PoolOp.WSUM, [0, 1], [0, 2], [3, 4])
        with pytest.raises(CapacityError, match="request area"):
            runner.run_batch([pl], PoolOp.SUM, [0, 1], [0, 500], np.zeros(500, dtype=np.int64))
        with pytest.raises(CapacityError, match="jobs"):
            runner.run_batch([pl] * 65, PoolOp.SUM, np.zeros(66, dtype=np.int64), [0], [])
        with pytest.raises(CapacityError, match="do not fit DPU 0"):
            runner.load_tile(make_tile(np.ones((80_000, 256), dtype=np.float32)), [0])
        # after all that, the runner still works
        got = runner.run_batch([pl], PoolOp.SUM, [0, 1], [0, 2], [3, 4])[0]
    np.testing.assert_array_equal(got, 2.0)
