"""Which libdpu updlrm's DPU binding is linked against, and what it can run."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from updlrm.pim import kernels
from updlrm.pim._dpu import DpuError, DpuSet, libdpu_kind, libdpu_version

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`backend_info` found.

    Attributes:
        libdpu: ``"emulator"`` (updlrm's own libdpu) or ``"upmem-sdk"`` (the real one).
        version: the emulator's identification, or the SDK version the binding was built with.
        nr_dpus_available: DPUs that ``DpuSet()`` (allocate all) got with ``profile``; the
            emulator's machine size is set by the ``nrRanks``/``nrDpusPerRank`` profile keys.
        kernels: names of the DPU kernels shipped in ``updlrm.pim.kernels`` with a binary for
            this libdpu (usable as ``DpuSet.load(name)``).
    """

    libdpu: str
    version: str
    nr_dpus_available: int
    kernels: tuple[str, ...]


def backend_info(profile: str = "") -> BackendInfo:
    """Describe the linked libdpu; counts DPUs by allocating (and freeing) all of them."""
    kind = libdpu_kind()
    try:
        with DpuSet(profile=profile) as everything:
            nr_dpus = len(everything)
    except DpuError as err:
        logger.warning("no DPU could be allocated with profile %r: %s", profile, err)
        nr_dpus = 0
    shipped = tuple(name for name, kinds in kernels.available().items() if kind in kinds)
    return BackendInfo(libdpu=kind, version=libdpu_version(), nr_dpus_available=nr_dpus,
                       kernels=shipped)
