"""The seam between the engine and its embedding backends (CPU kernel, PIM)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from .sparse import SparseBatch
    from .tables import EmbeddingTable


@dataclass
class BackendStats:
    """What a backend reports about the batches it served.

    ``measured_s`` holds wall-clock seconds measured on this host, per stage.
    ``modelled_s`` holds *modelled* seconds (e.g. predicted DPU time on a real UPMEM server);
    they are estimates, never measurements, and every report labels them so.
    """

    backend: str
    batches: int = 0
    lookups: int = 0
    measured_s: dict[str, float] = field(default_factory=dict)
    modelled_s: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class EmbeddingBackend(Protocol):
    """Runs the embedding-bag lookups of every table for one batch."""

    name: str

    def load(self, tables: Sequence["EmbeddingTable"], *, profile: Any | None = None) -> None:
        """Take ownership of the tables (place them, build plans, warm caches)."""

    def lookup(self, batch: "SparseBatch") -> list[np.ndarray]:
        """Pool every table's bags; one float32 C-contiguous ``[B, dim_t]`` array per table.

        ``batch`` has already been validated against the tables.
        """

    def stats(self) -> BackendStats:
        """Per-stage times since load (measured and, where any, modelled)."""
