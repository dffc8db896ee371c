"""Sample sources for batch scoring: in-memory arrays, ``.npz``/``.npy`` folders, Criteo TSV.

Every source yields :class:`SampleChunk` objects of at most ``batch_size`` samples, reading the
file as it goes, so a file larger than memory can be scored.

Formats
-------
* arrays: ``(dense, sparse)`` where ``dense`` is an array (the model's one dense input) or a dict
  input name → array, and ``sparse`` a :class:`~updlrm.sparse.SparseBatch` over all samples.
* ``.npz`` file or a folder of ``.npy`` files (memory-mapped): ``dense`` (or one array per dense
  input, named after it), per table ``t`` (0-based, in the model's bag order) ``indices_<t>``
  — 1-D with ``offsets_<t>`` (N+1 entries) or 2-D ``[N, L]`` fixed-size bags — and
  ``weights_<t>`` for weighted tables; optional ``labels``.
* Criteo TSV (``.tsv``, ``.txt``, optionally ``.gz``): see :mod:`updlrm.datasets.criteo`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..sparse import SparseBatch
from ..tables import EmbeddingTable
from .chunk import SampleChunk
from .criteo import CriteoTsvSamples


class ArraySamples:
    """Samples already in memory: dense arrays by input name plus one SparseBatch."""

    def __init__(self, dense: Mapping[str, np.ndarray], sparse: SparseBatch,
                 labels: np.ndarray | None = None) -> None:
        n = sparse.batch_size
        for name, arr in dense.items():
            if arr.shape[0] != n:
                raise InvalidInputError(
                    f"dense input {name!r} has {arr.shape[0]} samples but the sparse batch has {n}")
        self.dense = dict(dense)
        self.sparse = sparse
        self.labels = labels
        self.num_samples: int | None = n

    def chunks(self, batch_size: int) -> Iterator[SampleChunk]:
        for start in range(0, self.num_samples, batch_size):
            stop = min(start + batch_size, self.num_samples)
            yield SampleChunk({k: v[start:stop] for k, v in self.dense.items()},
                              self.sparse.slice(start, stop),
                              None if self.labels is None else self.labels[start:stop])


def _arrays_from_store(store: Mapping[str, np.ndarray], dense_names: Sequence[str],
                       tables: Sequence[EmbeddingTable], where: str) -> ArraySamples:
    if len(dense_names) == 1 and "dense" in store and dense_names[0] not in store:
        dense = {dense_names[0]: store["dense"]}
    else:
        missing = [n for n in dense_names if n not in store]
        if missing:
            raise InvalidInputError(f"{where}: no array for dense input(s) {missing} "
                                    f"(have {sorted(store)})")
        dense = {n: store[n] for n in dense_names}
    n = next(iter(dense.values())).shape[0] if dense else None
    indices, offsets, weights = [], [], []
    for t, table in enumerate(tables):
        key = f"indices_{t}"
        if key not in store:
            raise InvalidInputError(f"{where}: no {key!r} for table {t} ({table.name!r})")
        idx = store[key]
        if idx.ndim == 2:
            indices.append(idx.reshape(-1))
            offsets.append(np.arange(0, idx.size + 1, max(idx.shape[1], 1), dtype=np.int64)
                           if idx.shape[1] else np.zeros(idx.shape[0] + 1, np.int64))
        else:
            if f"offsets_{t}" not in store:
                raise InvalidInputError(f"{where}: 1-D {key!r} needs 'offsets_{t}' (N+1 entries)")
            indices.append(idx)
            offsets.append(store[f"offsets_{t}"])
        weights.append(store[f"weights_{t}"] if f"weights_{t}" in store else None)
    sparse = SparseBatch.from_jagged(indices, offsets, weights, include_last_offset=True)
    if n is not None and sparse.batch_size != n:
        raise InvalidInputError(f"{where}: dense arrays have {n} samples, bags have {sparse.batch_size}")
    labels = store["labels"] if "labels" in store else None
    return ArraySamples(dense, sparse, labels)


def open_samples(source, *, dense_inputs: Sequence[tuple[str, tuple]],
                 tables: Sequence[EmbeddingTable]):
    """Turn what a user passed to ``Session.score`` into a sample source.

    ``dense_inputs`` lists the model's dense inputs as ``(name, shape)``; ``tables`` the model's
    tables in bag order.
    """
    dense_names = [name for name, _ in dense_inputs]
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[1], SparseBatch):
        dense, sparse = source
        if not isinstance(dense, Mapping):
            if len(dense_names) != 1:
                raise InvalidInputError(f"the model has dense inputs {dense_names}: pass a dict")
            dense = {dense_names[0]: dense}
        return ArraySamples(dense, sparse)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"no such sample file or folder: {path}")
        if path.is_dir():
            store = {p.stem: np.load(p, mmap_mode="r") for p in sorted(path.glob("*.npy"))}
            return _arrays_from_store(store, dense_names, tables, str(path))
        if path.suffix == ".npz":
            return _arrays_from_store(np.load(path), dense_names, tables, str(path))
        if path.suffix in (".tsv", ".txt", ".gz"):
            if len(dense_inputs) != 1:
                raise InvalidInputError(f"{path}: Criteo TSV needs a model with one dense input")
            name, shape = dense_inputs[0]
            width = shape[-1] if shape and isinstance(shape[-1], int) else CriteoTsvSamples.NUM_DENSE
            return CriteoTsvSamples(path, name, width, tables)
        raise InvalidInputError(f"{path}: unknown sample format (use .npz, a folder of .npy, "
                                f"or a Criteo .tsv/.txt[.gz])")
    raise InvalidInputError("score() takes a file path, a folder, or a (dense, SparseBatch) pair; "
                            f"got {type(source).__name__}")
