"""Everything DPU: libdpu bindings, the DPU emulator, kernels, partitioner, cost model, PIM backend.

:class:`DpuSet` drives DPUs through libdpu (the UPMEM SDK's, or updlrm's emulator when the SDK is
absent); :func:`backend_info` says which one is linked.
"""
from updlrm.pim._dpu import DpuError, DpuSet, DpuStatus
from updlrm.pim.info import BackendInfo, backend_info

__all__ = ["BackendInfo", "DpuError", "DpuSet", "DpuStatus", "PimBackend", "backend_info"]


def __getattr__(name: str):
    # PimBackend pulls in the planner (numba); import it only when asked for.
    if name == "PimBackend":
        from updlrm.pim.backend import PimBackend
        return PimBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
