"""Ordinary UPMEM-style host + DPU programs build with updlrm's toolchain commands and run right.

The programs under tests/dpu_programs are written as for the real SDK (PrIM style: DPU_FOREACH,
prepare/push transfers, DPU_ASSERT); the expected figures are recomputed here in Python.  The
toolchain commands defer to the SDK's tools when it is installed, so these run on hardware too.
"""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

from dpu_programs.build import build_host, build_kernel


def run_program(program: str, tmp_path, nr_tasklets: int, nr_dpus: int) -> str:
    kernel = build_kernel(program, tmp_path, nr_tasklets)
    host = build_host(program, tmp_path, f"-DNR_TASKLETS={nr_tasklets}", f"-DNR_DPUS={nr_dpus}")
    done = subprocess.run([str(host), str(kernel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.parametrize("nr_tasklets", [1, 16])
def test_vector_add(tmp_path, nr_tasklets):
    out = run_program("vector_add", tmp_path, nr_tasklets, nr_dpus=8)
    n = 10_002  # vector_add/host.c: A[i] = i, B[i] = 3 i + 1
    checksum = int((np.arange(n, dtype=np.int64) * 4 + 1).sum())
    assert out == (f"vector_add: {n} elements on 8 DPUs x {nr_tasklets} tasklets, "
                   f"checksum {checksum}: OK\n")


def test_reduction_with_a_mutex(tmp_path):
    out = run_program("reduction", tmp_path, 16, nr_dpus=16)
    counts = [2 * (100 + 37 * d) for d in range(16)]  # reduction/host.c
    i = np.arange(sum(counts), dtype=np.uint64)
    values = (((i * 2654435761) % 2**32 >> 16) % 1001).astype(np.int64) - 500
    assert out == (f"reduction: {sum(counts)} values on 16 DPUs x 16 tasklets, "
                   f"total {int(values.sum())}: OK\n")


def test_persistence_across_launches(tmp_path):
    out = run_program("persistence", tmp_path, 4, nr_dpus=4)
    assert out == "persistence: 120 14400 1728000 reload 120: OK\n"
