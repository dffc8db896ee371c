"""Build commands for host programs and DPU kernels, for the UPMEM SDK or updlrm's emulator.

Command line (the equivalents of the SDK's tools)::

    python -m updlrm.pim.toolchain cflags libs      # dpu-pkg-config --cflags --libs dpu
    python -m updlrm.pim.toolchain cc -O2 -DNR_TASKLETS=16 -o bin/dpu_code dpu/task.c
                                                    # dpu-upmem-dpurte-clang ...
    python -m updlrm.pim.toolchain lib              # path of the emulator's libdpuemu.so
    python -m updlrm.pim.toolchain build-lib DIR [--asan]   # build libdpuemu.so into DIR

With the real SDK present (``UPMEM_HOME`` set or ``dpu-pkg-config`` on ``PATH``) every command
defers to the SDK's tools, unless ``UPDLRM_DPU_EMULATOR=1`` forces the emulator.

An emulator kernel is a shared object built by the host C compiler (``$CC``, default ``cc``)
against the DPU runtime headers in ``emu/dpurte`` and linked to ``libdpuemu.so``; see
``emu/README.md``. This module only uses the standard library, so that ``setup.py`` can load it
before the package is built.
"""
from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Sequence

PACKAGE_DIR = Path(__file__).resolve().parent
EMU_DIR = PACKAGE_DIR / "emu"
EMU_INCLUDE_DIR = EMU_DIR / "include"
EMU_RUNTIME_DIR = EMU_DIR / "dpurte"
EMU_SOURCE_DIR = EMU_DIR / "src"
EMU_LIB_DIR = EMU_DIR / "lib"
EMU_LIB_NAME = "dpuemu"
EMU_LIB_FILE = f"lib{EMU_LIB_NAME}.so"
KERNEL_CRT0 = EMU_RUNTIME_DIR / "crt0.c"

MAX_TASKLETS = 24
_COMPILE_ONLY_FLAGS = {"-c", "-E", "-S", "-M", "-MM"}
# Flags of the DPU compiler that mean nothing to the host compiler.
_DPU_ONLY_FLAG = re.compile(r"^(-mcpu=.*|--target=.*|-march=dpu.*)$")
# DPU pointers are 32-bit: `(uint32_t)DPU_MRAM_HEAP_POINTER + off` is the usual idiom.
_EMU_KERNEL_WARNINGS = ["-Wno-int-to-pointer-cast", "-Wno-pointer-to-int-cast"]


class ToolchainError(RuntimeError):
    """A build tool is missing or failed."""


# ---------------------------------------------------------------- SDK detection


def sdk_pkg_config() -> str | None:
    """Path of the SDK's ``dpu-pkg-config``, or None when the emulator is to be used."""
    if os.environ.get("UPDLRM_DPU_EMULATOR", "") not in ("", "0"):
        return None
    home = os.environ.get("UPMEM_HOME")
    if home:
        candidate = Path(home) / "bin" / "dpu-pkg-config"
        if candidate.is_file():
            return str(candidate)
    return shutil.which("dpu-pkg-config")


def using_sdk() -> bool:
    """True when the real UPMEM SDK is present (and not overridden)."""
    return sdk_pkg_config() is not None


def _sdk_tool(name: str) -> str:
    pkg_config = sdk_pkg_config()
    tool = Path(pkg_config).with_name(name) if pkg_config else None
    if tool is not None and tool.is_file():
        return str(tool)
    found = shutil.which(name)
    if found is None:
        raise ToolchainError(f"UPMEM SDK tool {name} not found next to {pkg_config} or on PATH")
    return found


def _pkg_config(flag: str) -> list[str]:
    out = subprocess.run([sdk_pkg_config(), flag, "dpu"], check=True, capture_output=True, text=True)
    return shlex.split(out.stdout)


# ---------------------------------------------------------------- emulator library


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc"))


def emulator_sources() -> list[Path]:
    """C sources of libdpuemu."""
    return sorted(EMU_SOURCE_DIR.glob("*.c"))


def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in [*emulator_sources(), *sorted(EMU_SOURCE_DIR.glob("*.h")), *sorted(EMU_INCLUDE_DIR.glob("*.h")),
                 EMU_RUNTIME_DIR / "dpu_emu_rt.h", EMU_RUNTIME_DIR / "barrier.h"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def emulator_library_command(out_dir: Path | str, extra_cflags: Sequence[str] = ()) -> list[str]:
    """Compiler command that builds ``libdpuemu.so`` into ``out_dir``."""
    out = Path(out_dir) / EMU_LIB_FILE
    return [
        *_compiler(), "-O2", "-g", "-fPIC", "-shared", "-pthread", "-std=gnu11",
        "-Wall", "-Wextra", "-ffp-contract=off", *extra_cflags,
        f"-I{EMU_INCLUDE_DIR}", *map(str, emulator_sources()),
        f"-Wl,-soname,{EMU_LIB_FILE}", "-o", str(out), "-ldl",
    ]


def build_emulator_library(out_dir: Path | str, extra_cflags: Sequence[str] = ()) -> Path:
    """Builds ``libdpuemu.so`` into ``out_dir`` and returns its path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    command = emulator_library_command(out_dir, extra_cflags)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ToolchainError(f"building {EMU_LIB_FILE} failed:\n{shlex.join(command)}\n{result.stderr}")
    return out_dir / EMU_LIB_FILE


def packaged_library_current(stamp: str | None = None) -> bool:
    """True when the package's ``emu/lib/libdpuemu.so`` was built from the current sources."""
    shipped_stamp = EMU_LIB_DIR / "sources.sha256"
    if not (EMU_LIB_DIR / EMU_LIB_FILE).is_file() or not shipped_stamp.is_file():
        return False
    return shipped_stamp.read_text().strip() == (stamp or _sources_digest())


def emulator_library_dir() -> Path:
    """Folder holding an up-to-date ``libdpuemu.so`` (built on first use if needed).

    The package's own ``emu/lib`` is used when it is current (setup.py builds it there);
    otherwise the library is built into a per-user cache keyed by the sources' hash.
    """
    stamp = _sources_digest()
    if packaged_library_current(stamp):
        return EMU_LIB_DIR
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "updlrm" / "dpuemu" / stamp
    if not (cache / EMU_LIB_FILE).is_file():
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=cache.parent))
        try:
            build_emulator_library(tmp)
            os.replace(tmp, cache)
        except OSError:
            if not (cache / EMU_LIB_FILE).is_file():  # not a lost race with another builder
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


def write_library_stamp(lib_dir: Path | str) -> None:
    """Marks a freshly built package library as matching the current sources."""
    (Path(lib_dir) / "sources.sha256").write_text(_sources_digest() + "\n")


# ---------------------------------------------------------------- host flags


def host_cflags() -> list[str]:
    """Compiler flags for host code that includes ``<dpu.h>``."""
    if using_sdk():
        return _pkg_config("--cflags")
    return [f"-I{EMU_INCLUDE_DIR}"]


def host_libs() -> list[str]:
    """Linker flags for host code that calls libdpu (or the emulator)."""
    if using_sdk():
        return _pkg_config("--libs")
    lib_dir = emulator_library_dir()
    return [f"-L{lib_dir}", f"-l{EMU_LIB_NAME}", f"-Wl,-rpath,{lib_dir}"]


# ---------------------------------------------------------------- DPU kernels


def _nr_tasklets(args: Sequence[str]) -> int | None:
    value = None
    for i, arg in enumerate(args):
        define = args[i + 1] if arg == "-D" and i + 1 < len(args) else arg[2:] if arg.startswith("-D") else None
        if define is not None and define.split("=", 1)[0] == "NR_TASKLETS":
            text = define.split("=", 1)[1] if "=" in define else "1"
            try:
                value = int(text, 0)
            except ValueError:
                raise ToolchainError(f"NR_TASKLETS must be an integer, got {text!r}") from None
    return value


def kernel_command(args: Sequence[str]) -> list[str]:
    """The emulator's DPU compiler: host ``cc`` command for DPU compiler arguments ``args``."""
    args = [a for a in args if not _DPU_ONLY_FLAG.match(a)]
    nr_tasklets = _nr_tasklets(args)
    if nr_tasklets is None:
        args = ["-DNR_TASKLETS=1", *args]  # as the SDK's driver does
    elif not 1 <= nr_tasklets <= MAX_TASKLETS:
        raise ToolchainError(f"NR_TASKLETS must be in 1..{MAX_TASKLETS}, got {nr_tasklets}")
    command = [
        *_compiler(), f"-I{EMU_RUNTIME_DIR}", "-fPIC", "-fvisibility=hidden", "-ffp-contract=off",
        "-D__UPDLRM_DPU_EMULATOR__=1", *_EMU_KERNEL_WARNINGS, *args,
    ]
    if _COMPILE_ONLY_FLAGS.intersection(args):
        return command
    lib_dir = emulator_library_dir()
    command += [str(KERNEL_CRT0), "-shared", "-Wl,-Bsymbolic", f"-L{lib_dir}", f"-l{EMU_LIB_NAME}",
                f"-Wl,-rpath,{lib_dir}"]
    if not any(a.startswith("-fsanitize") for a in args):
        command.append("-Wl,-z,defs")  # a kernel calling a missing runtime function fails here
    return command


def compile_kernel(args: Sequence[str]) -> None:
    """Runs the DPU compiler (SDK clang or the emulator's) with ``args``; raises on failure."""
    command = [_sdk_tool("dpu-upmem-dpurte-clang"), *args] if using_sdk() else kernel_command(args)
    result = subprocess.run(command)
    if result.returncode != 0:
        raise ToolchainError(f"DPU compiler failed ({result.returncode}): {shlex.join(command)}")


# ---------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m updlrm.pim.toolchain``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = "usage: python -m updlrm.pim.toolchain {cflags|libs}... | cc ARGS... | lib | build-lib DIR [--asan]"
    if not argv:
        print(usage, file=sys.stderr)
        return 2
    try:
        if argv[0] == "cc":
            compile_kernel(argv[1:])
            return 0
        if argv[0] == "lib":
            print("SDK libdpu" if using_sdk() else emulator_library_dir() / EMU_LIB_FILE)
            return 0
        if argv[0] == "build-lib":
            if len(argv) < 2:
                print(usage, file=sys.stderr)
                return 2
            extra = ["-fsanitize=address", "-fno-omit-frame-pointer"] if "--asan" in argv[2:] else []
            print(build_emulator_library(argv[1], extra))
            return 0
        flags: list[str] = []
        for word in argv:
            if word in ("cflags", "--cflags"):
                flags += host_cflags()
            elif word in ("libs", "--libs"):
                flags += host_libs()
            else:
                print(usage, file=sys.stderr)
                return 2
        print(shlex.join(flags))
        return 0
    except (ToolchainError, subprocess.CalledProcessError) as error:
        print(f"updlrm.pim.toolchain: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
