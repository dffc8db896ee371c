"""Build of updlrm's compiled parts.

The import package ``updlrm`` is assembled from three folders (see ``package_dir``):
``engine/`` is its root, ``pim/`` is ``updlrm.pim`` and ``onnx_import/`` is ``updlrm.onnx_import``.
"""
import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP = ["-fopenmp"]
NUMPY_MACROS = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]

engine_extensions = [
    # The pooling loop is C (engine/kernels) so that it can pick AVX2 at run time; the .pyx
    # drives it over OpenMP. No -march flag: the wheel must run on any x86-64 (or other) CPU.
    Extension(
        "updlrm._embedding_bag",
        ["engine/_embedding_bag.pyx", "engine/kernels/embedding_bag.c"],
        include_dirs=[np.get_include(), "engine", "engine/kernels"],
        depends=["engine/kernels/embedding_bag.h",
                 "engine/kernels/pool_bags.inc"],
        define_macros=NUMPY_MACROS,
        extra_compile_args=["-O3", *OPENMP],
        extra_link_args=OPENMP,
    ),
]

# --- pim extensions (owned by pim/) ---
pim_extensions = []
# Host half of the embedding-bag kernel's ABI (pim/kernels/emb_abi.h is shared with the DPU).
pim_extensions.append(Extension(
    "updlrm.pim._emb_pack",
    ["pim/_emb_pack.pyx"],
    include_dirs=[np.get_include(), "pim/kernels"],
    depends=["pim/kernels/emb_abi.h"],
    define_macros=NUMPY_MACROS,
    extra_compile_args=["-O3"],
))
# --- end pim extensions ---

setup(
    packages=["updlrm", "updlrm.pim", "updlrm.onnx_import"],
    package_dir={"updlrm": "engine", "updlrm.pim": "pim", "updlrm.onnx_import": "onnx_import"},
    ext_modules=cythonize(
        engine_extensions + pim_extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True,
                             "initializedcheck": False},
    ),
    zip_safe=False,
)
