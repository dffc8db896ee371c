"""Keep the tables the CPU gathers from on transparent huge pages (THP).

Random row gathers over multi-GB tables are limited by memory latency, and on virtual machines
every TLB miss is a nested page walk: on the dev VM huge pages give 1.4-3x the gather rate of
4 KiB pages (shared/reference/baselines.md). THP there is in ``madvise`` mode, so memory only
gets huge pages where ``madvise(MADV_HUGEPAGE)`` asked for them *before* it was touched.

* NumPy already madvises its own large allocations, so arrays NumPy allocated usually sit on
  huge pages; :func:`place_table` measures that (``/proc/self/smaps``) instead of assuming it.
* Arrays over other memory (``np.frombuffer`` of bytes, torch tensors, ...) are copied once into
  an anonymous ``mmap`` that is madvised before the copy touches it.
* Read-only memmaps of a model's external data are left alone under ``"auto"``: a private
  copy costs RAM and load time equal to the table size (4 GB for the benchmark model), while
  the memmap's resident memory stays the pages actually touched. ``hugepages=True`` copies them
  anyway when the gather rate matters more than RAM and load time.
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
_VMA = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)")


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
    """Sum the mappings that overlap ``arr``'s bytes (whole mappings, not just the overlap)."""
    lo = arr.__array_interface__["data"][0]
    hi = lo + arr.nbytes
    file_backed, rss, huge, inside = False, 0, 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            vma = _VMA.match(line)
            if vma:
                start, end = int(vma.group(1), 16), int(vma.group(2), 16)
                inside = start < hi and end > lo
                file_backed |= inside and vma.group(3) != "0"
            elif inside:
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0]) << 10
                elif key in ("AnonHugePages", "FilePmdMapped"):
                    huge += int(value.split()[0]) << 10
    return Residency(file_backed, rss, huge)


def copy_to_huge_pages(arr: np.ndarray) -> np.ndarray:
    """A read-only copy of ``arr`` in a 2 MiB-aligned anonymous mapping madvised for THP."""
    mapping = mmap.mmap(-1, arr.nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    # Must precede the first touch: the kernel picks the page size at fault time.
    mapping.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(mapping, dtype=np.uint8)
    skip = -raw.__array_interface__["data"][0] % HUGE_PAGE_BYTES
    # The array keeps `mapping` alive through its base chain.
    out = raw[skip:skip + arr.nbytes].view(arr.dtype).reshape(arr.shape)
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
