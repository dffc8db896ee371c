"""End-to-end benchmark of issue 2: updlrm CPU vs PyTorch eager vs onnxruntime on one exported DLRM.

    python benchmarks/bench_e2e.py [--rows 2000000] [--tables 8] [--dim 64] [--repeats 5]

Builds a DLRM with ``--tables`` sum-EmbeddingBags of ``--rows`` x ``--dim`` fp32 (default 8 x 2 M
x 64 = 4.1 GB), exports it with the TorchScript exporter (opset 11, the reference script's stacked
offsets/indices; the faster of torch's two exports under onnxruntime, reference/onnx_export.md
§6) into ``--workdir`` (kept between runs), then, in this one process, times the whole model side
by side at B = 1, 64, 1024, 4096 and pooling 1 and 20-80: updlrm (``Session.run`` with the
model's own feeds), PyTorch eager (``torch.set_num_threads(--threads)``) and onnxruntime on the
same file (``intra_op_num_threads=--threads``). The three take turns, round by round (order
shuffled, first round a warm-up; each turn max(1, 256 // B) calls); times are medians of
``--repeats`` rounds, and the speedups medians of the per-round ratios, so a slow memory phase of
this VM hits all three alike. Also reports updlrm's load time and resident memory.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from criteo_dlrm import CriteoDLRM  # noqa: E402  (the example's reference-shaped DLRM)
from interleave import interleaved_times, paired_speedup  # noqa: E402

import updlrm  # noqa: E402


def rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def make_inputs(batch: int, pooling, tables: int, rows: int, rng: np.random.Generator):
    """Stacked-layout inputs: every table gets the same bag lengths (the [T, N] layout needs it)."""
    lo, hi = pooling
    lengths = rng.integers(lo, hi + 1, batch)
    offsets = np.zeros((tables, batch), np.int64)
    offsets[:, 1:] = np.cumsum(lengths)[:-1]
    indices = rng.integers(0, rows, (tables, int(lengths.sum())), dtype=np.int64)
    dense = rng.random((batch, 13), dtype=np.float32)
    return {"dense_x": dense, "offsets": offsets, "indices": indices}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--tables", type=int, default=8)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", default="1,64,1024,4096")
    ap.add_argument("--skip-ort-above", type=int, default=1 << 30,
                    help="skip onnxruntime at batch sizes above this (its Loop bags are slow)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/updlrm-bench-e2e"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    # The MLPs of the reference benchmark (reference/onnx_export.md §6): 13-512-256-64 bottom,
    # 100-512-512-256-1 top for 8 tables of dim 64.
    model = CriteoDLRM([args.rows] * args.tables, args.dim, bottom=(512, 256), top=(512, 512, 256)).eval()
    path = args.workdir / f"dlrm_{args.tables}x{args.rows}x{args.dim}_ref_mlp" / "model.onnx"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        b = 4
        example = (torch.rand(b, 13), torch.arange(b).repeat(args.tables, 1),
                   torch.zeros(args.tables, b, dtype=torch.long))
        torch.onnx.export(model, example, str(path), dynamo=False, opset_version=11,
                          input_names=["dense_x", "offsets", "indices"], output_names=["pred"],
                          dynamic_axes={"dense_x": {0: "B"}, "offsets": {1: "B"}, "indices": {1: "N"},
                                        "pred": {0: "B"}})
        print(f"exported {path} in {time.perf_counter() - t:.0f} s", flush=True)
    else:
        # The export is deterministic for a seed; reuse it but take its weights for torch too.
        print(f"reusing {path}", flush=True)
    table_gb = args.tables * args.rows * args.dim * 4 / 1e9

    rss0 = rss_gb()
    t = time.perf_counter()
    sess = updlrm.load(path, threads=args.threads)
    load_s = time.perf_counter() - t
    rss_load = rss_gb() - rss0
    # Torch must score with the exported weights (a fresh init would differ).
    with torch.no_grad():
        for k, bag in enumerate(sess.model.bags):
            model.emb[k].weight.copy_(torch.from_numpy(np.asarray(bag.table.weight)))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    ort_sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    rng = np.random.default_rng(0)
    rows = []
    for pooling in [(1, 1), (20, 80)]:
        for batch in [int(b) for b in args.batches.split(",")]:
            feeds = make_inputs(batch, pooling, args.tables, args.rows, rng)
            targs = tuple(torch.from_numpy(feeds[k]) for k in ("dense_x", "offsets", "indices"))
            with torch.inference_mode():
                ref = model(*targs).numpy()
            got = sess.run(None, feeds)[0]
            diff = float(np.abs(got - ref).max())

            def run_torch():
                with torch.inference_mode():
                    model(*targs)

            runs = {"updlrm": lambda: sess.run(None, feeds), "torch": run_torch}
            if batch <= args.skip_ort_above:
                runs["ort"] = lambda: ort_sess.run(None, feeds)
            times = interleaved_times(runs, args.repeats, calls=max(1, 256 // batch))
            t_up, t_pt, t_ort = (statistics.median(times[k]) * 1e3 if k in times else float("nan")
                                 for k in ("updlrm", "torch", "ort"))
            vs_pt = paired_speedup(times, "updlrm", "torch")
            vs_ort = paired_speedup(times, "updlrm", "ort") if "ort" in times else float("nan")
            rows.append((pooling, batch, t_up, t_pt, t_ort, vs_pt, vs_ort, diff))
            print(f"P={pooling} B={batch}: updlrm {t_up:.2f} ms, torch {t_pt:.2f} ms, ort {t_ort:.2f} ms, "
                  f"max|diff| {diff:.1e}", flush=True)

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    print(f"\nmodel: {args.tables} tables x {args.rows:,} rows x {args.dim} fp32 = {table_gb:.2f} GB; "
          f"threads {args.threads}; median of {args.repeats} (measured on this host)")
    print(f"updlrm load: {load_s:.2f} s, RSS added by load {rss_load:.2f} GB; RSS now {rss_gb():.2f} GB, "
          f"peak {peak:.2f} GB (includes the torch model's own {table_gb:.2f} GB)")
    print(f"| pooling | B | updlrm ms | torch ms | ort ms | vs torch | vs ort | max abs diff |")
    print(f"|---|---|---|---|---|---|---|---|")
    for pooling, batch, t_up, t_pt, t_ort, vs_pt, vs_ort, diff in rows:
        pool = "1" if pooling == (1, 1) else f"{pooling[0]}-{pooling[1]}"
        print(f"| {pool} | {batch} | {t_up:.2f} | {t_pt:.2f} | {t_ort:.2f} | {vs_pt:.2f}x | "
              f"{vs_ort:.1f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
