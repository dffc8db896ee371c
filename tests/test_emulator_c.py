"""The DPU emulator's own C test suite (pim/emu/tests), built and run under AddressSanitizer.

The suite builds libdpuemu with ASan, builds its kernels with ``python -m updlrm.pim.toolchain cc``
and its hosts with the toolchain's ``cflags``/``libs`` (as a user's program is built), then runs:
every host-API rule with its SDK error, a PrIM-style vector add, a mutex reduction, persistence,
async launch + sync, semaphores/handshakes, DMA faults with their log lines, a kernel that is
only correct when tasklets run one after another, and 2,560 DPUs in little memory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from updlrm.pim import toolchain

TESTS_DIR = Path(toolchain.EMU_DIR) / "tests"

needs_c_suite = pytest.mark.skipif(
    not (TESTS_DIR / "Makefile").is_file() or shutil.which("make") is None or toolchain.using_sdk(),
    reason="needs the source tree's pim/emu/tests, make, and the emulator (not the SDK)",
)


@needs_c_suite
def test_c_suite_under_asan(tmp_path: Path) -> None:
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:abort_on_error=0")
    result = subprocess.run(
        ["make", "-s", "-C", str(TESTS_DIR), "check", f"BUILD={tmp_path}", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert "all emulator API tests passed" in output
    assert "[OK] Outputs are equal" in output
    assert "ERROR: AddressSanitizer" not in output


@pytest.mark.skipif(toolchain.using_sdk(), reason="the UPMEM SDK is installed")
def test_toolchain_flags_point_at_the_emulator() -> None:
    assert toolchain.host_cflags() == [f"-I{toolchain.EMU_INCLUDE_DIR}"]
    libs = toolchain.host_libs()
    lib_dir = Path(libs[0][2:])
    assert libs[1] == "-ldpuemu" and (lib_dir / toolchain.EMU_LIB_FILE).is_file()


def test_kernel_command_follows_the_dpu_driver() -> None:
    command = toolchain.kernel_command(["-O2", "-mcpu=v1B", "-o", "k", "task.c"])
    assert "-DNR_TASKLETS=1" in command  # the SDK driver's default
    assert not any(arg.startswith("-mcpu") for arg in command)
    assert str(toolchain.KERNEL_CRT0) in command and "-shared" in command
    compile_only = toolchain.kernel_command(["-c", "-DNR_TASKLETS=16", "task.c"])
    assert "-shared" not in compile_only and "-DNR_TASKLETS=1" not in compile_only
    with pytest.raises(toolchain.ToolchainError):
        toolchain.kernel_command(["-DNR_TASKLETS=25", "task.c"])


@pytest.mark.skipif(toolchain.using_sdk(), reason="the UPMEM SDK is installed")
def test_command_line_prints_cflags_and_libs() -> None:
    result = subprocess.run([sys.executable, "-m", "updlrm.pim.toolchain", "cflags", "libs"],
                            capture_output=True, text=True, check=True)
    flags = result.stdout.split()
    assert flags[0] == f"-I{toolchain.EMU_INCLUDE_DIR}" and "-ldpuemu" in flags


def test_commands_defer_to_the_sdk_when_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With UPMEM_HOME holding the SDK's tools, cflags/libs/cc run them instead of the emulator's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pkg_config = bin_dir / "dpu-pkg-config"
    pkg_config.write_text('#!/bin/sh\n[ "$1" = --cflags ] && echo "-I/sdk/include/dpu" || echo "-L/sdk/lib -ldpu"\n')
    clang = bin_dir / "dpu-upmem-dpurte-clang"
    clang.write_text(f'#!/bin/sh\necho "$@" > {tmp_path}/clang_args\n')
    for tool in (pkg_config, clang):
        tool.chmod(0o755)
    monkeypatch.setenv("UPMEM_HOME", str(tmp_path))
    monkeypatch.delenv("UPDLRM_DPU_EMULATOR", raising=False)
    assert toolchain.using_sdk()
    assert toolchain.host_cflags() == ["-I/sdk/include/dpu"]
    assert toolchain.host_libs() == ["-L/sdk/lib", "-ldpu"]
    toolchain.compile_kernel(["-O2", "-DNR_TASKLETS=16", "-o", "k", "task.c"])
    assert (tmp_path / "clang_args").read_text().split() == ["-O2", "-DNR_TASKLETS=16", "-o", "k", "task.c"]
    monkeypatch.setenv("UPDLRM_DPU_EMULATOR", "1")
    assert not toolchain.using_sdk()
