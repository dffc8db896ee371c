"""The unit every sample source yields."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..sparse import SparseBatch


@dataclass
class SampleChunk:
    """A run of consecutive samples: dense inputs by name, their bags, labels if the file has them."""

    dense: dict[str, np.ndarray]
    sparse: SparseBatch
    labels: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.sparse.batch_size
