"""Host side of the embedding-bag DPU kernel (``pim/kernels/emb_bag.c``).

Data-oriented and small: a :class:`Tile` is rows x a column slice of a table, stored the way the
kernel reads it; :class:`EmbKernelRunner` owns the MRAM layout of a :class:`~updlrm.pim.DpuSet`,
places tiles (once, anywhere, replicated at will) and runs batches.  A batch is a list of jobs,
each "pool bags ``bag_ptr[j]..bag_ptr[j+1]`` of one CSR (``offsets``/``indices``/``weights``)
with placement ``placement[j]``" — indices are *local* rows of that placement's tile, so a
partitioner can serve row sets, column ranges, replicas and partial-sum cache rows (extra rows
of a tile) without the kernel knowing.  Per batch: one push of every DPU's packed request, one
launch (:meth:`EmbKernelRunner.submit`, asynchronous), one pull of every DPU's pooled rows
(:meth:`~EmbKernelRunner.collect`: one float32 array per job, or
:meth:`~EmbKernelRunner.collect_into`: partials of row shards and column slices folded into a
``[B, D]`` output in C).

Value modes and their error (per output element, against the fp32 table values):

* ``F32``: exact IEEE float32 — each bag's result equals ``acc = float32(acc + float32(w * row))``
  over the bag's rows in order, starting from ``+0.0`` (the DPU's soft-float is correctly
  rounded; the emulator build disables FMA contraction).
* ``I8`` / ``I32``: the tile is quantised once, ``q = rint(x / s)`` with a per-tile scale ``s``
  (``|x - s q| <= s/2``); the DPU sums ``q`` (or ``q * p``) in int32, and the host returns
  ``float32(sum * s * t)``.  A sum over ``L`` rows is off by at most ``L * s / 2``; a weighted sum
  by at most ``s/2 * sum|w_i| + t/2 * sum|s q_i|``, where the weights are quantised per job to
  ``p = rint(w / t)`` with ``t = max|w| / P`` and ``P = min(32767, (2**31 - 1) // (qmax * L_max))``
  so that no product-sum can leave int32 (``qmax`` = the tile's largest ``|q|``).  Any int32
  overflow the kernel still meets (e.g. an I32 tile with bags longer than its headroom) is
  flagged per bag and raised as :class:`FixedPointOverflowError` — never a wrapped result.
  :func:`int_error_bound` computes the bound.

Mean pooling is a sum on the DPU scaled on the host (:func:`mean_from_sum`); MAX is element-wise
(weights ignored).  Weighted sums need weights for every index of the batch's CSR.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Sequence

import numpy as np

from updlrm.errors import CapacityError, InvalidInputError, UpdlrmError
from updlrm.pim import _emb_pack

#: libdpu's name of the symbol spanning the free MRAM (DPU_MRAM_HEAP_POINTER_NAME).
MRAM_HEAP_SYMBOL = "__sys_used_mram_end"
#: MRAM per DPU (64 MiB); the kernel declares no MRAM variables, so its heap starts near 0.
MRAM_BYTES = 64 << 20
#: Name of the kernel binary shipped in ``updlrm.pim.kernels``.
KERNEL_NAME = "emb_bag"

_INT32_MAX = 2**31 - 1


class ValueMode(IntEnum):
    """How a tile's values are stored in MRAM (emb_abi.h ``enum emb_value_mode``)."""

    F32 = _emb_pack.F32
    I32 = _emb_pack.I32
    I8 = _emb_pack.I8

    @property
    def itemsize(self) -> int:
        """Bytes per stored value."""
        return 1 if self is ValueMode.I8 else 4


class PoolOp(IntEnum):
    """What the kernel does with a bag's rows (emb_abi.h ``enum emb_op``)."""

    SUM = _emb_pack.OP_SUM
    WSUM = _emb_pack.OP_WSUM
    MAX = _emb_pack.OP_MAX


class KernelError(UpdlrmError):
    """The kernel rejected a request or produced no fresh result (a host/kernel mismatch)."""


class FixedPointOverflowError(UpdlrmError, OverflowError):
    """An integer-mode bag left the int32 range on the DPU; its result would be wrong."""


_STORAGE_DTYPE = {ValueMode.F32: np.float32, ValueMode.I32: np.int32, ValueMode.I8: np.int8}


def row_stride(n_cols: int, mode: ValueMode) -> int:
    """Bytes of one stored row: ``n_cols`` values padded to a multiple of 8."""
    return (n_cols * ValueMode(mode).itemsize + 7) & ~7


@dataclass(frozen=True, eq=False)
class Tile:
    """Rows x a column slice of a table, stored as the kernel reads it.

    ``data`` is ``uint8[n_rows, row_bytes]`` (row stride a multiple of 8, zero padding);
    ``scale`` turns stored integers back into values (1.0 for F32); ``qmax`` is the largest
    ``|q|`` stored (0 for F32).
    """

    data: np.ndarray
    n_cols: int
    mode: ValueMode
    scale: float = 1.0
    qmax: int = 0

    @property
    def n_rows(self) -> int:
        """Rows in the tile (valid local rows are ``0 .. n_rows-1``)."""
        return int(self.data.shape[0])

    @property
    def row_bytes(self) -> int:
        """Row stride in MRAM."""
        return int(self.data.shape[1])

    def values(self) -> np.ndarray:
        """The stored values, dequantised to float64, ``[n_rows, n_cols]`` (for references)."""
        stored = self.data.view(_STORAGE_DTYPE[self.mode])[:, : self.n_cols]
        return stored.astype(np.float64) * self.scale


def make_tile(values: np.ndarray, mode: ValueMode | int = ValueMode.F32, *,
              headroom: int = 1024) -> Tile:
    """Store ``values`` (``[rows, cols]``, float) as a tile in ``mode``.

    Integer modes use one scale per tile, ``s = max|x| / qmax`` with ``qmax = 127`` (I8) or
    ``(2**31 - 1) // headroom`` (I32: sums of up to ``headroom`` rows cannot overflow).
    """
    mode = ValueMode(mode)
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] == 0:
        raise InvalidInputError(f"tile values must be [rows, cols] with cols >= 1, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise InvalidInputError("tile values must be finite")
    n_rows, n_cols = values.shape
    stride = row_stride(n_cols, mode)
    data = np.zeros((n_rows, stride), dtype=np.uint8)
    stored = data.view(_STORAGE_DTYPE[mode])[:, :n_cols]
    if mode is ValueMode.F32:
        stored[...] = values
        return Tile(data, n_cols, mode)
    if mode is ValueMode.I8:
        qmax = 127
    else:
        if not 1 <= headroom <= _INT32_MAX:
            raise InvalidInputError(f"headroom must be in [1, 2**31 - 1], got {headroom}")
        qmax = _INT32_MAX // headroom
    peak = float(np.max(np.abs(values))) if values.size else 0.0
    scale = peak / qmax if peak > 0.0 else 1.0
    q = np.rint(values.astype(np.float64) / scale)
    np.clip(q, -qmax, qmax, out=q)
    stored[...] = q
    return Tile(data, n_cols, mode, scale, int(np.max(np.abs(q))) if q.size else 0)


def mean_from_sum(sums: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Mean pooling from pooled float32 sums, in place (returns ``sums``): each bag's row times
    ``1 / length`` in float32, as the CPU kernel scales, so both backends give the same bits;
    empty bags stay 0."""
    sums *= (np.float32(1.0) / np.maximum(np.asarray(lengths), 1).astype(np.float32))[:, None]
    return sums


def int_error_bound(tile: Tile, lengths: np.ndarray, *, abs_weight_sums: np.ndarray | None = None,
                    abs_value_sums: np.ndarray | None = None,
                    weight_scale: float = 0.0) -> np.ndarray:
    """Per-bag bound on |pooled - exact| for an integer tile (see the module docstring).

    Unweighted: ``L * s / 2``.  Weighted: ``s/2 * sum|w| + t/2 * sum|x_hat|`` with
    ``abs_weight_sums`` = sum|w| and ``abs_value_sums`` = sum over the bag's rows of the
    largest |stored value| (an upper bound of sum|x_hat| per column), ``t = weight_scale``.
    The float32 rounding of the returned value comes on top.
    """
    half = tile.scale / 2.0
    if abs_weight_sums is None:
        return np.asarray(lengths, dtype=np.float64) * half
    return (np.asarray(abs_weight_sums, dtype=np.float64) * half
            + np.asarray(abs_value_sums, dtype=np.float64) * (weight_scale / 2.0))


class EmbKernelRunner:
    """Runs the embedding-bag kernel on a DpuSet: MRAM layout, tile placement, batches.

    Heap layout per DPU: ``[request area | output area | tiles ...]``.  ``request_capacity`` and
    ``output_capacity`` bound one batch's packed request and pooled rows per DPU.
    ``placements`` (a dict of NumPy columns, one entry per tile copy on a DPU) is what a
    partitioner or cost model can read back.
    """

    def __init__(self, dpus, *, request_capacity: int = 1 << 20, output_capacity: int = 1 << 20,
                 kernel: str = KERNEL_NAME) -> None:
        for name, cap in (("request_capacity", request_capacity), ("output_capacity", output_capacity)):
            if cap < 64 or cap % 8:
                raise InvalidInputError(f"{name} must be a multiple of 8 and >= 64, got {cap}")
        self.dpus = dpus
        self.n_dpus = len(dpus)
        self.request_capacity = int(request_capacity)
        self.output_capacity = int(output_capacity)
        self.tiles_start = self.request_capacity + self.output_capacity
        if self.tiles_start >= MRAM_BYTES:
            raise CapacityError("request and output areas leave no MRAM for tiles")
        dpus.load(kernel)
        dpus.copy("EMB_CONFIG", _emb_pack.pack_config(0, self.request_capacity,
                                                       self.request_capacity, self.output_capacity))
        self.heap_used = np.full(self.n_dpus, self.tiles_start, dtype=np.int64)
        self._placed: list[tuple[int, int, Tile]] = []  # (dpu, tile_off, tile)
        self._columns: dict[str, np.ndarray] | None = None
        self._batch_id = 0
        self._pending: tuple | None = None
        #: per DPU, the kernel's cycle counter at the end of the last collected batch: measured
        #: on UPMEM hardware; on the emulator a model (DMA cost only, no instructions).
        self.last_cycles = np.zeros(self.n_dpus, dtype=np.uint64)

    # --- tiles ------------------------------------------------------------------------------

    @property
    def tiles_capacity(self) -> int:
        """MRAM bytes per DPU available to tiles."""
        return MRAM_BYTES - self.tiles_start

    def load_tile(self, tile: Tile, dpus: Sequence[int]) -> np.ndarray:
        """Copy ``tile`` into MRAM of each DPU in ``dpus`` (replicas); one placement id per DPU."""
        targets = np.asarray(dpus, dtype=np.int64).reshape(-1)
        if np.unique(targets).size != targets.size:
            raise InvalidInputError("a tile is placed at most once per DPU")
        return self.load_tiles([tile] * targets.size, targets)

    def load_tiles(self, tiles: Sequence[Tile], dpus: Sequence[int]) -> np.ndarray:
        """Copy ``tiles[k]`` into MRAM of DPU ``dpus[k]``, each after what that DPU already
        holds; returns the placement ids.  Tiles of the same size landing at the same offset on
        different DPUs share one push, so a whole plan loads in a few transfers."""
        targets = np.asarray(dpus, dtype=np.int64).reshape(-1)
        if len(tiles) != targets.size:
            raise InvalidInputError(f"{len(tiles)} tiles for {targets.size} DPUs: give one DPU per tile")
        if targets.size and (targets.min() < 0 or targets.max() >= self.n_dpus):
            raise InvalidInputError(f"DPU indices must lie in [0, {self.n_dpus})")
        used = self.heap_used.copy()
        offsets = np.empty(targets.size, dtype=np.int64)
        for k, (tile, d) in enumerate(zip(tiles, targets)):
            offsets[k] = used[d]
            used[d] += tile.data.nbytes
        if targets.size and used.max() > MRAM_BYTES:
            worst = int(used.argmax())
            raise CapacityError(
                f"tiles do not fit DPU {worst}: {int(used[worst] - self.heap_used[worst])} bytes "
                f"needed, {MRAM_BYTES - int(self.heap_used[worst])} free of {self.tiles_capacity}")
        groups: dict[tuple[int, int], list] = {}
        for k, (tile, d) in enumerate(zip(tiles, targets)):
            if tile.data.nbytes:
                buffers = groups.setdefault((int(offsets[k]), tile.data.nbytes), [None] * self.n_dpus)
                buffers[d] = np.ascontiguousarray(tile.data).reshape(-1)
        for (offset, _), buffers in groups.items():
            self.dpus.copy(MRAM_HEAP_SYMBOL, buffers, offset)
        self.heap_used = used
        first = len(self._placed)
        self._placed.extend((int(d), int(off), tile) for tile, d, off in zip(tiles, targets, offsets))
        self._columns = None
        return np.arange(first, len(self._placed), dtype=np.int64)

    @property
    def placements(self) -> dict[str, np.ndarray]:
        """Placement table as NumPy columns: dpu, tile_off, n_rows, row_bytes, n_cols, mode, qmax, scale."""
        if self._columns is None:
            dpu, off, tiles = zip(*self._placed) if self._placed else ((), (), ())
            self._columns = {
                "dpu": np.array(dpu, dtype=np.int32),
                "tile_off": np.array(off, dtype=np.uint32),
                "n_rows": np.array([t.n_rows for t in tiles], dtype=np.uint32),
                "row_bytes": np.array([t.row_bytes for t in tiles], dtype=np.uint32),
                "n_cols": np.array([t.n_cols for t in tiles], dtype=np.uint32),
                "mode": np.array([int(t.mode) for t in tiles], dtype=np.uint8),
                "qmax": np.array([t.qmax for t in tiles], dtype=np.int64),
                "scale": np.array([t.scale for t in tiles], dtype=np.float64),
            }
        return self._columns

    # --- batches ----------------------------------------------------------------------------

    def run_batch(self, placement, op, bag_ptr, offsets, indices, weights=None) -> list[np.ndarray]:
        """:meth:`submit` then :meth:`collect`."""
        self.submit(placement, op, bag_ptr, offsets, indices, weights)
        return self.collect()

    def submit(self, placement, op, bag_ptr, offsets, indices, weights=None) -> None:
        """Pack, push and launch one batch without waiting for the DPUs.

        Job ``j`` pools bags ``bag_ptr[j] .. bag_ptr[j+1]-1`` of the CSR (``offsets`` has one
        entry more than there are bags; ``indices`` are local rows of the placement's tile;
        ``weights`` float32, needed by WSUM jobs) on placement ``placement[j]`` with ``op[j]``
        (a :class:`PoolOp` or one per job).
        """
        if self._pending is not None:
            raise InvalidInputError("collect() the batch in flight before submitting another")
        placement = np.ascontiguousarray(placement, dtype=np.int64).reshape(-1)
        ops = np.ascontiguousarray(np.broadcast_to(np.asarray(op, dtype=np.uint8), placement.shape))
        bag_ptr = np.ascontiguousarray(bag_ptr, dtype=np.int64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        indices = np.ascontiguousarray(indices)
        if indices.dtype not in (np.int32, np.int64):
            indices = indices.astype(np.int64)
        if weights is not None:
            weights = np.ascontiguousarray(weights, dtype=np.float32)
        cols = self.placements
        if placement.size and (placement.min() < 0 or placement.max() >= cols["dpu"].size):
            raise InvalidInputError("placement ids must come from load_tile()")
        self._batch_id = (self._batch_id + 1) & 0xFFFFFFFF
        packed = _emb_pack.pack_requests(
            self.n_dpus, self._batch_id, self.request_capacity, self.output_capacity,
            cols["dpu"], cols["tile_off"], cols["n_rows"], cols["row_bytes"], cols["n_cols"],
            cols["mode"], cols["qmax"], placement, ops, bag_ptr, offsets, indices, weights)
        requests = packed.requests
        self.dpus.copy(MRAM_HEAP_SYMBOL, list(requests), 0)
        self.dpus.launch(sync=False)
        self._pending = (placement, ops, bag_ptr, packed)

    def collect(self) -> list[np.ndarray]:
        """Wait for the batch in flight, pull the pooled rows and return one float32
        ``[n_bags, n_cols]`` array per job (float32 jobs: views into the pulled buffer)."""
        output, placement, _, bag_ptr, packed = self._pull()
        cols = self.placements
        results = []
        for j, p in enumerate(placement):
            d = cols["dpu"][p]
            n_cols = int(cols["n_cols"][p])
            n_bags = int(bag_ptr[j + 1] - bag_ptr[j])
            row_words = _emb_pack.out_row_bytes(n_cols) // 4
            start = int(packed.job_out_off[j])
            raw = output[d, start: start + n_bags * row_words * 4]
            if cols["mode"][p] == ValueMode.F32:
                results.append(raw.view(np.float32).reshape(n_bags, row_words)[:, :n_cols])
            else:
                acc = raw.view(np.int32).reshape(n_bags, row_words)[:, :n_cols]
                factor = cols["scale"][p] * packed.job_weight_scale[j]
                results.append((acc * factor).astype(np.float32))
        return results

    def collect_into(self, dst: np.ndarray, bag_row, job_col=0) -> None:
        """Wait for the batch in flight and fold its pooled rows into ``dst`` (float32
        ``[rows, cols]``, C-contiguous) in C, in job order: bag ``b`` of the batch's CSR goes to
        row ``bag_row[b]``, job ``j``'s columns start at ``job_col[j]``; SUM/WSUM jobs add, MAX
        jobs take the maximum (start those at -inf).  This is how partial sums of row tiles and
        column slices of one table come together without Python per job."""
        if not (isinstance(dst, np.ndarray) and dst.dtype == np.float32 and dst.ndim == 2
                and dst.flags.c_contiguous and dst.flags.writeable):
            raise InvalidInputError("dst must be a writeable C-contiguous float32 [rows, cols] array")
        output, placement, ops, bag_ptr, packed = self._pull()
        cols = self.placements
        _emb_pack.reduce_results(
            output, dst, cols["dpu"][placement], packed.job_out_off, cols["n_cols"][placement],
            cols["mode"][placement], ops,
            cols["scale"][placement] * packed.job_weight_scale, bag_ptr,
            np.ascontiguousarray(bag_row, dtype=np.int64),
            np.ascontiguousarray(np.broadcast_to(np.asarray(job_col, dtype=np.int64), placement.shape)))

    def _pull(self):
        """Wait for the batch in flight, pull every DPU's output area and check its status."""
        if self._pending is None:
            raise InvalidInputError("no batch in flight: submit() one first")
        placement, ops, bag_ptr, packed = self._pending
        self._pending = None
        self.dpus.sync()
        output = self.dpus.read(MRAM_HEAP_SYMBOL, packed.output_bytes, np.uint8,
                                self.request_capacity)
        self.last_cycles = self._check_status(output, placement, bag_ptr, packed)
        return output, placement, ops, bag_ptr, packed

    def _check_status(self, output, placement, bag_ptr, packed) -> np.ndarray:
        """Raise unless every DPU pooled this batch cleanly; returns the DPUs' cycle counts."""
        status = _emb_pack.read_status(output)
        stale = (status["magic"] != status["status_magic"]) | (status["batch_id"] != self._batch_id)
        if stale.any():
            d = int(np.flatnonzero(stale)[0])
            raise KernelError(f"DPU {d} returned no result for batch {self._batch_id} "
                              f"(is the loaded binary the emb_bag kernel of this ABI?)")
        dpu_of_job = self.placements["dpu"][placement]
        for field, exc in (("error", KernelError), ("overflow_bags", FixedPointOverflowError)):
            bad = np.flatnonzero(status[field] != 0)
            if bad.size == 0:
                continue
            d = int(bad[0])
            bag = int(status["error_bag" if field == "error" else "first_overflow_bag"][d])
            job, local = _locate(d, bag, dpu_of_job, packed)
            if field == "error":
                what = _emb_pack.ERRORS.get(int(status["error"][d]), "unknown error")
                raise KernelError(f"DPU {d}: {what} (job {job}, bag {local}, "
                                  f"value {int(status['error_value'][d])})")
            raise exc(f"DPU {d}: int32 accumulation overflowed in {int(status[field][d])} bag(s), "
                      f"first: job {job}, bag {local} (batch bag {int(bag_ptr[job]) + local if job >= 0 else -1}); "
                      f"use a larger I32 headroom, I8 or F32 for this tile")
        return status["cycles"]


def _locate(dpu: int, bag: int, dpu_of_job: np.ndarray, packed) -> tuple[int, int]:
    """(job, bag within job) of the kernel's DPU-global bag number, or (-1, -1)."""
    on_dpu = np.flatnonzero(dpu_of_job == dpu)
    for j in on_dpu[::-1]:
        if packed.job_bag0[j] <= bag:
            return int(j), int(bag - packed.job_bag0[j])
    return -1, -1
