"""Emulator counters of a :class:`~updlrm.pim.DpuSet`, as NumPy structured arrays.

The dtypes mirror the emulator's C structs (``pim/emu/include/dpu_emu.h``) field by field, so
libdpu fills them in place; the binding checks their sizes against the C ``sizeof``.
``modelled_cycles`` is a model (``alpha + size/2`` cycles per DMA), not a measurement.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from updlrm.errors import UpdlrmError

# Largest NR_TASKLETS a kernel can have (DPU v1A: 24 hardware threads).
MAX_TASKLETS = 24

DMA_COUNTERS = np.dtype([
    ("read_calls", np.uint64),
    ("read_bytes", np.uint64),
    ("write_calls", np.uint64),
    ("write_bytes", np.uint64),
    ("modelled_cycles", np.uint64),
])

DPU_COUNTERS = np.dtype([
    ("launches", np.uint64),
    ("dma", DMA_COUNTERS),
    ("to_dpu_calls", np.uint64),
    ("to_dpu_bytes", np.uint64),
    ("from_dpu_calls", np.uint64),
    ("from_dpu_bytes", np.uint64),
])

# kind: 0 dpu_copy_to/from, 1 dpu_push_xfer, 2 dpu_broadcast_to (dpu_emu_xfer_kind_t);
# direction: 0 host to DPU, 1 DPU to host (dpu_xfer_t).
XFER_RECORD = np.dtype([
    ("kind", np.uint32),
    ("direction", np.uint32),
    ("is_mram", np.uint32),
    ("nr_dpus", np.uint32),
    ("bytes_per_dpu", np.uint64),
    ("total_bytes", np.uint64),
])

XFER_TOTALS = np.dtype([
    ("to_dpu_calls", np.uint64),
    ("to_dpu_bytes", np.uint64),
    ("from_dpu_calls", np.uint64),
    ("from_dpu_bytes", np.uint64),
    ("launches", np.uint64),
])


class CountersUnavailableError(UpdlrmError):
    """Counters were asked of a libdpu that has none (the real SDK on hardware)."""


@dataclass(frozen=True)
class DpuCounters:
    """What the emulator counted for a set, since allocation or ``reset_counters()``.

    Attributes:
        dpus: ``[nr_dpus]`` of :data:`DPU_COUNTERS`, cumulative per DPU (row i is the i-th DPU
            of ``DpuSet.dpus``): ``launches``, ``dma.read_calls`` ... ``dma.modelled_cycles``,
            ``to_dpu_calls/bytes``, ``from_dpu_calls/bytes``.
        last_launch: ``[nr_dpus, MAX_TASKLETS]`` of :data:`DMA_COUNTERS`: each tasklet's DMA
            activity in the DPU's most recent launch (rows past ``nr_tasklets`` are zero).
        nr_tasklets: ``[nr_dpus]`` uint32, NR_TASKLETS of the kernel last launched (0: never).
        transfers: ``[n]`` of :data:`XFER_RECORD`, every host transfer call on the allocation,
            oldest first (the emulator keeps the latest 65,536).
        totals: a :data:`XFER_TOTALS` record for the whole allocation.
    """

    dpus: np.ndarray
    last_launch: np.ndarray
    nr_tasklets: np.ndarray
    transfers: np.ndarray
    totals: np.void
