"""Criteo display-ads TSV reader: ``label, I1..I13, C1..C26`` per line, as in the Criteo
Kaggle/Terabyte data, plain or gzip-compressed.

Preprocessing is the DLRM reference reader's: dense values become ``log(1 + max(x, 0))``
(missing → 0), categorical hex ids become a row of the matching table (missing → id 0, i.e.
row 0), one index per bag. Two id → row mappings (``hashing``):

``"modulo"`` (default)
    ``int(id, 16) % rows``, what facebookresearch/dlrm does with ``--max-ind-range``.
``"mix64"``
    ``mix64(int(id, 16)) % rows`` with the splitmix64 finaliser: use it when the ids are not
    already uniform hashes (sequential or structured ids would otherwise keep only their low
    bits and collide in patterns).

Lines are read ``batch_size`` at a time, so memory stays bounded by one chunk. A malformed
line — wrong field count, a dense value that is not an integer, a categorical value that is not
a hex id of at most 16 digits, a label other than 0/1/empty — is, by default, skipped and
counted per reason (:attr:`CriteoReader.malformed`) with one warning at the end of the pass; it
never shifts columns. With ``strict=True`` it raises :class:`~updlrm.errors.InvalidInputError`
naming ``file:line`` and the field.
"""
from __future__ import annotations

import gzip
import io
import logging
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from ._criteo import HASH_MIX64, HASH_MODULO, REASONS, parse_lines
from .chunk import SampleChunk

log = logging.getLogger(__name__)

NUM_DENSE = 13
NUM_SPARSE = 26
HASHINGS = {"modulo": HASH_MODULO, "mix64": HASH_MIX64}


class CriteoReader:
    """Streams a Criteo-format TSV file as :class:`SampleChunk`\\ s (dense ``[n, 13]`` float32
    under ``dense_name``, 26 one-index bags, float32 labels).

    Args:
        path: ``.tsv``/``.txt`` file, gzip-compressed if its name ends in ``.gz``.
        rows: rows of each of the 26 tables (categorical ids are mapped into ``[0, rows[t])``).
        strict: raise on the first malformed line instead of skipping and counting it.
        hashing: ``"modulo"`` or ``"mix64"`` (see the module docstring).
        dense_name: key of the dense array in each chunk (the model's dense input name).

    After (or during) a pass of :meth:`chunks`: ``lines`` lines read, ``malformed`` the lines
    skipped per reason (``field_count``, ``integer``, ``hex``, ``label``), ``skipped`` their sum.
    Each pass starts the counts afresh.
    """

    NUM_DENSE = NUM_DENSE
    NUM_SPARSE = NUM_SPARSE

    def __init__(self, path: str | Path, rows: Sequence[int], *, strict: bool = False,
                 hashing: str = "modulo", dense_name: str = "dense") -> None:
        self.path = Path(path)
        if len(rows) != NUM_SPARSE:
            raise InvalidInputError(f"{self.path}: Criteo TSV has {NUM_SPARSE} categorical features, "
                                    f"got row counts for {len(rows)} tables")
        self.rows = np.array(rows, dtype=np.int64)
        if (self.rows < 1).any():
            raise InvalidInputError(f"{self.path}: every table needs at least one row, got {list(rows)}")
        if hashing not in HASHINGS:
            raise InvalidInputError(f"hashing must be one of {sorted(HASHINGS)}, got {hashing!r}")
        self.strict = strict
        self.hashing = hashing
        self.dense_name = dense_name
        self.num_samples: int | None = None   # unknown until read (sources that know it say so)
        self.lines = 0
        self.malformed: dict[str, int] = dict.fromkeys(REASONS, 0)
        self._first_bad: dict[str, int] = {}

    @property
    def skipped(self) -> int:
        """Malformed lines skipped in the current (or last) pass."""
        return sum(self.malformed.values())

    def _open(self) -> io.BufferedIOBase:
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def chunks(self, batch_size: int) -> Iterator[SampleChunk]:
        """Chunks of at most ``batch_size`` samples (fewer where lines were skipped)."""
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        self.lines = 0
        self.malformed = dict.fromkeys(REASONS, 0)
        self._first_bad = {}
        with self._open() as f:
            while True:
                data = b"".join(islice(f, batch_size))
                if not data:
                    break
                chunk = self._parse(data)
                if chunk is not None:
                    yield chunk
        if self.skipped:
            log.warning("%s: skipped %d malformed line(s) of %d: %s", self.path, self.skipped, self.lines,
                        ", ".join(f"{k} {v} (first at line {self._first_bad[k]})"
                                  for k, v in self.malformed.items() if v))

    def _parse(self, data: bytes) -> SampleChunk | None:
        """One buffer of whole lines -> a chunk of its good lines (None if there are none)."""
        try:
            labels, dense, cats, bad_count, first_bad = parse_lines(
                data, self.rows, hashing=HASHINGS[self.hashing], strict=self.strict)
        except ValueError as e:
            line, _, why = e.args
            raise InvalidInputError(f"{self.path}:{self.lines + line + 1}: {why}") from None
        for reason, count, first in zip(REASONS, bad_count, first_bad):
            if count:
                self.malformed[reason] += int(count)
                self._first_bad.setdefault(reason, self.lines + int(first) + 1)
        n = len(labels)
        self.lines += n + int(bad_count.sum())
        if n == 0:
            return None
        offsets = np.arange(n + 1, dtype=np.int64)
        sparse = SparseBatch.from_jagged(list(cats), [offsets] * NUM_SPARSE, include_last_offset=True)
        return SampleChunk({self.dense_name: dense}, sparse, labels)


class CriteoTsvSamples(CriteoReader):
    """:class:`CriteoReader` for ``Session.score``: checks that the model takes 13 dense features
    and 26 unweighted tables, and reads them into the model's dense input.

    Strict by default: scores are written one per input line, and a skipped line would shift
    every score after it against the file.
    """

    def __init__(self, path: Path, dense_name: str, dense_width: int,
                 tables: Sequence[EmbeddingTable], *, strict: bool = True, hashing: str = "modulo") -> None:
        if dense_width != NUM_DENSE or len(tables) != NUM_SPARSE:
            raise InvalidInputError(
                f"{path}: Criteo TSV has {NUM_DENSE} dense and {NUM_SPARSE} categorical "
                f"features, the model takes {dense_width} dense and {len(tables)} tables")
        if any(t.weighted for t in tables):
            raise InvalidInputError(f"{path}: Criteo TSV has no per-sample weights, the model needs them")
        super().__init__(path, [t.rows for t in tables], strict=strict, hashing=hashing,
                         dense_name=dense_name)
