"""Keep the tables the CPU gathers from on transparent huge pages (THP).

Random row gathers over multi-GB tables are limited by memory latency and TLB reach. Measured
on the dev VM (benchmarks/bench_kernel.py --pages, 8 x 2 M x 64 fp32 = 4.1 GB, B=4096,
2 threads, median of 5): the kernel pooled 68 M lookups/s on huge pages vs 36 M/s on 4 KiB
pages with one lookup per bag (1.9x), 141 vs 125 M/s with 20-80 (1.1x). THP is in
``madvise`` mode there, so memory only gets huge pages where ``madvise(MADV_HUGEPAGE)`` asked
for them *before* it was touched.

* NumPy already madvises its own large allocations, so arrays NumPy allocated usually sit on
  huge pages; :func:`place_table` measures that (``/proc/self/smaps``) instead of assuming it.
* Arrays over other memory (``np.frombuffer`` of bytes, torch tensors, ...) are copied once into
  an anonymous ``mmap`` that is madvised before the copy touches it.
* Read-only memmaps of a model's external data are left alone under ``"auto"``: a private
  copy costs RAM and load time equal to the table size (4 GB for the benchmark model), while
  the memmap's resident memory stays the pages actually touched. On the dev VM (ext4, Linux
  6.18) the page cache already maps such files with 2 MiB folios (smaps ``FilePmdMapped``:
  3.78 of 3.81 GiB touched) and the kernel pooled 89 / 146 M lookups/s from the memmap, as
  fast as from an anonymous huge-page copy. Where the page cache uses small pages,
  ``hugepages=True`` copies memmaps too, trading RAM and load time for the gather rate.
"""
from __future__ import annotations

import logging
import mmap
import re
from dataclasses import dataclass
from typing import Literal, Union

import numpy as np

log = logging.getLogger(__name__)

HUGE_PAGE_BYTES = 2 << 20
#: "auto" leaves smaller tables alone: they fit the reach of the 4 KiB-page TLBs, or nearly.
AUTO_MIN_BYTES = 32 << 20
#: "auto" copies an anonymous table when less than this share of it sits on huge pages.
AUTO_MIN_HUGE_SHARE = 0.5

HugePagesPolicy = Union[bool, Literal["auto"]]

_THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
_VMA = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$")


def thp_mode() -> str:
    """The kernel's THP mode (``always``, ``madvise``, ``never``) or ``unavailable``."""
    try:
        with open(_THP_ENABLED) as f:
            match = re.search(r"\[(\w+)\]", f.read())
    except OSError:
        return "unavailable"
    return match.group(1) if match else "unavailable"


@dataclass(frozen=True)
class Residency:
    """How the memory under an array is mapped (from ``/proc/self/smaps``)."""

    file_backed: bool
    resident_bytes: int
    huge_bytes: int


def residency(arr: np.ndarray) -> Residency:
    """Estimate how ``arr``'s bytes are mapped, from the mappings (VMAs) that overlap them.

    smaps counts per mapping. For each overlapping mapping, ``arr`` is credited with
    ``min(mapping's resident bytes, overlap)`` resident bytes, of which the mapping's huge-page
    share is huge: exact for arrays with mappings of their own (large NumPy arrays, memmaps,
    huge-page copies), an estimate for arrays inside a shared mapping such as the heap.
    """
    lo = arr.__array_interface__["data"][0]
    hi = lo + arr.nbytes
    file_backed, resident, huge = False, 0.0, 0.0

    def credit(overlap: int, counts: dict[str, int]) -> None:
        nonlocal resident, huge
        rss = counts.get("Rss", 0)
        if rss:
            part = min(rss, overlap)
            resident += part
            huge += part * (counts.get("AnonHugePages", 0) + counts.get("FilePmdMapped", 0)) / rss

    overlap, counts = 0, {}
    with open("/proc/self/smaps") as f:
        for line in f:
            vma = _VMA.match(line)
            if vma:
                credit(overlap, counts)
                start, end = int(vma.group(1), 16), int(vma.group(2), 16)
                overlap, counts = max(0, min(hi, end) - max(lo, start)), {}
                # Shared anonymous memory shows up as a deleted /dev/zero with an inode.
                file_backed |= overlap > 0 and vma.group(3) != "0" and not vma.group(4).startswith("/dev/zero")
            elif overlap:
                key, _, value = line.partition(":")
                if key in ("Rss", "AnonHugePages", "FilePmdMapped"):
                    counts[key] = int(value.split()[0]) << 10
    credit(overlap, counts)
    return Residency(file_backed, int(resident), int(huge))


def empty_on_huge_pages(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialised C-contiguous array in a 2 MiB-aligned anonymous mapping madvised for THP
    (pages untouched: they become huge pages as they are first written)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    mapping = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # Must precede the first touch: the kernel picks the page size at fault time.
    mapping.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    skip = -raw.__array_interface__["data"][0] % HUGE_PAGE_BYTES
    # The array keeps `mapping` alive through its base chain.
    return raw[skip:skip + nbytes].view(dtype).reshape(shape)


def copy_to_huge_pages(arr: np.ndarray) -> np.ndarray:
    """A read-only copy of ``arr`` in a 2 MiB-aligned anonymous mapping madvised for THP."""
    out = empty_on_huge_pages(arr.shape, arr.dtype)
    np.copyto(out, arr)
    out.flags.writeable = False
    return out


def place_table(weight: np.ndarray, policy: HugePagesPolicy = "auto") -> np.ndarray:
    """Return ``weight`` or a huge-page copy of it, as ``policy`` decides (see the module doc)."""
    if policy is False or weight.nbytes == 0 or thp_mode() not in ("always", "madvise"):
        return weight
    if policy == "auto" and weight.nbytes < AUTO_MIN_BYTES:
        return weight
    where = residency(weight)
    if where.file_backed and policy == "auto":
        return weight
    if where.huge_bytes >= AUTO_MIN_HUGE_SHARE * weight.nbytes:
        return weight
    log.info("copying a %.1f MiB table onto huge pages", weight.nbytes / 2**20)
    return copy_to_huge_pages(weight)
