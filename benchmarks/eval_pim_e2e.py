"""End-to-end evaluation of the PIM backend on emulated DPUs (issue 4, "reduced size").

A Criteo-shaped model — the 26 Criteo Kaggle tables, rows capped (default 50,000), dim 64 —
with power-law (top 1% of rows ~50% of accesses) and uniform traces, pooling 1 and 20-80,
batches of 64 ... 4,096, 64 / 256 emulated DPUs, every partitioning level. Per configuration:

* correctness (``err``): the largest error over every pooled element as a share of what is allowed:
  fp32 |PIM - CPU| / sum|x| (only the order of additions differs), integer modes |PIM - CPU| over
  the quantisation bound (<= 1 means within it); ``fb``: share of batches the backend pooled on the
  host (the backend's default CPU fallback; ``--no-cpu-fallback`` runs every batch on the DPUs);
* MEASURED on this host (median of ``--repeats``): the PIM backend's host stages (scatter, push,
  CPU-resident tables, wait, pull + reduce) and the whole lookup — the wait is the *emulator*
  running the DPUs on this CPU, not a DPU time — and the CPU backend on the same batch;
* MODELLED (cost model fed with the emulator's counters of the batch that ran): what a real UPMEM
  server would take per stage and in total, and the modelled speedup = measured CPU backend /
  modelled PIM total. Never a measurement.

The planner runs with ``allow_cpu`` on (as the engine does), so configurations where the model
says the CPU is faster keep tables there (the ``tbl`` column says how many tables ran on the DPUs);
``--all-on-dpus`` forbids that. To keep the emulator within this host's memory the DPUs share
``--mram-budget-mib`` (default 512 MiB) of table region — 8 MiB per DPU at 64 DPUs, 2 MiB at 256,
instead of 56 MiB each on a real server — which limits replication.

``--calibrate-host`` only measures the cost model's reduction rate (bytes/s of the C reduction of
pulled partial sums) on this machine; the scatter's rates come from ``benchmarks/bench_scatter.py``.

Usage: ``python benchmarks/eval_pim_e2e.py [--quick] [--all-on-dpus] [--value-mode f32|i32|i8]
[--cap 50000] [--repeats 3] [--calibrate-host] [--json FILE]``
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from updlrm.cpu_backend import CpuBackend
from updlrm.pim import PimBackend
from updlrm.pim.partitioner import PlannerConfig
from updlrm.pim.profile import build_profile
from updlrm.datasets.synthetic import CRITEO_KAGGLE_CARDINALITIES, random_batch
from updlrm.datasets.traces import extract_profile
from updlrm.tables import EmbeddingTable

DIM = 64


def make_tables(cap: int, seed: int = 0) -> list[EmbeddingTable]:
    rng = np.random.default_rng(seed)
    return [EmbeddingTable(f"C{i + 1}", rng.standard_normal((min(n, cap), DIM), dtype=np.float32))
            for i, n in enumerate(CRITEO_KAGGLE_CARDINALITIES)]


def error_ratio(backend, batch, got, want, scale) -> float:
    """Largest error as a share of what is allowed: fp32 — |PIM - CPU| / sum|x| (the order of
    additions differs); integer modes — |PIM - CPU| / (L * s/2 + 1e-6 sum|x|), the quantisation
    bound of a sum of L rows with a per-segment scale s <= max|stored value| / qmax (cache rows hold
    pairs, so <= 2 max|W|)."""
    worst = 0.0
    qmax = {"i8": 127, "i32": (2**31 - 1) // backend.i32_headroom}.get(backend.value_mode)
    for t, (g, w, s) in enumerate(zip(got, want, scale)):
        err = np.abs(g.astype(np.float64) - w)
        if qmax is None:
            allowed = np.maximum(s, 1e-30)
        else:
            cached = backend.plan.tables[t].placement == "pim" and backend.plan.tables[t].n_cache > 0
            step = float(np.abs(backend.tables[t].weight).max()) * (2 if cached else 1) / qmax
            allowed = np.diff(batch.offsets[t])[:, None] * step / 2 + 1e-6 * s + 1e-30
        worst = max(worst, float((err / allowed).max()))
    return worst


def region_bytes(args, nr_dpus: int) -> int:
    """Table region per DPU: the emulated MRAM budget shared by the DPUs (8-byte multiple)."""
    return (args.mram_budget_mib << 20) // nr_dpus & ~7


def run_config(tables, abs_cpu, cpu, trace, pooling, nr_dpus, level, batch_sizes, repeats, seed, args):
    skewed = trace == "power-law"
    rng = np.random.default_rng(seed)
    ref_b = max(batch_sizes)
    # the profile carries the CPU kernel's rates measured on its sample: the planner's baseline
    profile = extract_profile([random_batch(tables, ref_b, pooling=pooling, skewed=skewed, rng=rng) for _ in range(4)],
                              [t.rows for t in tables], cpu_tables=tables)
    cfg = PlannerConfig(nr_dpus=nr_dpus, level=level, batch_size=ref_b, allow_cpu=not args.all_on_dpus,
                        value_mode="fp32" if args.value_mode == "f32" else "int32",
                        mram_bytes=(8 << 20) + region_bytes(args, nr_dpus), mram_reserve=8 << 20)
    backend = PimBackend(value_mode=args.value_mode, planner_config=cfg, cpu_fallback=args.cpu_fallback,
                         cpu_threads=args.threads)
    t = time.perf_counter()
    backend.load(tables, profile=profile)
    load_s = time.perf_counter() - t
    rows = []
    for b in batch_sizes:
        batch = random_batch(tables, b, pooling=pooling, skewed=skewed, rng=rng)
        want = cpu.lookup(batch)
        st0 = backend.stats()
        got = backend.lookup(batch)
        err = error_ratio(backend, batch, got, want, abs_cpu.lookup(batch))
        cpu_s, pim_s, measured, modelled = [], [], [], []
        for _ in range(repeats):
            t = time.perf_counter()
            cpu.lookup(batch)
            cpu_s.append(time.perf_counter() - t)
            before = backend.stats()
            t = time.perf_counter()
            backend.lookup(batch)
            pim_s.append(time.perf_counter() - t)
            after = backend.stats()
            measured.append({k: after.measured_s[k] - before.measured_s[k] for k in after.measured_s if k != "load"})
            modelled.append({k: after.modelled_s[k] - before.modelled_s[k] for k in after.modelled_s})
        st = backend.stats()
        med = lambda xs: statistics.median(xs)  # noqa: E731
        row = {
            "trace": trace, "pooling": pooling if isinstance(pooling, int) else f"{pooling[0]}-{pooling[1]}",
            "B": b, "dpus": nr_dpus, "level": level, "dpu_tables": len(tables) - len(st.extra["tables_on_cpu"]),
            "load_s": load_s, "max_error_ratio": err,
            "measured_ms": {k: med([m[k] for m in measured]) * 1e3 for k in measured[0]},
            "measured_pim_lookup_ms": med(pim_s) * 1e3,
            "measured_cpu_backend_ms": med(cpu_s) * 1e3,
            "modelled_ms": {k: med([m[k] for m in modelled]) * 1e3 for k in modelled[0]},
            "imbalance_reads": st.extra["imbalance"]["reads"],
            "imbalance_kernel_modelled": st.extra["imbalance"]["kernel_modelled"],
            "cache_hit_rate": st.extra["cache_hit_rate"],
            "cpu_fallback_share": ((st.extra["cpu_fallback_batches"] - st0.extra["cpu_fallback_batches"])
                                   / (st.batches - st0.batches)),
            "reads_saved_per_batch": st.extra["reads_saved"] / st.batches,
        }
        total = row["modelled_ms"]["total"]
        row["modelled_speedup_vs_measured_cpu"] = row["measured_cpu_backend_ms"] / total if total else float("nan")
        # the planner's own view: the cost model's CPU-only time of the same lookups
        units = backend.cost.cpu.batch_units(batch, tables)
        row["modelled_cpu_only_ms"] = backend.cost.cpu.seconds_units(units) * 1e3
        row["modelled_speedup_vs_modelled_cpu"] = row["modelled_cpu_only_ms"] / total if total else float("nan")
        rows.append(row)
    backend.close()
    return rows


def calibrate_host(tables, regions_mib=(4, 8, 48), repeats: int = 3, seed: int = 0) -> dict:
    """MEASURE the C reduction of pulled partial sums on this machine (the cost model's
    ``reduce_bytes_per_s``): B=4,096 power-law batches of 20-80 indices, 64 emulated DPUs with
    ``regions_mib`` of table region each (more region: fewer row groups, fewer partial sums),
    uniform and popularity plans; partial-sum bytes / seconds of the C reduction alone (the
    emulator's pull is not included: it is not a UPMEM transfer), median of ``repeats`` batches.
    The scatter's rates come from ``benchmarks/bench_scatter.py`` (full-size row maps)."""
    from updlrm.pim import emb_host

    rng = np.random.default_rng(seed)
    B = 4096
    profile = build_profile([random_batch(tables, B, pooling=(20, 80), skewed=True, rng=rng) for _ in range(2)],
                            [t.rows for t in tables])
    batch = random_batch(tables, B, pooling=(20, 80), skewed=True, rng=rng)
    reduce = emb_host._emb_pack.reduce_results
    spent = [0.0]

    def timed(*a):
        t = time.perf_counter()
        out = reduce(*a)
        spent[0] += time.perf_counter() - t
        return out

    points = []
    emb_host._emb_pack.reduce_results = timed
    try:
        for region in regions_mib:
            for level in ("uniform", "popularity"):
                cfg = PlannerConfig(nr_dpus=64, level=level, batch_size=B, allow_cpu=False,
                                    mram_bytes=(8 << 20) + (region << 20), mram_reserve=8 << 20)
                backend = PimBackend(planner_config=cfg, cpu_fallback=False, cpu_threads=1)
                backend.load(tables, profile=profile)
                backend.lookup(batch)
                runs = []
                for _ in range(repeats):
                    spent[0] = 0.0
                    backend.lookup(batch)
                    runs.append(spent[0])
                jobs = backend._scatter(batch)
                partial_bytes = float((jobs.n_bags * backend._segs.width[jobs.seg] * 4).sum())
                points.append({"region_mib": region, "level": level, "partial_bytes": partial_bytes,
                               "reduce_s": statistics.median(runs)})
                backend.close()
                print(f"region {region} MiB {level}: {points[-1]}", flush=True)
    finally:
        emb_host._emb_pack.reduce_results = reduce
    return {"points": points,
            "reduce_bytes_per_s": statistics.median(p["partial_bytes"] / p["reduce_s"] for p in points)}


def print_rows(rows) -> None:
    print("\nMEASURED on this host (ms, median): pim = whole PIM lookup incl. the emulator's wait; cpu = CPU backend")
    print("MODELLED (ms, cost model fed with the emulator's counters): what a UPMEM server would take;")
    print("spd/meas = measured CPU backend / modelled PIM total; spd/mod = modelled CPU-only / modelled PIM total")
    head = (f"{'trace':>9} {'pool':>5} {'B':>5} {'DPUs':>4} {'level':>10} {'tbl':>3} {'fb':>4} {'err':>8} | "
            f"{'scat':>6} {'push':>6} {'cpuT':>6} {'wait':>7} {'pullR':>6} {'pim':>7} {'cpu':>7} | "
            f"{'h2d':>6} {'kern':>6} {'d2h':>6} {'host':>6} {'total':>6} | {'imbR':>5} {'imbK':>5} {'hit%':>5} "
            f"{'spd/meas':>8} {'spd/mod':>7}")
    print(head)
    print("-" * len(head))
    for r in rows:
        me, mo = r["measured_ms"], r["modelled_ms"]
        print(f"{r['trace']:>9} {r['pooling']:>5} {r['B']:>5} {r['dpus']:>4} {r['level']:>10} {r['dpu_tables']:>3} {r['cpu_fallback_share']:>4.0%} "
              f"{r['max_error_ratio']:>8.1e} | {me['scatter']:>6.2f} {me['push']:>6.2f} {me['cpu_tables']:>6.2f} "
              f"{me['wait']:>7.2f} {me['pull_reduce']:>6.2f} {r['measured_pim_lookup_ms']:>7.2f} "
              f"{r['measured_cpu_backend_ms']:>7.2f} | {mo['h2d']:>6.3f} {mo['kernel']:>6.3f} {mo['d2h']:>6.3f} "
              f"{mo['host']:>6.3f} {mo['total']:>6.3f} | {r['imbalance_reads']:>5.2f} "
              f"{r['imbalance_kernel_modelled']:>5.2f} {100 * r['cache_hit_rate']:>5.1f} "
              f"{r['modelled_speedup_vs_measured_cpu']:>7.2f}x {r['modelled_speedup_vs_modelled_cpu']:>6.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="one trace, pooling 20-80, 64 DPUs")
    ap.add_argument("--cap", type=int, default=50_000, help="rows per table at most")
    ap.add_argument("--dpus", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 512, 4096])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="threads of the CPU backend and of the PIM backend's host pooling (default: all)")
    ap.add_argument("--traces", nargs="+", default=["power-law", "uniform"], choices=["power-law", "uniform"])
    ap.add_argument("--no-cpu-fallback", dest="cpu_fallback", action="store_false",
                    help="run every batch on the DPUs (by default the backend pools a batch on the host "
                         "when the model says that is faster)")
    ap.add_argument("--all-on-dpus", action="store_true", help="never keep tables on the CPU")
    ap.add_argument("--value-mode", default="f32", choices=["f32", "i32", "i8"])
    ap.add_argument("--mram-budget-mib", type=int, default=512, help="MRAM table region of all DPUs together")
    ap.add_argument("--json", help="write the rows here")
    ap.add_argument("--calibrate-host", action="store_true",
                    help="only measure the reduction rate of partial sums (a cost-model constant)")
    args = ap.parse_args()
    tables = make_tables(args.cap)
    if args.calibrate_host:
        cal = calibrate_host(tables, repeats=args.repeats)
        print(f"MEASURED here: reduction of partial sums {cal['reduce_bytes_per_s'] / 1e9:.2f} GB/s")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(cal, f, indent=1)
        return
    cpu = CpuBackend(threads=args.threads)
    cpu.load(tables)
    abs_cpu = CpuBackend(threads=args.threads)
    abs_cpu.load([EmbeddingTable(t.name, np.abs(t.weight)) for t in tables])
    traces = ["power-law"] if args.quick else args.traces
    poolings = [(20, 80)] if args.quick else [1, (20, 80)]
    dpus = args.dpus[:1] if args.quick else args.dpus
    rows = []
    start = time.perf_counter()
    for trace in traces:
        for pooling in poolings:
            for n in dpus:
                for level in ("uniform", "popularity", "cache"):
                    rows += run_config(tables, abs_cpu, cpu, trace, pooling, n, level, args.batch_sizes,
                                       args.repeats, len(rows), args)
                    print(f"[{time.perf_counter() - start:7.1f} s] {trace} pooling {pooling} {n} DPUs {level}: "
                          f"load {rows[-1]['load_s']:.1f} s", flush=True)
    print(f"\n{len(tables)} tables (Criteo Kaggle cardinalities capped at {args.cap:,} rows), dim {DIM}, "
          f"values {args.value_mode}, {args.mram_budget_mib} MiB of table region over the DPUs, "
          f"{'all tables on the DPUs' if args.all_on_dpus else 'planner may keep tables on the CPU'}")
    print_rows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
