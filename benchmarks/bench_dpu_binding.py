"""Cost of the Python/Cython DpuSet layer over the same libdpu calls made from C.

For 64 and 2,560 DPUs (emulator, or the SDK when linked), times a 512-byte broadcast, a per-DPU
push to and from MRAM (512 bytes per DPU) and a synchronous launch of a trivial kernel, as the
median of ``--reps`` runs; the C baseline (dpu_binding/baseline.c, built with the toolchain
commands) runs in the same invocation.  Usage: ``python benchmarks/bench_dpu_binding.py``.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from dpu_programs.build import build_kernel, toolchain  # noqa: E402  (test programs' builder)

from updlrm.pim import DpuSet, backend_info  # noqa: E402

WORDS = 64  # mram_words of tests/dpu_programs/symbols/dpu.c


def median_seconds(call, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def python_timings(kernel: Path, nr_dpus: int, reps: int) -> dict[str, float]:
    data = np.zeros((nr_dpus, WORDS), np.uint64)
    with DpuSet(nr_dpus) as dpus:
        dpus.load(kernel)
        dpus.copy("spin_rounds", np.zeros(1, np.uint32))
        return {
            "broadcast": median_seconds(lambda: dpus.copy("mram_words", data[0]), reps),
            "push_to": median_seconds(lambda: dpus.copy("mram_words", list(data)), reps),
            "push_from": median_seconds(lambda: dpus.read("mram_words", WORDS, np.uint64), reps),
            "launch": median_seconds(dpus.launch, reps),
        }


def c_timings(baseline: Path, kernel: Path, nr_dpus: int, reps: int) -> dict[str, float]:
    out = subprocess.run([str(baseline), str(kernel), str(nr_dpus), str(reps)], check=True,
                         capture_output=True, text=True).stdout
    return {name: float(value) for name, value in (line.split() for line in out.splitlines())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--dpus", type=int, nargs="+", default=[64, 2560])
    args = parser.parse_args()
    info = backend_info()
    print(f"libdpu: {info.libdpu} ({info.version}); median of {args.reps} runs")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        kernel = build_kernel("symbols", out, 1)
        baseline = out / "baseline"
        subprocess.run(["cc", "-std=c11", "-O2", str(Path(__file__).parent / "dpu_binding" /
                        "baseline.c"), "-o", str(baseline),
                        *toolchain("cflags", "libs").split()], check=True)
        print(f"{'DPUs':>6} {'operation':<10} {'Python us':>10} {'C us':>10} {'overhead us':>12}")
        for nr_dpus in args.dpus:
            py = python_timings(kernel, nr_dpus, args.reps)
            c = c_timings(baseline, kernel, nr_dpus, args.reps)
            for name in py:
                print(f"{nr_dpus:>6} {name:<10} {py[name] * 1e6:>10.1f} {c[name] * 1e6:>10.1f} "
                      f"{(py[name] - c[name]) * 1e6:>12.1f}")


if __name__ == "__main__":
    main()
