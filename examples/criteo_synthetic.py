"""Score synthetic Criteo-shaped power-law traffic with updlrm and show how the tables would be
partitioned over UPMEM DPUs.

    python examples/criteo_synthetic.py [--samples 32768] [--max-rows 2000000] [--pooling 20-80]

What it does:
1. builds the Criteo-shaped DLRM of ``criteo_dlrm.py`` (13 dense features, 26 sum bags; table
   sizes are the Criteo Kaggle cardinalities capped at ``--max-rows``, ~0.7 GB of fp32 weights by
   default) and exports it the way the DLRM reference script does;
2. generates ``--samples`` requests with ``updlrm.datasets.synthetic.criteo_synthetic``: per table,
   ``--top1-share`` of the accesses go to its hottest 1% of rows; bags hold ``--pooling``
   indices (default 20-80, UpDLRM's multi-hot setting; ``--pooling 1`` is Criteo's one-hot, for
   which the planner keeps every table on the CPU: by the cost model one lookup per bag does not
   pay for the DPU transfers);
3. scores them with ``Session.score`` on the CPU backend (progress bar on a terminal), and checks
   the first ``--check-samples`` scores against PyTorch;
4. profiles the traffic (``updlrm.datasets.traces.extract_profile``) and plans the tables over
   ``--dpus`` DPUs at the three partitioning levels (uniform / popularity / cache), printing each
   plan's report and writing ``load_<level>.png`` (per-DPU load) — every time there is MODELLED
   by the cost model, not measured;
5. scores ``--pim-samples`` requests (0: skip) with ``backend="pim"`` on ``--pim-dpus`` DPUs (the
   emulator unless the UPMEM SDK is installed; slow, keep it small) and checks them against the
   CPU scores.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import updlrm
from criteo_dlrm import CriteoDLRM, export
from updlrm.datasets import ArraySamples
from updlrm.datasets.synthetic import DEFAULT_TOP1_SHARE, criteo_rows, criteo_synthetic
from updlrm.datasets.traces import extract_profile
from updlrm.pim.partitioner import PlannerConfig, compare_levels


def parse_pooling(text: str) -> int | tuple[int, int]:
    lo, _, hi = text.partition("-")
    return (int(lo), int(hi)) if hi else int(lo)


def torch_scores(model: CriteoDLRM, dense: np.ndarray, sparse: updlrm.SparseBatch) -> np.ndarray:
    """The PyTorch model on the same requests (one offsets/indices tensor per table: bags may
    hold a different number of indices in each table)."""
    offsets = [torch.from_numpy(np.asarray(o[:-1], np.int64)) for o in sparse.offsets]
    indices = [torch.from_numpy(np.asarray(i, np.int64)) for i in sparse.indices]
    with torch.inference_mode():
        return model(torch.from_numpy(dense), offsets, indices).numpy().reshape(-1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=32_768)
    ap.add_argument("--max-rows", type=int, default=2_000_000, help="cap on every table's rows")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--top1-share", type=float, default=DEFAULT_TOP1_SHARE,
                    help="share of each table's accesses that hit its hottest 1%% of rows (0.01: uniform)")
    ap.add_argument("--pooling", type=parse_pooling, default=(20, 80), help="indices per bag: N or LO-HI")
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--check-samples", type=int, default=4096, help="scores compared with PyTorch")
    ap.add_argument("--profile-samples", type=int, default=16_384, help="requests the access profile reads")
    ap.add_argument("--dpus", type=int, default=2560, help="DPUs of the modelled partition plans")
    ap.add_argument("--pim-samples", type=int, default=512, help="requests scored on the PIM backend (0: skip)")
    ap.add_argument("--pim-dpus", type=int, default=32,
                    help="emulated DPUs keep their MRAM in host memory: ~2x 64 MB each at most")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/updlrm-criteo-synthetic"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(args.seed)
    rows = criteo_rows(args.max_rows)
    model = CriteoDLRM(rows, dim=args.dim).eval()
    onnx_path = args.workdir / "criteo_synthetic.onnx"
    t = time.perf_counter()
    export(model, onnx_path)
    print(f"exported {onnx_path} ({onnx_path.stat().st_size / 1e6:,.0f} MB, {sum(rows):,} rows in 26 tables) "
          f"in {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    traffic = criteo_synthetic(args.samples, rows=rows, top1_share=args.top1_share, pooling=args.pooling,
                               seed=args.seed)
    dense, sparse = traffic.dense["dense_x"], traffic.sparse
    lookups = sum(int(o[-1]) for o in sparse.offsets)
    print(f"generated {args.samples:,} requests ({lookups:,} lookups, top-1% share {args.top1_share:.2f}) "
          f"in {time.perf_counter() - t:.2f} s")

    with updlrm.load(onnx_path) as session:
        tables = session.tables
        t = time.perf_counter()
        scores = session.score((dense, sparse), batch_size=args.batch_size)
        elapsed = time.perf_counter() - t
        stats = session.stats()
    print(f"updlrm (cpu backend): {len(scores):,} samples in {elapsed:.2f} s "
          f"({len(scores) / elapsed:,.0f} samples/s, measured)")
    print("  per stage (s, measured): " + ", ".join(f"{k} {v:.3f}" for k, v in stats.measured_s.items()))
    n_check = min(args.check_samples, args.samples)
    diff = float(np.abs(scores[:n_check] - torch_scores(model, dense[:n_check], sparse.slice(0, n_check))).max())
    print(f"max |updlrm - pytorch| = {diff:.2e} over {n_check:,} scores")
    if diff > 1e-5:
        raise SystemExit("scores differ from PyTorch by more than 1e-5")

    t = time.perf_counter()
    profile = extract_profile(ArraySamples({"dense_x": dense}, sparse), [tb.rows for tb in tables],
                              names=[tb.name for tb in tables], batch_size=args.batch_size,
                              max_samples=args.profile_samples, cpu_tables=tables)
    # a table read fewer times than it has rows shows an inflated top-1% share (rows hit once by
    # chance fill its top 1%): report the largest tables the sample covers
    covered = sorted((row for row in profile.summary() if row["lookups"] >= row["rows"] / 2),
                     key=lambda row: -row["rows"])[:5]
    print(f"access profile of {min(args.profile_samples, args.samples):,} requests in {time.perf_counter() - t:.1f} s; "
          f"measured top-1% share (requested {args.top1_share:.2f}) of the largest tables read at least "
          "once per two rows: " + (", ".join(f"{row['table']} {row['top1pct_share']:.3f}" for row in covered) or "none"))
    print(f"CPU kernel on the profiled requests: {profile.cpu_rates.lookups_per_s / 1e6:.0f} M lookups/s (MEASURED; "
          "the planner keeps a table on the CPU where that is faster)")

    png_dir = args.workdir / "plots"
    png_dir.mkdir(exist_ok=True)
    config = PlannerConfig(nr_dpus=args.dpus, batch_size=args.batch_size)
    t = time.perf_counter()
    results = compare_levels(tables, profile, config, str(png_dir))
    print(f"partition plans for {args.dpus} DPUs, reference batch {args.batch_size} "
          f"(planned in {time.perf_counter() - t:.1f} s; every latency below is MODELLED, not measured):")
    for _, rep in results.values():
        print(rep.format())
    print(f"per-DPU load plots (MODELLED) -> {png_dir}/load_<level>.png")

    if args.pim_samples > 0:
        n_pim = min(args.pim_samples, args.samples)
        # every table on the DPUs and every batch run there, so the check covers the DPU kernel
        # (the planner on its own would keep tables on the CPU wherever the model says so)
        forced = PlannerConfig(nr_dpus=args.pim_dpus, level="cache", batch_size=min(args.batch_size, n_pim),
                               allow_cpu=False)
        with updlrm.load(onnx_path, backend="pim", profile=profile, planner_config=forced,
                         cpu_fallback=False) as pim:
            t = time.perf_counter()
            pim_scores = pim.score((dense[:n_pim], sparse.slice(0, n_pim)), batch_size=min(args.batch_size, n_pim))
            elapsed = time.perf_counter() - t
            libdpu = updlrm.pim.backend_info().libdpu
            plan = pim.backend.plan
            on_dpus = sum(tp.placement == "pim" for tp in plan.tables)
            modelled = pim.stats().backend.modelled_s
        pim_diff = float(np.abs(pim_scores - scores[:n_pim]).max())
        print(f"updlrm (pim backend, libdpu {libdpu}, {args.pim_dpus} DPUs, level {plan.level}, "
              f"{on_dpus} of 26 tables on DPUs): {n_pim:,} samples in {elapsed:.2f} s measured on this host"
              + (" (the emulator's speed, not UPMEM's)" if libdpu == "emulator" else ""))
        if modelled:
            print("  MODELLED UPMEM seconds: " + ", ".join(f"{k} {v:.4f}" for k, v in modelled.items()))
        print(f"max |pim - cpu| = {pim_diff:.2e} over {n_pim:,} scores")
        if pim_diff > 1e-5:
            raise SystemExit("PIM scores differ from the CPU backend's by more than 1e-5")


if __name__ == "__main__":
    main()
