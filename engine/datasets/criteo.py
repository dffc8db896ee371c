"""Criteo display-ads TSV reader: ``label, I1..I13, C1..C26`` per line, as in the Criteo
Kaggle/Terabyte data.

Dense values become ``log(1 + max(x, 0))`` (missing → 0), categorical hex ids become
``int(id, 16) % rows`` of the matching table (missing → 0), one index per bag — the mapping of
the DLRM reference reader.
"""
from __future__ import annotations

import gzip
import io
from itertools import islice
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from ._criteo import parse_lines
from .chunk import SampleChunk


class CriteoTsvSamples:
    """Streams a Criteo-format TSV file (label, 13 integer, 26 categorical columns)."""

    NUM_DENSE = 13
    NUM_SPARSE = 26

    def __init__(self, path: Path, dense_name: str, dense_width: int,
                 tables: Sequence[EmbeddingTable]) -> None:
        if dense_width != self.NUM_DENSE or len(tables) != self.NUM_SPARSE:
            raise InvalidInputError(
                f"{path}: Criteo TSV has {self.NUM_DENSE} dense and {self.NUM_SPARSE} categorical "
                f"features, the model takes {dense_width} dense and {len(tables)} tables")
        if any(t.weighted for t in tables):
            raise InvalidInputError(f"{path}: Criteo TSV has no per-sample weights, the model needs them")
        self.path = path
        self.dense_name = dense_name
        self.rows = np.array([t.rows for t in tables], dtype=np.int64)
        self.num_samples: int | None = None

    def _open(self) -> io.BufferedIOBase:
        if self.path.suffix == ".gz":
            return gzip.open(self.path, "rb")
        return open(self.path, "rb")

    def chunks(self, batch_size: int) -> Iterator[SampleChunk]:
        with self._open() as f:
            first_line = 0
            while True:
                data = b"".join(islice(f, batch_size))
                if not data:
                    return
                try:
                    labels, dense, cats = parse_lines(data, self.rows)
                except ValueError as e:
                    line, why = e.args
                    raise InvalidInputError(f"{self.path}:{first_line + line + 1}: {why}") from None
                n = len(labels)
                first_line += n
                offsets = np.arange(n + 1, dtype=np.int64)
                sparse = SparseBatch.from_jagged(list(cats), [offsets] * self.NUM_SPARSE,
                                                 include_last_offset=True)
                yield SampleChunk({self.dense_name: dense}, sparse, labels)
