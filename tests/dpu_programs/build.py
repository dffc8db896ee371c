"""Build the UPMEM-style test programs with updlrm's toolchain commands, as a user would:

    cc host.c $(python -m updlrm.pim.toolchain cflags libs) -o host
    python -m updlrm.pim.toolchain cc -O2 -DNR_TASKLETS=16 -o kernel dpu.c
"""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent


def toolchain(*args: str) -> str:
    """Stdout of ``python -m updlrm.pim.toolchain ARGS``."""
    done = subprocess.run([sys.executable, "-m", "updlrm.pim.toolchain", *args],
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"toolchain {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def build_kernel(program: str, out_dir: Path, nr_tasklets: int) -> Path:
    """Compile ``tests/dpu_programs/<program>/dpu.c`` for the DPU (hardware or emulator)."""
    out = out_dir / f"{program}_{nr_tasklets}t.dpu"
    toolchain("cc", "-O2", f"-DNR_TASKLETS={nr_tasklets}", "-o", str(out),
              str(PROGRAMS / program / "dpu.c"))
    return out


def build_host(program: str, out_dir: Path, *defines: str) -> Path:
    """Compile ``tests/dpu_programs/<program>/host.c`` against libdpu with the host C compiler."""
    out = out_dir / f"{program}_host"
    flags = shlex.split(toolchain("cflags", "libs"))
    command = ["cc", "-std=c11", "-O2", "-Wall", "-Werror", str(PROGRAMS / program / "host.c"),
               "-o", str(out), *defines, *flags]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} failed:\n{done.stdout}{done.stderr}")
    return out
