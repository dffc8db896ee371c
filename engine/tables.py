"""Embedding tables as the engine sees them: weights plus how their bags are pooled."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class Pooling(str, Enum):
    """How the rows of one bag are reduced (torch.nn.EmbeddingBag's ``mode``)."""

    SUM = "sum"
    MEAN = "mean"
    MAX = "max"


@dataclass(frozen=True, eq=False)
class EmbeddingTable:
    """One embedding table.

    ``weight`` is ``[rows, dim]`` float32 or float16, C-contiguous; it may be a read-only
    ``np.memmap`` over the model's external data. ``weighted`` says whether bags of this
    table carry per-sample weights.
    """

    name: str
    weight: np.ndarray
    pooling: Pooling = Pooling.SUM
    weighted: bool = False

    def __post_init__(self) -> None:
        w = self.weight
        if w.ndim != 2:
            raise ValueError(f"table {self.name!r}: weight must be 2-D [rows, dim], got shape {w.shape}")
        if w.dtype not in (np.float32, np.float16):
            raise TypeError(f"table {self.name!r}: weight dtype must be float32 or float16, got {w.dtype}")
        if not w.flags.c_contiguous:
            raise ValueError(f"table {self.name!r}: weight must be C-contiguous")
        object.__setattr__(self, "pooling", Pooling(self.pooling))

    @property
    def rows(self) -> int:
        """Number of rows (valid indices are ``0 .. rows-1``)."""
        return int(self.weight.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension (columns)."""
        return int(self.weight.shape[1])
