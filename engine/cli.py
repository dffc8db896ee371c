"""The ``updlrm`` command: inspect, score and benchmark ONNX DLRMs."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .errors import UpdlrmError


def _parse_int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _parse_pooling(text: str) -> int | tuple[int, int]:
    lo, _, hi = text.partition("-")
    return (int(lo), int(hi)) if hi else int(lo)


def cmd_info(args: argparse.Namespace) -> int:
    from .onnx_import import import_model

    model = import_model(args.model, verify=args.verify)
    print(f"model: {model.path}")
    print("inputs:")
    for i in model.inputs:
        print(f"  {i.name}: {np.dtype(i.dtype).name} {list(i.shape)}")
    print(f"outputs: {', '.join(model.output_names)}")
    print(f"embedding bags: {len(model.bags)}")
    for k, bag in enumerate(model.bags):
        t, src = bag.table, bag.source
        feeds = ", ".join(f"{role}={name}{'' if row is None else f'[{row}]'}" for role, name, row in (
            ("indices", src.indices, src.indices_row), ("offsets", src.offsets, src.offsets_row),
            ("weights", src.weights, src.weights_row)) if name)
        print(f"  [{k}] {t.name}: {t.rows:,} x {t.dim} {t.weight.dtype.name}, {t.pooling.value}"
              f"{', weighted' if t.weighted else ''}{', fixed-size bags' if src.fixed else ''}"
              f"{', include_last_offset' if src.include_last_offset else ''}; pattern {bag.pattern}; {feeds}")
    for label, graph in (("dense_pre", model.dense_pre), ("dense_post", model.dense_post)):
        if graph is None:
            print(f"{label}: (none)")
        else:
            print(f"{label}: {graph.num_nodes} nodes, inputs {list(graph.inputs)} -> outputs {list(graph.outputs)}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .session import load

    with load(args.model, backend=args.backend, threads=args.threads, nonfinite=args.nonfinite) as sess:
        t = time.perf_counter()
        out = sess.score(args.data, batch_size=args.batch_size, output=args.output,
                         progress=None if not args.quiet else False)
        elapsed = time.perf_counter() - t
        n = sess.stats().samples
    print(f"scored {n:,} samples in {elapsed:.2f} s ({n / max(elapsed, 1e-9):,.0f} samples/s) -> {out}",
          file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .session import load
    from .datasets.synthetic import random_batch

    rng = np.random.default_rng(args.seed)
    rows = []
    with load(args.model, backend=args.backend, threads=args.threads) as sess:
        for pooling in args.pooling:
            for bs in args.batch_sizes:
                batch = random_batch(sess.tables, bs, pooling=pooling, skewed=args.skewed, rng=rng)
                dense = {}
                for spec in sess.dense_inputs:
                    shape = [bs] + [d if isinstance(d, int) else 1 for d in list(spec.shape)[1:]]
                    dense[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
                per_stage: dict[str, list[float]] = {}
                for rep in range(args.warmup + args.repeats):
                    before = dict(sess.stats().measured_s)
                    start = time.perf_counter()
                    sess.predict(dense, batch)
                    total = time.perf_counter() - start
                    if rep >= args.warmup:
                        for k, v in sess.stats().measured_s.items():
                            per_stage.setdefault(k, []).append(v - before.get(k, 0.0))
                        per_stage.setdefault("total", []).append(total)
                med = {k: statistics.median(v) * 1e3 for k, v in per_stage.items()}
                rows.append({"batch": bs, "pooling": pooling, **{f"{k}_ms": round(v, 4) for k, v in med.items()},
                             "samples_per_s": round(bs / (med["total"] / 1e3))})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    stages = ["validate", "lookup", "dense_pre", "wait_dense_pre", "dense_post", "total"]
    print(f"median of {args.repeats} runs (measured on this host), ms per batch")
    print(f"{'B':>6} {'pool':>7} " + " ".join(f"{s:>14}" for s in stages) + f" {'samples/s':>11}")
    for r in rows:
        pool = r["pooling"] if isinstance(r["pooling"], int) else "-".join(map(str, r["pooling"]))
        print(f"{r['batch']:>6} {pool!s:>7} " + " ".join(f"{r.get(s + '_ms', 0.0):>14.3f}" for s in stages)
              + f" {r['samples_per_s']:>11,}")
    return 0


def _sample_profile(sess, data: Path, batch_size: int):
    """Access profile of the requests in ``data`` for the session's tables, with the rate of the
    CPU kernel MEASURED on its first batches (the planner's CPU baseline for this workload)."""
    from .datasets.sources import open_samples
    from .datasets.traces import extract_profile

    samples = open_samples(data, dense_inputs=[(i.name, tuple(i.shape)) for i in sess.dense_inputs],
                           tables=sess.tables)
    return extract_profile(samples, [t.rows for t in sess.tables], names=[t.name for t in sess.tables],
                           batch_size=batch_size, cpu_tables=sess.tables)


def cmd_profile(args: argparse.Namespace) -> int:
    from .session import load

    with load(args.model) as sess:
        profile = _sample_profile(sess, args.data, args.batch_size)
    json_path, _ = profile.save(args.output)
    for row in profile.summary():
        print("  ".join(f"{k}={v}" for k, v in row.items()))
    print(f"CPU kernel on this sample: {profile.cpu_rates.lookups_per_s / 1e6:.1f} M lookups/s at dim 64 "
          f"(MEASURED here, with each table's rate: the planner's CPU baseline)")
    print(f"profile of {profile.num_batches} batches -> {json_path}")
    return 0


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def cmd_plan(args: argparse.Namespace) -> int:
    from .pim.calibrate import with_cpu_rates
    from .pim.cost_model import CpuRates
    from .pim.partitioner import PlannerConfig, compare_levels
    from .pim.profile import AccessProfile
    from .session import load

    config = PlannerConfig(nr_dpus=args.dpus, level=args.level, batch_size=args.batch_size,
                           value_mode=args.value_mode, allow_cpu=not args.no_cpu,
                           cpu_rates=None if args.cpu_rate is None else CpuRates(args.cpu_rate * 1e6,
                                                                                 source="given (--cpu-rate)"))
    with load(args.model) as sess:
        tables = sess.tables
        profile = None
        if args.profile is not None:
            profile = AccessProfile.load(args.profile)
        elif args.data is not None:
            profile = _sample_profile(sess, args.data, args.batch_size)
            if args.profile_out is not None:
                profile.save(args.profile_out)
        config = with_cpu_rates(config, tables, profile)
    if args.png_dir is not None:
        args.png_dir.mkdir(parents=True, exist_ok=True)
    results = compare_levels(tables, profile, config, None if args.png_dir is None else str(args.png_dir),
                             progress=None if args.quiet else _to_stderr)
    print(f"{len(tables)} tables, {args.dpus} DPUs, reference batch {args.batch_size}, "
          f"profile: {'none (uniform accesses assumed)' if profile is None else f'{profile.num_batches} batches'}")
    for _, rep in results.values():
        print(rep.format())
    if args.output is not None:
        json_path, npz_path = results[args.level][0].save(args.output)
        print(f"plan ({args.level}) -> {json_path}, {npz_path}")
    if args.png_dir is not None:
        print(f"per-DPU load (MODELLED) -> {args.png_dir}/load_<level>.png")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``updlrm`` command."""
    p = argparse.ArgumentParser(prog="updlrm", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="show the tables, pooling, patterns and dense graphs found")
    info.add_argument("model", type=Path)
    info.add_argument("--verify", action="store_true", help="check every bag against onnxruntime")
    info.set_defaults(func=cmd_info)

    score = sub.add_parser("score", help="score a file of samples")
    score.add_argument("model", type=Path)
    score.add_argument("data", type=Path, help=".npz, folder of .npy, or Criteo .tsv[.gz]")
    score.add_argument("-o", "--output", type=Path, required=True, help=".npy or text (one score per line)")
    score.add_argument("--batch-size", type=int, default=4096)
    score.add_argument("--backend", default="cpu", choices=["cpu", "pim"])
    score.add_argument("--threads", type=int, default=None)
    score.add_argument("--nonfinite", default="raise", choices=["raise", "warn", "allow"])
    score.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    score.set_defaults(func=cmd_score)

    bench = sub.add_parser("bench", help="time synthetic batches, per stage")
    bench.add_argument("model", type=Path)
    bench.add_argument("--batch-sizes", type=_parse_int_list, default=[1, 64, 1024, 4096])
    bench.add_argument("--pooling", type=_parse_pooling, nargs="+", default=[1, (20, 80)],
                       help="indices per bag: N or LO-HI (several allowed)")
    bench.add_argument("--skewed", action="store_true", help="power-law row accesses instead of uniform")
    bench.add_argument("--repeats", type=int, default=5)
    bench.add_argument("--warmup", type=int, default=2)
    bench.add_argument("--backend", default="cpu", choices=["cpu", "pim"])
    bench.add_argument("--threads", type=int, default=None)
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    prof = sub.add_parser("profile", help="access profile of a sample of requests (input of `plan`)")
    prof.add_argument("model", type=Path)
    prof.add_argument("data", type=Path, help=".npz, folder of .npy, or Criteo .tsv[.gz]")
    prof.add_argument("-o", "--output", type=Path, required=True, help="profile path (.json + .npz)")
    prof.add_argument("--batch-size", type=int, default=4096)
    prof.set_defaults(func=cmd_profile)

    plan = sub.add_parser("plan", help="partition the tables over DPUs; compare levels (MODELLED times)")
    plan.add_argument("model", type=Path)
    plan.add_argument("--dpus", type=int, default=2560)
    source = plan.add_mutually_exclusive_group()
    source.add_argument("--profile", type=Path, help="access profile from `updlrm profile`")
    source.add_argument("--data", type=Path, help="sample of requests to profile first")
    plan.add_argument("--profile-out", type=Path, help="save the profile made from --data")
    plan.add_argument("--level", default="cache", choices=["uniform", "popularity", "cache"],
                      help="level of the plan written with -o (every level is reported)")
    plan.add_argument("--batch-size", type=int, default=4096, help="reference batch the plan is tuned for")
    plan.add_argument("--value-mode", default="fp32", choices=["fp32", "int32"])
    plan.add_argument("--no-cpu", action="store_true", help="never keep tables on the CPU")
    plan.add_argument("--cpu-rate", type=float, default=None,
                      help="CPU baseline in M lookups/s at dim 64 (default: updlrm's CPU kernel measured on the "
                           "profiled requests, or on uniform synthetic batches without a profile)")
    plan.add_argument("-o", "--output", type=Path, help="plan path (.json + .npz), for load(..., plan=)")
    plan.add_argument("--png-dir", type=Path, help="write load_<level>.png (per-DPU modelled load)")
    plan.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")
    plan.set_defaults(func=cmd_plan)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``updlrm`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (UpdlrmError, FileNotFoundError) as e:
        print(f"updlrm: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
