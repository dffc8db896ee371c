"""Access traces: the bags of any sample source, cut to a bounded sample, as the partitioner's
:class:`~updlrm.pim.profile.AccessProfile` (row frequencies and co-occurring rows).

A source is anything with ``.chunks(batch_size)`` yielding :class:`SampleChunk` (``ArraySamples``,
``CriteoReader``, the MovieLens samples, ``open_samples``'s result), a :class:`SparseBatch`, or an
iterable of ``SparseBatch``. The counting is :func:`~updlrm.pim.profile.build_profile`'s; this
module only decides what it reads.
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from ..errors import InvalidInputError
from ..sparse import SparseBatch


class SparseTrace:
    """Re-iterable view of the first ``max_samples`` samples' bags of ``source``.

    A source with ``chunks`` is read again on every pass (a file is streamed, never held), so
    memory stays at one chunk; a one-shot iterator of batches is kept in memory, up to the bound.
    """

    def __init__(self, source: Any, *, batch_size: int = 4096, max_samples: int | None = None) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch_size must be >= 1, got {batch_size}")
        if max_samples is not None and max_samples < 1:
            raise InvalidInputError(f"max_samples must be >= 1 or None, got {max_samples}")
        self.batch_size = batch_size
        self.max_samples = max_samples
        if hasattr(source, "chunks"):
            self._source = source
        elif isinstance(source, SparseBatch):
            self._source = [source]
        elif isinstance(source, Iterable):
            self._source = source if iter(source) is not source else list(self._bounded(source))
        else:
            raise InvalidInputError("a trace source needs .chunks(batch_size) or must be an iterable of "
                                    f"SparseBatch, got {type(source).__name__}")

    def _batches(self) -> Iterator[SparseBatch]:
        if hasattr(self._source, "chunks"):
            return (chunk.sparse for chunk in self._source.chunks(self.batch_size))
        return iter(self._source)

    def _bounded(self, batches: Iterable[SparseBatch]) -> Iterator[SparseBatch]:
        left = self.max_samples
        for batch in batches:
            if not isinstance(batch, SparseBatch):
                raise InvalidInputError(f"a trace holds SparseBatch objects, got {type(batch).__name__}")
            if left is not None and batch.batch_size >= left:
                yield batch.slice(0, left)
                return
            if left is not None:
                left -= batch.batch_size
            yield batch

    def __iter__(self) -> Iterator[SparseBatch]:
        return self._bounded(self._batches())


def extract_profile(source: Any, num_rows: Sequence[int], *, names: Sequence[str] | None = None,
                    batch_size: int = 4096, max_samples: int | None = None,
                    cpu_tables: Sequence[Any] | None = None, **profile_options: Any):
    """:class:`~updlrm.pim.profile.AccessProfile` of the first ``max_samples`` samples (all if
    None) of ``source``, read ``batch_size`` at a time.

    ``num_rows`` and ``names`` describe the tables in bag order; ``profile_options`` go to
    :func:`~updlrm.pim.profile.build_profile` (``exact_limit``, ``top_k``, ``pair_rows``, ...).
    With the model's ``cpu_tables`` (``EmbeddingTable`` objects, e.g. ``Session.tables``) the
    profile also records the CPU kernel's rates MEASURED on the first batches
    (:func:`~updlrm.pim.calibrate.measure_cpu_rates`): the planner's CPU baseline.
    """
    from ..pim.calibrate import measure_cpu_rates
    from ..pim.profile import build_profile

    trace = SparseTrace(source, batch_size=batch_size, max_samples=max_samples)
    profile = build_profile(trace, num_rows, names=names, **profile_options)
    if cpu_tables is not None:
        profile.cpu_rates = measure_cpu_rates(cpu_tables, trace, source="MEASURED here on the profiled requests")
    return profile
