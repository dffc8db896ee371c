"""Evaluation of the partitioner levels on a Criteo-shaped model (issue 4, the modelled parts).

Everything this script prints as a time is MODELLED by ``updlrm.pim.cost_model`` (a calibrated
model of a UPMEM server), except the CPU-only baseline: by default it is MEASURED in the same run,
per workload, by updlrm's own CPU kernel pooling that workload's held-out batches over tables of
the real cardinalities (8.6 GB of fp32 on huge pages; ``--quick`` caps them), and the planner
decides what stays on the host against that rate. ``--cpu-lookups-per-s`` fixes the rate instead
(e.g. 40e6, reference/baselines.md's torch rate for 8 tables of 2 M rows, all DRAM misses, on an
older VM of this kind). Sections:

1. cost-model validation: modelled vs published figures (the table of docs/cost_model.md);
2. the three levels on 2,560 DPUs, B=4096, pooling 20-80, power-law and uniform traces (with the
   CPU fallback, and with every table forced onto the DPUs),
   fp32 and int32 values: imbalance (planner's expectation and on held-out batches), MRAM reads
   saved by the cache, modelled latency per stage, modelled speedup over the CPU-only baseline
   (this VM's rate, and a host scaled to a server's stated memory bandwidth);
3. pooling 1;
4. sweeps over batch size (64..4096) and DPU count (256..2,560);
5. skew: the hottest 1% of rows taking 50-90% of the accesses (cache level, int32);
6. a model of big tables only (8 x 2 M rows x 64, issue 2's benchmark model), uniform and power
   law, with the CPU fallback and with every table on the DPUs.

Per-DPU load PNGs per level go to ``--out``.

Usage: ``python benchmarks/eval_partitioner.py [--quick] [--cpu-lookups-per-s R] [--out DIR] [--json FILE]``
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from updlrm.pim.cost_model import (DEFAULT_CPU_LOOKUPS_PER_S, LIGHT_GIBPS, LIGHT_NR_DPUS, LIGHT_SIZES, CostModel,
                                   CpuRates, DpuModel, TransferModel, pel_cloud8_work)
from updlrm.pim.partitioner import Level, PlannerConfig, make_plan, report
from updlrm.pim.plan import TableSpec
from updlrm.pim.profile import build_profile
from updlrm.datasets.synthetic import CRITEO_KAGGLE_CARDINALITIES, random_batch
from updlrm.hugepages import empty_on_huge_pages
from updlrm.pim.calibrate import measure_cpu_rates
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable

DIM = 64
# sequential read bandwidth of this VM, 2 threads (reference/baselines.md headline table)
THIS_VM_SEQ_GBPS = 21.8


# ---------------------------------------------------------------------------------------------
# 1. cost model validation

def validation_rows() -> list[tuple[str, float, str, str]]:
    """(what, modelled, published, source) rows; modelled numbers are labelled as such."""
    d, tm, cm = DpuModel(), TransferModel(), CostModel()
    rows = [
        ("MRAM read bandwidth, 2,048-B DMA (MB/s)", d.mram_bandwidth(2048) / 1e6, "628.23", "PrIM [R]"),
        ("MRAM write bandwidth, 2,048-B DMA (MB/s)", d.mram_bandwidth(2048, True) / 1e6, "633.22", "PrIM [R]"),
        ("MRAM read bandwidth, 8-B DMA (MB/s)", d.mram_bandwidth(8) / 1e6, "n/a (model: latency-bound)", ""),
        ("MRAM read bandwidth, 256-B DMA (MB/s)", d.mram_bandwidth(256) / 1e6, "n/a", ""),
        ("INT32 add, 1 DPU, 16 tasklets (MOPS)", d.add_throughput("int32", 16) / 1e6, "58.56", "PrIM Fig. 4 [R]"),
        ("FLOAT add, 1 DPU, 16 tasklets (MOPS)", d.add_throughput("fp32", 16) / 1e6, "4.91", "PrIM Fig. 4 [R]"),
        ("INT32 add, 1 tasklet (MOPS)", d.add_throughput("int32", 1) / 1e6, "n/a (1/11 of peak)", ""),
    ]
    for direction, name in (("to_dpu", "CPU->DPU"), ("from_dpu", "DPU->CPU")):
        rows.append((f"{name} 1 rank, 32 MB/DPU (GB/s)", 64 * 32e6 / tm.seconds(32e6, 64, direction) / 1e9,
                     "6.68" if direction == "to_dpu" else "4.74", "PrIM Fig. 10 [S]/[R] (calibration)"))
        for size, gibps in zip(LIGHT_SIZES, LIGHT_GIBPS[direction]):
            if size in (1024, 16384, 65536, 524288, 1048576):
                model = LIGHT_NR_DPUS * size / tm.seconds(size, LIGHT_NR_DPUS, direction) / 2**30
                rows.append((f"{name} 32 ranks, {int(size) // 1024} KiB/DPU (GiB/s)", model, f"{gibps}",
                             "LIGHT UPMEM_1.txt [V] (calibration)"))
        # leave-one-out: calibrate without the 16 KiB point and predict it
        k = list(LIGHT_SIZES).index(16384)
        gib = dict(tm.gibps)
        gib[direction] = tuple(v for i, v in enumerate(LIGHT_GIBPS[direction]) if i != k)
        loo = TransferModel(sizes=tuple(s for i, s in enumerate(LIGHT_SIZES) if i != k), gibps=gib)
        rows.append((f"{name} 32 ranks, 16 KiB/DPU, point left out of calibration (GiB/s)",
                     LIGHT_NR_DPUS * 16384 / loo.seconds(16384, LIGHT_NR_DPUS, direction) / 2**30,
                     f"{LIGHT_GIBPS[direction][k]}", "LIGHT [V] (held out)"))
    rows.append(("CPU->DPU per call, 1 KiB/DPU, 2,048 DPUs (ms)", tm.seconds(1024, 2048, "to_dpu") * 1e3, "0.56",
                 "LIGHT [V]"))
    rows.append(("DPU->CPU per call, 1 KiB/DPU, 2,048 DPUs (ms)", tm.seconds(1024, 2048, "from_dpu") * 1e3, "1.06",
                 "LIGHT [V]"))
    pel = pel_cloud8_work()
    st = cm.stages(pel)
    rows.append(("PIM-Embedding-Lookup cloud8 batch: 30 x 14M x 64 int32, 32 x 128 idx, 1,920 DPUs (ms)",
                 st.total * 1e3, "3.3-4.6", "PEL upmem/PERF.md [V] (out of sample)"))
    for k, v in st.as_dict().items():
        if k not in ("total", "cpu_tables", "scatter"):
            rows.append((f"  of which {k} (ms)", v * 1e3, "", ""))
    return rows


# ---------------------------------------------------------------------------------------------
# workloads

def make_batch(rows: list[int], batch: int, pooling: tuple[int, int], skewed: bool, rng: np.random.Generator,
               top1_share: float | None = None):
    """Per-table indices and B+1 offsets of ``random_batch`` (bag sizes uniform in ``pooling``,
    inclusive; ``top1_share``: the power law's share of accesses to the hottest 1% of rows, None: ~50%)."""
    specs = [TableSpec(f"C{t + 1}", n, DIM) for t, n in enumerate(rows)]
    sparse = random_batch(specs, batch, pooling=pooling, skewed=skewed, rng=rng, top1_share=top1_share)
    return list(sparse.indices), list(sparse.offsets)


def cpu_only_seconds(cost: CostModel, plan, idx: list[np.ndarray]) -> float:
    """The batch pooled by the CPU kernel, at the cost model's (per-table) rates."""
    return cost.cpu.seconds_units(sum(cost.cpu.units(tp.spec, len(i)) for tp, i in zip(plan.tables, idx)))


class CpuBaseline:
    """The CPU-only rate per workload: MEASURED on its held-out batches with updlrm's CPU kernel
    over tables shaped and named as ``specs`` (filled, on huge pages, as a loaded model's would
    be: the per-table rates go by name), or a fixed ``rate``. The tables are made at the first
    measurement."""

    def __init__(self, specs: list[TableSpec], rate: float | None):
        self.specs = specs
        self.rate = rate
        self.tables: list[EmbeddingTable] | None = None
        self._measured: dict[int, CpuRates] = {}

    @property
    def source(self) -> str:
        return "given" if self.rate is not None else "MEASURED here, updlrm CPU kernel on the held-out batches"

    def cost(self, cost: CostModel, held: list) -> CostModel:
        """``cost`` with the CPU rate of the workload whose held-out batches are ``held``."""
        if self.rate is not None:
            return cost.with_cpu_rates(CpuRates(self.rate))
        if self.tables is None:
            self.tables = [EmbeddingTable(s.name, filled_table(s.rows)) for s in self.specs]
        if id(held) not in self._measured:
            batches = [SparseBatch.from_jagged(idx, off, include_last_offset=True) for idx, off in held]
            self._measured[id(held)] = measure_cpu_rates(self.tables, batches, max_batches=len(batches),
                                                         repeats=5, source="MEASURED here on the held-out batches")
        return cost.with_cpu_rates(self._measured[id(held)])


def filled_table(rows: int) -> np.ndarray:
    """A [rows, DIM] float32 table on huge pages, every page touched (never the zero page)."""
    table = empty_on_huge_pages((rows, DIM), np.float32)
    table.fill(0.5)
    return table


def server_cost(cost: CostModel, scale: float) -> CostModel:
    """Every host-side rate (CPU gathers, scatter, reduction) ``scale`` times faster."""
    cpu = CpuRates(cost.cpu.lookups_per_s * scale, {k: v * scale for k, v in cost.cpu.table_rates.items()})
    return cost.with_cpu_rates(cpu).with_(scatter_s_per_read=cost.scatter_s_per_read / scale,
                                          copy_s_per_lookup=cost.copy_s_per_lookup / scale,
                                          scatter_s_per_partial=cost.scatter_s_per_partial / scale,
                                          reduce_bytes_per_s=cost.reduce_bytes_per_s * scale)


# ---------------------------------------------------------------------------------------------
# evaluation of one plan

def evaluate(plan, cost: CostModel, held_out: list, png: str | None) -> dict:
    rep = report(plan, cost, png)
    out = rep.as_dict()
    elements = np.zeros(plan.nr_dpus)
    kernel = np.zeros(plan.nr_dpus)
    totals, cpu_times, saved, hits, lookups = [], [], 0, 0, 0
    active = plan.mram_used() > 0
    for idx, off in held_out:
        work, stats = plan.work(idx, off, cost.cpu)
        st = cost.stages(work)
        elements += work.elements
        kernel += st.kernel_per_dpu if st.kernel_per_dpu is not None else 0.0
        totals.append(st.total)
        cpu_times.append(cpu_only_seconds(cost, plan, idx))
        saved += stats["reads_saved"]
        hits += stats["cache_hits"]
        lookups += sum(len(i) for i in idx)
    out["trace"] = {
        "imbalance_elements": float(elements.max() / elements[active].mean()) if active.any() else 1.0,
        "imbalance_kernel": float(kernel.max() / kernel[active].mean()) if active.any() else 1.0,
        "modelled_total_s": float(np.mean(totals)),
        "cpu_only_modelled_s": float(np.mean(cpu_times)),
        "modelled_speedup": float(np.mean(cpu_times) / np.mean(totals)),
        "reads_saved_share": saved / lookups if lookups else 0.0,
        "cache_hits_per_batch": hits / len(held_out),
    }
    return out


def plan_and_eval(specs, profile, cfg, cost, held_out, png=None) -> dict:
    """Plan with ``cost`` (its CPU rate the workload's baseline) and evaluate on ``held_out``."""
    t0 = time.perf_counter()
    plan = make_plan(specs, profile, dataclasses.replace(cfg, cost=cost))
    res = evaluate(plan, cost, held_out, png)
    res["planner_s"] = time.perf_counter() - t0
    hybrid = [tp for tp in plan.tables if tp.n_host_rows]
    res["hybrid_tables"] = f"{len(hybrid)} ({sum(tp.spec.rows - tp.n_host_rows for tp in hybrid):,})" if hybrid else "0"
    # the hybrid tables' host rows read by the held-out batches: the planner's estimate is from the sample
    res["trace"]["host_row_share_of_hybrid_lookups"] = _host_share(plan, held_out)
    return res


def _host_share(plan, held_out) -> float | None:
    hybrid = [t for t, tp in enumerate(plan.tables) if tp.n_host_rows]
    if not hybrid:
        return None
    host = total = 0
    for idx, off in held_out:
        for t in hybrid:
            host += len(plan.route(t, idx[t], off[t]).host_rows)
            total += len(idx[t])
    return host / total


def fmt_row(name: str, r: dict) -> str:
    st, tr = r["modelled_s"], r["trace"]
    return (f"| {name} | {len(r['tables_on_cpu'])} | {r['hybrid_tables']} | {r['active_dpus']} | {r['split_by']} | "
            f"{r['imbalance_elements']:.3f} / {r['imbalance_kernel']:.3f} | "
            f"{tr['imbalance_elements']:.3f} / {tr['imbalance_kernel']:.3f} | {tr['reads_saved_share']:.2%} | "
            f"{st['scatter'] * 1e3:.2f} | {st['h2d'] * 1e3:.2f} | {st['kernel'] * 1e3:.2f} | {st['d2h'] * 1e3:.2f} | "
            f"{st['reduce'] * 1e3:.2f} | {st['cpu_tables'] * 1e3:.2f} | {st['total'] * 1e3:.2f} | "
            f"{tr['modelled_total_s'] * 1e3:.2f} | {r['cpu_lookups_per_s'] / 1e6:.0f} | "
            f"{tr['cpu_only_modelled_s'] * 1e3:.2f} | {tr['modelled_speedup']:.2f}x |")


HEADER = ("| config | tables on CPU | hybrid tables (rows on DPUs) | DPUs used | replicas split by | "
          "imbalance expected accesses / kernel | imbalance held-out accesses / kernel | "
          "reads saved by cache | scatter | h2d | kernel | d2h | reduce | CPU tables | total (expected) | "
          "total (held-out) | CPU M/s | CPU-only | speedup (held-out) |\n" + "|---" * 20 + "|")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tables capped at 200k rows, fewer configs (smoke test)")
    ap.add_argument("--cpu-lookups-per-s", type=float, default=None,
                    help="fix the CPU-only rate at dim 64 (default: measure it per workload, in this run; "
                         f"reference/baselines.md's older figure is {DEFAULT_CPU_LOOKUPS_PER_S:.0f})")
    ap.add_argument("--server-mem-gbps", type=float, default=153.6,
                    help="stated memory bandwidth of a server host (default: 2 sockets x 4 DDR4-2400 channels "
                         "left for DRAM next to the PIM DIMMs); host rates scale by it / this VM's 21.8 GB/s")
    ap.add_argument("--out", default=None, help="folder for per-level load PNGs")
    ap.add_argument("--json", default=None, help="write all results here")
    ap.add_argument("--sections", default="2,2b,3,4,5,6", help="which evaluation sections to run (comma list)")
    ap.add_argument("--profile-batches", type=int, default=8,
                    help="batches of 4,096 bags in the access profile (exact counts for every table)")
    args = ap.parse_args(argv)
    sections = set(args.sections.split(","))

    rows = [min(n, 200_000) for n in CRITEO_KAGGLE_CARDINALITIES] if args.quick else list(CRITEO_KAGGLE_CARDINALITIES)
    specs = [TableSpec(f"C{i + 1}", n, DIM) for i, n in enumerate(rows)]
    results: dict = {"validation": [], "main": {}, "pooling1": {}, "sweep": {}, "skew": {}}

    print("## 1. Cost model validation (modelled vs published)\n")
    print("| quantity | modelled | published | source |\n|---|---|---|---|")
    for what, model, pub, src in validation_rows():
        print(f"| {what} | {model:.3g} | {pub} | {src} |")
        results["validation"].append({"what": what, "modelled": model, "published": pub, "source": src})

    baseline = CpuBaseline(specs, args.cpu_lookups_per_s)
    cost = CostModel()
    scale = args.server_mem_gbps / THIS_VM_SEQ_GBPS
    results["cpu_rate_source"] = baseline.source
    results["server_scale"] = scale
    print(f"\nCPU-only baseline: {baseline.source} (its rate per row in column 'CPU M/s'); server host: "
          f"all host rates, the CPU's included, x{scale:.2f} ({args.server_mem_gbps} GB/s stated vs "
          f"{THIS_VM_SEQ_GBPS} GB/s)")

    rng = np.random.default_rng(0)
    n_profile = 2 if args.quick else args.profile_batches
    workloads = {}
    for trace in ("powerlaw", "uniform"):
        for pooling in ((20, 80), (1, 1)):
            if trace == "uniform" and pooling == (1, 1):
                continue
            skewed = trace == "powerlaw"
            t0 = time.perf_counter()
            sample = [make_batch(rows, 4096, pooling, skewed, rng) for _ in range(n_profile)]
            # exact counts for every table (up to 16 M rows): hybrid cuts rank rows by them
            prof = build_profile(sample, rows, names=[s.name for s in specs], exact_limit=1 << 24)
            held = [make_batch(rows, 4096, pooling, skewed, rng) for _ in range(2)]
            workloads[(trace, pooling)] = (prof, held)
            top = np.mean([p.top_share(max(1, p.num_rows // 100)) for p in prof.tables if p.exact])
            print(f"profile {trace} pooling {pooling}: {time.perf_counter() - t0:.1f} s, mean top-1% share "
                  f"(exact tables) {top:.3f}", file=sys.stderr)

    base = PlannerConfig(nr_dpus=2560, batch_size=4096)
    out_dir = Path(args.out) if args.out else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)

    if "2" in sections:
        print("\n## 2. Levels on 2,560 DPUs, B=4096, pooling 20-80 (all times MODELLED but the "
              "CPU-only baseline, ms per batch; accesses = values read, i.e. row slices x width)\n")
        print(HEADER)
        modes = ("int32",) if args.quick else ("int32", "fp32")
        for trace in ("powerlaw", "uniform"):
            prof, held = workloads[(trace, (20, 80))]
            for mode in modes if trace == "powerlaw" else ("int32",):
                for level in Level:
                    png = str(out_dir / f"load_{trace}_{mode}_{level.value}.png") if out_dir else None
                    cfg = dataclasses.replace(base, level=level, value_mode=mode)
                    r = plan_and_eval(specs, prof, cfg, baseline.cost(cost, held), held, png)
                    results["main"][f"{trace}/{mode}/{level.value}"] = r
                    print(fmt_row(f"{trace} {mode} {level.value}", r), flush=True)
            if trace == "powerlaw":
                for level in Level:
                    cfg = dataclasses.replace(base, level=level, value_mode="int32")
                    r = plan_and_eval(specs, prof, cfg, server_cost(baseline.cost(cost, held), scale), held)
                    results["main"][f"{trace}/int32/{level.value}/server-host"] = r
                    print(fmt_row(f"{trace} int32 {level.value}, server host x{scale:.1f}", r), flush=True)

    if "2b" in sections:
        print("\n## 2b. Same, every table forced onto the DPUs (no CPU fallback): big tables are cut by rows\n")
        print(HEADER)
        for trace in ("powerlaw", "uniform"):
            prof, held = workloads[(trace, (20, 80))]
            for level in Level:
                png = str(out_dir / f"load_all_on_dpus_{trace}_{level.value}.png") if out_dir else None
                cfg = dataclasses.replace(base, level=level, value_mode="int32", allow_cpu=False)
                r = plan_and_eval(specs, prof, cfg, baseline.cost(cost, held), held, png)
                results["main"][f"{trace}/int32/{level.value}/all-on-dpus"] = r
                print(fmt_row(f"{trace} int32 {level.value}, all on DPUs", r), flush=True)

    if "3" in sections:
        print("\n## 3. Pooling 1 (power-law), 2,560 DPUs, B=4096, int32\n")
        print(HEADER)
        prof1, held1 = workloads[("powerlaw", (1, 1))]
        for level in Level:
            r = plan_and_eval(specs, prof1, dataclasses.replace(base, level=level, value_mode="int32"),
                               baseline.cost(cost, held1), held1)
            results["pooling1"][level.value] = r
            print(fmt_row(f"pooling 1 {level.value}", r), flush=True)

    if "4" in sections:
        print("\n## 4. Sweeps: cache level, int32, power-law, pooling 20-80\n")
        print(HEADER)
        prof, _ = workloads[("powerlaw", (20, 80))]
        batches = (64, 4096) if args.quick else (64, 512, 4096)
        dpus = (256, 2560) if args.quick else (256, 1024, 2560)
        for b in batches:
            held_b = [make_batch(rows, b, (20, 80), True, rng) for _ in range(2)]
            for n in dpus:
                cfg = dataclasses.replace(base, level=Level.CACHE, value_mode="int32", nr_dpus=n, batch_size=b)
                r = plan_and_eval(specs, prof, cfg, baseline.cost(cost, held_b), held_b)
                results["sweep"][f"B{b}/D{n}"] = r
                print(fmt_row(f"B={b}, {n} DPUs", r), flush=True)

    if "5" in sections:
        print("\n## 5. Skew: share of accesses to the hottest 1% of rows, cache level, int32, B=4096, "
              "pooling 20-80, 2,560 DPUs\n")
        print(HEADER)
        for share in (0.5, 0.7, 0.8, 0.9):
            sample = [make_batch(rows, 4096, (20, 80), True, rng, share) for _ in range(n_profile)]
            prof = build_profile(sample, rows, names=[s.name for s in specs], exact_limit=1 << 24)
            held_s = [make_batch(rows, 4096, (20, 80), True, rng, share) for _ in range(2)]
            cfg = dataclasses.replace(base, level=Level.CACHE, value_mode="int32")
            r = plan_and_eval(specs, prof, cfg, baseline.cost(cost, held_s), held_s)
            results["skew"][f"top1-{share}"] = r
            print(fmt_row(f"top 1% of rows: {share:.0%} of accesses", r), flush=True)

    if "6" in sections:
        big_rows = [200_000 if args.quick else 2_000_000] * 8
        print(f"\n## 6. Big tables only: 8 x {big_rows[0]:,} rows x {DIM}, B=4096, pooling 20-80, int32, "
              "2,560 DPUs\n")
        print(HEADER)
        big_specs = [TableSpec(f"B{i + 1}", n, DIM) for i, n in enumerate(big_rows)]
        big_baseline = CpuBaseline(big_specs, args.cpu_lookups_per_s)
        for trace in ("uniform", "powerlaw"):
            sample = [make_batch(big_rows, 4096, (20, 80), trace == "powerlaw", rng) for _ in range(n_profile)]
            prof = build_profile(sample, big_rows, names=[s.name for s in big_specs], exact_limit=1 << 24)
            held_b = [make_batch(big_rows, 4096, (20, 80), trace == "powerlaw", rng) for _ in range(2)]
            for level in (Level.UNIFORM, Level.POPULARITY):
                for allow_cpu in (True, False):
                    cfg = dataclasses.replace(base, level=level, value_mode="int32", allow_cpu=allow_cpu)
                    r = plan_and_eval(big_specs, prof, cfg, big_baseline.cost(cost, held_b), held_b)
                    name = f"{trace} {level.value}" + ("" if allow_cpu else ", all on DPUs")
                    results.setdefault("big_tables", {})[name] = r
                    print(fmt_row(name, r), flush=True)
        del big_baseline

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
