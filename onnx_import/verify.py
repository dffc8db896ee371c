"""Checking each recognised bag numerically against its original graph region.

The region that computes a bag's output is cut out (with its table, still memory-mapped by
onnxruntime from the external data), run in onnxruntime on random bags — B=1 and a larger batch,
with empty bags, single-index bags and long bags — and compared with :func:`reference_bag`, a
slow, obviously correct NumPy model of the recognised semantics.

Known divergence: TorchScript's max-mode export gives ``-inf`` for an empty bag (``ReduceMax``
over nothing) where PyTorch, and updlrm, give 0. Those rows are skipped for "torchscript-loop"
max bags and checked everywhere else.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx

from ..errors import ModelImportError
from ..tables import Pooling
from .extract import extract
from .graph import GraphIndex
from .model import BagSource, ImportedBag

logger = logging.getLogger(__name__)

_NP_INT = {onnx.TensorProto.INT64: np.int64, onnx.TensorProto.INT32: np.int32}
_NP_FLOAT = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16,
             onnx.TensorProto.DOUBLE: np.float64}


def reference_bag(weight: np.ndarray, indices: np.ndarray, offsets: np.ndarray,
                  weights: np.ndarray | None, pooling: Pooling) -> np.ndarray:
    """Pooled ``[B, dim]`` float32 bags, one Python loop step per bag.

    ``offsets`` has ``B + 1`` entries (bag b = ``indices[offsets[b]:offsets[b+1]]``); empty bags
    give 0 in every mode; per-sample weights multiply rows before pooling.
    """
    pooling = Pooling(pooling)
    batch = len(offsets) - 1
    out = np.zeros((batch, weight.shape[1]), np.float32)
    for b in range(batch):
        ids = indices[offsets[b]:offsets[b + 1]]
        if len(ids) == 0:
            continue
        rows = np.asarray(weight[ids], dtype=np.float32)
        if weights is not None:
            rows = rows * np.asarray(weights[offsets[b]:offsets[b + 1]], np.float32)[:, None]
        if pooling is Pooling.SUM:
            out[b] = rows.sum(0)
        elif pooling is Pooling.MEAN:
            out[b] = rows.mean(0)
        else:
            out[b] = rows.max(0)
    return out


def _dims(idx: GraphIndex, name: str) -> list:
    """Declared dims of input ``name``: ints, symbol names, or None (unknown)."""
    t = idx.input_types[name].tensor_type
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _random_case(idx: GraphIndex, bag: ImportedBag, batch: int, rng: np.random.Generator):
    """Bag lengths with 0, 1 and long bags (fixed bags: the declared or a small length);
    flat indices, B+1 offsets, weights."""
    lengths = rng.integers(0, 4, batch)
    if batch > 1:
        lengths[0], lengths[1] = 0, 1
        lengths[-1] = 60
    src = bag.source
    if src.fixed:
        declared = _dims(idx, src.indices)[-1]
        lengths[:] = declared if isinstance(declared, int) else 5
    starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    nnz = int(starts[-1])
    indices = rng.integers(0, bag.table.rows, nnz)
    weights = rng.uniform(0.25, 2.0, nnz).astype(np.float32) if src.weights else None
    return lengths, starts, indices, weights


def _feeds(idx: GraphIndex, bag: ImportedBag, inputs: list[str], batch: int, starts, indices,
           weights) -> dict[str, np.ndarray]:
    src = bag.source
    own = {src.indices: ("indices", src.indices_row), src.offsets: ("offsets", src.offsets_row),
           src.weights: ("weights", src.weights_row)}
    values = {"indices": indices, "weights": weights,
              "offsets": starts if src.include_last_offset else starts[:-1]}
    symbols: dict[str, int] = {}
    if src.fixed:
        values["indices"] = indices.reshape(batch, -1)
        values["weights"] = None if weights is None else weights.reshape(batch, -1)
    feeds = {}
    for name in inputs:
        elem = idx.input_types[name].tensor_type.elem_type
        dtype = _NP_INT.get(elem) or _NP_FLOAT.get(elem)
        if dtype is None:
            raise ModelImportError(f"verify: cannot make a feed for input {name!r} of table {bag.table.name!r}")
        if name in own:
            role, row = own[name]
            value = np.asarray(values[role]).astype(dtype)
            dims = _dims(idx, name)
            if row is not None:  # stacked [T, n]: fill every row with this bag's data
                rows = dims[0] if dims and isinstance(dims[0], int) else 0
                value = np.repeat(value[None], max(row + 1, rows), 0)
            for d, size in zip(dims, value.shape):
                if isinstance(d, str):
                    symbols.setdefault(d, size)
            feeds[name] = value
    for name in inputs:  # inputs the region reads for their shape only (dim 0 taken as the batch)
        if name in feeds:
            continue
        elem = idx.input_types[name].tensor_type.elem_type
        dtype = _NP_INT.get(elem) or _NP_FLOAT.get(elem)
        shape = [d if isinstance(d, int) else symbols.get(d, batch if i == 0 else 1)
                 for i, d in enumerate(_dims(idx, name))]
        feeds[name] = np.zeros(shape, dtype)
    return feeds


def verify_bags(idx: GraphIndex, bags: list[ImportedBag], types: dict[str, onnx.TypeProto],
                base_dir: Path, *, seed: int = 0) -> None:
    """Run every bag's original region in onnxruntime and compare; ModelImportError on mismatch."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    for bag in bags:
        table = bag.table
        if bag.pattern == "custom-op":  # onnxruntime cannot run it; the node states its semantics
            continue
        region = extract(idx, [], [bag.output], types, base_dir, name=f"bag {table.name}")
        try:
            options = ort.SessionOptions()
            options.log_severity_level = 3  # TorchScript Loops make onnxruntime warn about every body
            session = region.session(options)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelImportError(f"table {table.name!r}: onnxruntime cannot run the bag's region: {exc}") from exc
        tol = 1e-5 if table.weight.dtype == np.float32 else 2e-2
        for batch in (1, 9):
            lengths, starts, indices, weights = _random_case(idx, bag, batch, rng)
            feeds = _feeds(idx, bag, region.inputs, batch, starts, indices, weights)
            try:
                (got,) = session.run([bag.output], feeds)
            except Exception as exc:
                raise ModelImportError(
                    f"table {table.name!r}: the bag's region failed in onnxruntime on B={batch}: {exc}") from exc
            want = reference_bag(table.weight, indices, starts, weights, table.pooling)
            got = np.asarray(got, np.float32).reshape(want.shape) if got.size == want.size else got
            if got.shape != want.shape:
                raise ModelImportError(
                    f"table {table.name!r}: region output has shape {got.shape}, expected {want.shape} "
                    f"({bag.pattern}, {table.pooling.value})")
            check = np.ones(batch, bool)
            if table.pooling is Pooling.MAX and bag.pattern == "torchscript-loop":
                check = lengths > 0  # -inf in the export, 0 in PyTorch (see module docstring)
            err = np.abs(got[check] - want[check]) if check.any() else np.zeros(1)
            scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
            if not np.all(err <= tol * scale):
                raise ModelImportError(
                    f"table {table.name!r}: recognised as {table.pooling.value} bag "
                    f"({_describe(bag.source)}, {bag.pattern}) but onnxruntime disagrees by "
                    f"{float(np.nanmax(err)) if err.size else 'nan'} on B={batch}")
        logger.debug("verified bag %s (%s)", table.name, bag.pattern)


def _describe(src: BagSource) -> str:
    parts = [f"indices={src.indices}"]
    if src.offsets:
        parts.append(f"offsets={src.offsets}")
    if src.weights:
        parts.append(f"weights={src.weights}")
    if src.fixed:
        parts.append("fixed")
    if src.include_last_offset:
        parts.append("include_last_offset")
    return ", ".join(parts)
