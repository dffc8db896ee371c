"""Build of updlrm's compiled parts.

The import package ``updlrm`` is assembled from three folders (see ``package_dir``):
``engine/`` is its root, ``pim/`` is ``updlrm.pim`` and ``onnx_import/`` is ``updlrm.onnx_import``.
"""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

engine_extensions = [
    # The pooling loop is C (engine/kernels) so that it can pick AVX-512/AVX2 at run time; the .pyx
    # shares work items with persistent helper threads (kernels/work_pool.c, not OpenMP: its
    # barrier waits for descheduled threads on shared VMs). No -march flag: the wheel must run
    # on any x86-64 (or other) CPU.
    Extension(
        "updlrm._embedding_bag",
        ["engine/_embedding_bag.pyx", "engine/kernels/embedding_bag.c", "engine/kernels/work_pool.c"],
        include_dirs=[np.get_include(), "engine", "engine/kernels"],
        depends=["engine/kernels/embedding_bag.h", "engine/kernels/work_pool.h",
                 "engine/kernels/pool_bags.inc", "engine/kernels/pool_bags_simd.inc"],
        define_macros=NUMPY_MACROS,
        extra_compile_args=["-O3", "-pthread"],
        extra_link_args=["-pthread"],
    ),
    Extension(
        "updlrm.datasets._criteo",
        ["engine/datasets/_criteo.pyx"],
        include_dirs=[np.get_include()],
        define_macros=NUMPY_MACROS,
        extra_compile_args=["-O3"],
    ),
]

# --- pim extensions (owned by pim/) ---
pim_extensions = []


def build_emulator_library(build_commands=("build", "build_ext", "bdist_wheel", "editable_wheel",
                                           "develop", "install")):
    """Build the DPU emulator pim/emu/lib/libdpuemu.so (shipped as package data, next to the
    headers and runtime files that `python -m updlrm.pim.toolchain` needs) when it is missing
    or older than its sources. Runs first, so that the binding and the kernels link to it."""
    import importlib.util
    import sys
    from pathlib import Path

    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("updlrm_toolchain", here / "pim" / "toolchain.py")
    toolchain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolchain)  # standard library only: importable before the build
    if not set(build_commands) & set(sys.argv[1:]) or toolchain.using_sdk():
        return
    if toolchain.packaged_library_current():
        return
    toolchain.build_emulator_library(toolchain.EMU_LIB_DIR)
    toolchain.write_library_stamp(toolchain.EMU_LIB_DIR)


build_emulator_library()
EMULATOR_PACKAGE_DATA = ["emu/include/*.h", "emu/dpurte/*.h", "emu/dpurte/*.c", "emu/src/*.c",
                         "emu/src/*.h", "emu/lib/libdpuemu.so", "emu/lib/sources.sha256", "emu/README.md"]
# Host half of the embedding-bag kernel's ABI (pim/kernels/emb_abi.h is shared with the DPU).
pim_extensions.append(Extension(
    "updlrm.pim._emb_pack",
    ["pim/_emb_pack.pyx"],
    include_dirs=[np.get_include(), "pim/kernels"],
    depends=["pim/emb_abi.pxd", "pim/kernels/emb_abi.h"],
    define_macros=NUMPY_MACROS,
    extra_compile_args=["-O3"],
))
# PIM backend: scatter of a batch's bags to per-DPU kernel jobs (routing rule of pim/plan.py).
pim_extensions.append(Extension(
    "updlrm.pim._scatter",
    ["pim/_scatter.pyx"],
    include_dirs=[np.get_include()],
    define_macros=NUMPY_MACROS,
    extra_compile_args=["-O3"],
))


def dpu_binding_extension() -> Extension:
    """updlrm.pim._dpu, the Cython binding to libdpu: linked against the UPMEM SDK's libdpu when
    the SDK is installed (UPMEM_HOME or dpu-pkg-config; UPDLRM_DPU_EMULATOR=1 overrides), and
    against the emulator's libdpuemu.so otherwise."""
    import importlib.util
    import subprocess

    spec = importlib.util.spec_from_file_location("updlrm_toolchain", "pim/toolchain.py")
    toolchain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolchain)  # standard library only: importable before the build
    macros = list(NUMPY_MACROS)
    if toolchain.using_sdk():
        version = subprocess.run([toolchain.sdk_pkg_config(), "--modversion", "dpu"], check=True,
                                 capture_output=True, text=True).stdout.strip()
        macros.append(("UPDLRM_SDK_VERSION", f'"{version}"'))
        cflags, libs = toolchain.host_cflags(), toolchain.host_libs()
        include_dirs = [flag[2:] for flag in cflags if flag.startswith("-I")]
        library_dirs = [flag[2:] for flag in libs if flag.startswith("-L")]
        libraries = [flag[2:] for flag in libs if flag.startswith("-l")]
        rpath = library_dirs
    else:
        lib_dir = toolchain.emulator_library_dir()
        include_dirs = [str(toolchain.EMU_INCLUDE_DIR)]
        library_dirs = [str(lib_dir)]
        libraries = [toolchain.EMU_LIB_NAME]
        # The package's own emu/lib travels with the extension; a cache build is found by path.
        rpath = ["$ORIGIN/emu/lib" if lib_dir == toolchain.EMU_LIB_DIR else str(lib_dir)]
    return Extension(
        "updlrm.pim._dpu",
        ["pim/_dpu.pyx"],
        include_dirs=[np.get_include(), "pim", *include_dirs],
        library_dirs=library_dirs,
        libraries=libraries,
        runtime_library_dirs=rpath,
        depends=["pim/dpu_extras.h"],
        define_macros=macros,
        extra_compile_args=["-O2"],
    )


pim_extensions.append(dpu_binding_extension())


def build_dpu_kernels(build_commands=("build", "build_ext", "bdist_wheel", "editable_wheel",
                                      "develop", "install")):
    """Build each pim/kernels/*.c into <name>.emu.so (emulator, always) and <name>.dpu (hardware,
    with dpu-upmem-dpurte-clang -O2 -DNR_TASKLETS=16 when the UPMEM SDK is installed).

    Runs before setuptools' commands so that build_py ships the binaries as package data.
    """
    import importlib.util
    import logging
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if not build_commands or not set(build_commands) & set(sys.argv[1:]):
        return
    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("updlrm_toolchain", here / "pim" / "toolchain.py")
    toolchain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(toolchain)  # standard library only: importable before the build
    kernel_dir = here / "pim" / "kernels"
    inputs = [kernel_dir / "emb_abi.h", *toolchain.EMU_RUNTIME_DIR.glob("*")]
    sdk_bin = Path(os.environ["UPMEM_HOME"]) / "bin" if os.environ.get("UPMEM_HOME") else None
    sdk_clang = (str(sdk_bin / "dpu-upmem-dpurte-clang")
                 if sdk_bin and (sdk_bin / "dpu-upmem-dpurte-clang").is_file()
                 else shutil.which("dpu-upmem-dpurte-clang"))
    log = logging.getLogger("setup.dpu_kernels")
    for source in sorted(kernel_dir.glob("*.c")):
        newest = max(p.stat().st_mtime for p in [source, *inputs] if p.is_file())
        emu = source.with_suffix(".emu.so")
        if not emu.exists() or emu.stat().st_mtime < newest:
            # -O3 lets gcc vectorise the element-wise float adds (same IEEE result per element,
            # ~15% less emulator CPU); -ffp-contract=off comes with the toolchain
            subprocess.run(toolchain.kernel_command(
                ["-O3", "-Wall", "-Wextra", "-DNR_TASKLETS=16", "-o", str(emu), str(source)]), check=True)
        if sdk_clang is None:
            log.warning("UPMEM SDK not found (no dpu-upmem-dpurte-clang in $UPMEM_HOME/bin or on PATH): "
                        "skipping the hardware build of DPU kernel %s; built the emulator binary %s only",
                        source.stem, emu.name)
            continue
        subprocess.run([sdk_clang, "-O2", "-DNR_TASKLETS=16", "-o", str(source.with_suffix(".dpu")),
                        str(source)], check=True)
        log.info("built %s for UPMEM hardware", source.with_suffix(".dpu").name)


build_dpu_kernels()
# --- end pim extensions ---

setup(
    packages=["updlrm", "updlrm.datasets", "updlrm.pim", "updlrm.pim.kernels", "updlrm.onnx_import"],
    package_data={"updlrm.pim.kernels": ["*.c", "*.h", "*.emu.so", "*.dpu"],
                  "updlrm.pim": EMULATOR_PACKAGE_DATA},
    package_dir={"updlrm": "engine", "updlrm.pim": "pim", "updlrm.onnx_import": "onnx_import"},
    ext_modules=cythonize(
        engine_extensions + pim_extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False},
    ),
    zip_safe=False,
)
