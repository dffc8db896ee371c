"""Host scatter of the PIM backend: MEASURED wall time per batch, and the cost model's host rates.

The scatter needs a plan, not DPUs, so this runs :class:`updlrm.pim.scatter.BatchScatter` on plans
for the real Criteo Kaggle cardinalities (row maps of up to 10 M rows, far larger than any cache)
as well as capped ones, 2,560 DPUs, B=4,096 bags of 20-80 power-law indices, every table forced
onto the DPUs (so every kind of table is scattered), int32 plans, uniform and popularity levels,
plus the planner's own popularity plan (hybrid tables: hot rows on the DPUs, cold rows routed to
the host).

For each plan and thread count (1, 2) it times whole scatter calls (median of ``--repeats`` over
held-out batches) and counts what the cost model charges for: row-mapped lookups, copied lookups
(whole tables) and partial sums of row-mapped tables. A least-squares fit per thread count of

    seconds = a * routed_reads + c * copied_lookups + p * routed_partials + h * host_rows

(routed: every read of a table that is not whole, one per index and column slice; copied: the
indices of whole tables; host rows: indices of hybrid tables routed to the host) gives the cost
model's ``scatter_s_per_read`` / ``copy_s_per_lookup`` / ``scatter_s_per_partial`` /
``scatter_s_per_host_row``
(pim/cost_model.py's defaults come from this script, 2 threads).

Usage: ``python benchmarks/bench_scatter.py [--caps 50000,2000000,0] [--repeats 7] [--json FILE]``
(cap 0 = the real cardinalities).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np

from updlrm.datasets.synthetic import CRITEO_KAGGLE_CARDINALITIES, random_batch
from updlrm.pim.partitioner import Level, PlannerConfig, make_plan
from updlrm.pim.plan import TableSpec
from updlrm.pim.profile import build_profile
from updlrm.pim.scatter import BatchScatter

DIM, B, POOLING = 64, 4096, (20, 80)


def measure(plan, specs, batches, threads: int, repeats: int) -> tuple[float, dict]:
    """Median wall seconds of one scatter call, and the counts of the last batch's jobs."""
    scatter = BatchScatter(plan, specs, threads=threads)
    try:
        scatter(batches[0])   # buffers allocated, pages touched
        times = []
        for r in range(repeats):
            batch = batches[r % len(batches)]
            t0 = time.perf_counter()
            jobs = scatter(batch)
            times.append(time.perf_counter() - t0)
        counts = {"routed": jobs.reads_routed, "copied": jobs.lookups_copied,
                  "partials": jobs.partials_routed, "host_rows": jobs.lookups_to_host}
    finally:
        scatter.close()
    return statistics.median(times), counts


def fit(points: list[dict]) -> dict[str, float]:
    """Least squares of seconds = a*routed + c*copied + p*partials + h*host_rows (non-negative by
    clipping)."""
    x = np.array([[p["routed"], p["copied"], p["partials"], p["host_rows"]] for p in points], np.float64)
    y = np.array([p["seconds"] for p in points])
    coef = np.clip(np.linalg.lstsq(x, y, rcond=None)[0], 0.0, None)
    worst = float(np.max(np.abs(x @ coef - y) / y))
    return {"scatter_s_per_read": coef[0], "copy_s_per_lookup": coef[1], "scatter_s_per_partial": coef[2],
            "scatter_s_per_host_row": coef[3], "worst_relative_error": worst}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--caps", default="50000,2000000,0", help="row caps of the tables (0: real cardinalities)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    points = []
    print("| rows cap | plan | routed reads | copied lookups | routed partials | host rows | threads | "
          "ms (median) | ns per lookup |\n|---|---|---|---|---|---|---|---|---|")
    for cap in (int(c) for c in args.caps.split(",")):
        rows = [min(n, cap) if cap else n for n in CRITEO_KAGGLE_CARDINALITIES]
        specs = [TableSpec(f"C{i + 1}", n, DIM) for i, n in enumerate(rows)]
        profile = build_profile([random_batch(specs, B, pooling=POOLING, skewed=True, rng=rng) for _ in range(2)],
                                rows, exact_limit=1 << 24)
        held_out = [random_batch(specs, B, pooling=POOLING, skewed=True, rng=rng) for _ in range(3)]
        configs = {f"{level.value}, all on DPUs": PlannerConfig(nr_dpus=2560, level=level, batch_size=B,
                                                                  value_mode="int32", allow_cpu=False)
                   for level in (Level.UNIFORM, Level.POPULARITY)}
        if cap == 0 or cap >= 1_000_000:   # big enough for the planner to make tables hybrid
            configs["popularity, planner's choice"] = PlannerConfig(nr_dpus=2560, level=Level.POPULARITY,
                                                                    batch_size=B, value_mode="int32")
        for name, cfg in configs.items():
            plan = make_plan(specs, profile, cfg)
            for threads in (1, 2):
                seconds, counts = measure(plan, specs, held_out, threads, args.repeats)
                lookups = sum(len(i) for i in held_out[0].indices)
                points.append({"cap": cap, "plan": name, "threads": threads, "seconds": seconds, **counts})
                print(f"| {cap or 'none'} | {name} | {counts['routed']:,} | {counts['copied']:,} | "
                      f"{counts['partials']:,} | {counts['host_rows']:,} | {threads} | {seconds * 1e3:.2f} | "
                      f"{seconds / lookups * 1e9:.2f} |", flush=True)
    fits = {threads: fit([p for p in points if p["threads"] == threads]) for threads in (1, 2)}
    for threads, f in fits.items():
        print(f"\nfit, {threads} thread(s): {f['scatter_s_per_read'] * 1e9:.2f} ns per routed read, "
              f"{f['copy_s_per_lookup'] * 1e9:.2f} ns per copied lookup, {f['scatter_s_per_partial'] * 1e9:.2f} ns "
              f"per partial sum, {f['scatter_s_per_host_row'] * 1e9:.2f} ns per host row "
              f"(worst point off by {f['worst_relative_error']:.0%})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"points": points, "fits": {str(k): v for k, v in fits.items()}}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
