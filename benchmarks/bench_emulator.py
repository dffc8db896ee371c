"""Emulated embedding-bag throughput: the emb_bag kernel on updlrm's DPU emulator.

Two figures (median of --repeats runs each, after one warm-up):

1. lookups/s on 64 DPUs x 16 tasklets: one 64-dim float32 table sharded by rows over the DPUs
   (4,096 rows = 1 MiB per DPU), bags of 20 uniform random rows; the kernel launch alone
   (emulated DPU work) and the whole batch (pack, push, launch, pull, decode); baseline in the
   same run: updlrm's CPU backend pooling the same batch on this machine's cores.
2. wall time of one batch of 4,096 bags x 20 indices on 256 DPUs (same layout), split into
   the host scatter of bags into per-DPU sub-bags (NumPy, here; the PIM backend's job),
   EmbKernelRunner.submit (pack, push, launch) and EmbKernelRunner.collect_into (wait, pull,
   status check, fold of the partial sums into [B, 64]).

These are host wall-clock measurements of the *emulator*; they say nothing about real DPU time
(that is the cost model's job).

    python benchmarks/bench_emulator.py [--repeats 5] [--mode f32|i8|i32]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from updlrm.cpu_backend import CpuBackend
from updlrm.pim._dpu import DpuSet
from updlrm.pim.emb_host import EmbKernelRunner, PoolOp, ValueMode, make_tile
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable

DIM = 64
ROWS_PER_DPU = 4096
POOLING = 20


def shard_batch(offsets, indices, rows_per_dpu, n_dpus):
    """Split bags over row shards: per DPU, the non-empty sub-bags in bag order.

    Returns (bag_ptr [n_dpus + 1] into the sub-bags, sub_offsets, local_rows, sub_bag_of).
    """
    lengths = np.diff(offsets)
    bag_of = np.repeat(np.arange(lengths.size), lengths)
    shard = indices // rows_per_dpu
    order = np.lexsort((bag_of, shard))  # stable: keeps bag order and order within a bag
    shard_s, bag_s = shard[order], bag_of[order]
    starts = np.flatnonzero(np.r_[True, (shard_s[1:] != shard_s[:-1]) | (bag_s[1:] != bag_s[:-1])])
    sub_offsets = np.r_[starts, order.size].astype(np.int64)
    bag_ptr = np.searchsorted(shard_s[starts], np.arange(n_dpus + 1)).astype(np.int64)
    return bag_ptr, sub_offsets, (indices[order] % rows_per_dpu), bag_s[starts]


def make_batch(rng, n_bags, n_rows):
    offsets = np.arange(0, (n_bags + 1) * POOLING, POOLING, dtype=np.int64)
    return offsets, rng.integers(0, n_rows, size=n_bags * POOLING, dtype=np.int64)


def median_time(fn, repeats):
    """Median wall and CPU (all threads of this process) seconds of ``fn`` after one warm-up.

    The machine is shared: wall time includes waiting for other processes, CPU time does not.
    """
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def setup_runner(dpus, rng, mode, output_capacity):
    """One row shard (tile) per DPU; returns the runner and the tiles in DPU order."""
    runner = EmbKernelRunner(dpus, request_capacity=1 << 20, output_capacity=output_capacity)
    tiles = [make_tile(rng.normal(0, 0.1, (ROWS_PER_DPU, DIM)).astype(np.float32), mode)
             for _ in range(len(dpus))]
    runner.load_tiles(tiles, range(len(dpus)))
    return runner, tiles


def bench_throughput(args, rng):
    n_dpus, n_bags = 64, args.bags
    with DpuSet(n_dpus) as dpus:
        runner, tiles = setup_runner(dpus, rng, args.mode, output_capacity=4 << 20)
        offsets, indices = make_batch(rng, n_bags, n_dpus * ROWS_PER_DPU)
        bag_ptr, sub_offsets, local, _ = shard_batch(offsets, indices, ROWS_PER_DPU, n_dpus)
        args_batch = (np.arange(n_dpus), PoolOp.SUM, bag_ptr, sub_offsets, local)
        runner.run_batch(*args_batch)  # leaves this batch's request in MRAM for launch-only runs
        t_launch, c_launch = median_time(dpus.launch, args.repeats)
        t_batch, c_batch = median_time(lambda: runner.run_batch(*args_batch), args.repeats)
    # baseline, same run: the same pooling by updlrm's CPU backend on this machine's cores
    cpu = CpuBackend()
    cpu.load([EmbeddingTable("t", np.concatenate([tile.values() for tile in tiles]).astype(np.float32))])
    batch = SparseBatch.from_jagged([indices], [offsets])
    t_cpu, c_cpu = median_time(lambda: cpu.lookup(batch), args.repeats)
    lookups = indices.size
    print(f"[1] 64 DPUs x 16 tasklets, dim {DIM} {args.mode.name}, {n_bags} bags x {POOLING} "
          f"= {lookups} lookups ({lookups // n_dpus} per DPU), median of {args.repeats}")
    for name, wall, cpu in (("kernel launch only", t_launch, c_launch), ("whole run_batch", t_batch, c_batch),
                            ("baseline: CpuBackend", t_cpu, c_cpu)):
        print(f"    {name:<20} : {wall * 1e3:8.2f} ms wall -> {lookups / wall / 1e6:6.2f} M lookups/s"
              f"   ({cpu * 1e3:8.2f} ms CPU -> {lookups / cpu / 1e6:6.2f} M lookups per CPU-s)")


def bench_one_batch(args, rng):
    n_dpus, n_bags = 256, 4096
    with DpuSet(n_dpus) as dpus:
        runner, tiles = setup_runner(dpus, rng, args.mode, output_capacity=1 << 20)
        offsets, indices = make_batch(rng, n_bags, n_dpus * ROWS_PER_DPU)
        out = np.zeros((n_bags, DIM), dtype=np.float32)
        stages = {"host scatter (NumPy)": [], "pack+push+launch": [], "wait+pull+check+fold": []}
        jobs = np.arange(n_dpus)

        def one_batch():
            t0 = time.perf_counter()
            bag_ptr, sub_offsets, local, sub_bag = shard_batch(offsets, indices, ROWS_PER_DPU, n_dpus)
            t1 = time.perf_counter()
            runner.submit(jobs, PoolOp.SUM, bag_ptr, sub_offsets, local)
            t2 = time.perf_counter()
            out[:] = 0
            runner.collect_into(out, sub_bag)
            t3 = time.perf_counter()
            for name, dt in zip(stages, (t1 - t0, t2 - t1, t3 - t2)):
                stages[name].append(dt)

        total, cpu = median_time(one_batch, args.repeats)
        table = np.concatenate([tile.values() for tile in tiles])
        ref = np.add.reduceat(table[indices], offsets[:-1], axis=0)  # float64, all bags non-empty
        err = float(np.max(np.abs(out - ref)))
    print(f"[2] 256 DPUs x 16 tasklets, {n_bags} bags x {POOLING} indices, dim {DIM} {args.mode.name}, "
          f"median of {args.repeats}")
    print(f"    one batch          : {total * 1e3:8.2f} ms wall ({cpu * 1e3:.2f} ms CPU) "
          f"-> {indices.size / total / 1e6:6.2f} M lookups/s")
    for name, values in stages.items():
        print(f"      {name:<22} : {statistics.median(values[1:]) * 1e3:8.2f} ms")
    print(f"    max |out - float64 reference| = {err:.3g}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--bags", type=int, default=16384, help="bags per batch in figure [1]")
    parser.add_argument("--mode", type=lambda s: ValueMode[s.upper()], default=ValueMode.F32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"host: {os.cpu_count()} CPUs")
    bench_throughput(args, rng)
    bench_one_batch(args, rng)


if __name__ == "__main__":
    main()
