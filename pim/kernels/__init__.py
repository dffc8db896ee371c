"""DPU kernels shipped with updlrm: C sources and their built binaries.

Each kernel ``<name>.c`` is built twice by ``setup.py``: ``<name>.dpu`` with the UPMEM SDK's
``dpu-upmem-dpurte-clang`` (only where the SDK is installed) and ``<name>.emu.so`` with the
emulator's toolchain (always).  :func:`binary_path` picks the one matching the libdpu that
``updlrm.pim._dpu`` is linked against.
"""
from __future__ import annotations

from pathlib import Path

from updlrm.errors import InvalidInputError, UpdlrmError

KERNEL_DIR = Path(__file__).resolve().parent
#: Binary file suffix per libdpu kind (``updlrm.pim._dpu.libdpu_kind()``).
BINARY_SUFFIX = {"upmem-sdk": ".dpu", "emulator": ".emu.so"}


def sources() -> list[str]:
    """Names of the kernels whose C source ships here."""
    return sorted(p.stem for p in KERNEL_DIR.glob("*.c"))


def binary_path(name: str, kind: str | None = None) -> Path:
    """The built binary of kernel ``name`` for libdpu ``kind`` (default: the linked one)."""
    if name not in sources():
        raise InvalidInputError(f"no DPU kernel named {name!r}; shipped kernels: {sources()}")
    if kind is None:
        from updlrm.pim._dpu import libdpu_kind

        kind = libdpu_kind()
    if kind not in BINARY_SUFFIX:
        raise InvalidInputError(f"unknown libdpu kind {kind!r}; expected one of {sorted(BINARY_SUFFIX)}")
    path = KERNEL_DIR / (name + BINARY_SUFFIX[kind])
    if not path.exists():
        hint = ("the UPMEM SDK was not found when updlrm was built" if kind == "upmem-sdk"
                else "run `python setup.py build_ext --inplace`")
        raise UpdlrmError(f"DPU kernel {name!r} has no {kind} binary at {path}: {hint}")
    return path


def available() -> dict[str, list[str]]:
    """Built binaries per kernel: ``{name: [kind, ...]}``."""
    return {name: [kind for kind, suffix in BINARY_SUFFIX.items()
                   if (KERNEL_DIR / (name + suffix)).exists()] for name in sources()}
