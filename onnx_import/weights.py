"""Reading initializers without loading the model's external data into the proto.

Tables of large models live in external files (one per tensor for TorchScript > 2 GB, one shared
``<model>.onnx.data`` for dynamo). They are memory-mapped read-only from ``location/offset/length``;
inline tensors are converted with ``numpy_helper.to_array``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import ModelImportError

# ONNX stores tensors little-endian.
_DTYPES = {
    onnx.TensorProto.FLOAT: np.dtype("<f4"),
    onnx.TensorProto.FLOAT16: np.dtype("<f2"),
    onnx.TensorProto.DOUBLE: np.dtype("<f8"),
    onnx.TensorProto.INT64: np.dtype("<i8"),
    onnx.TensorProto.INT32: np.dtype("<i4"),
}


def is_external(tensor: onnx.TensorProto) -> bool:
    """Whether ``tensor``'s bytes live in an external file."""
    return tensor.data_location == onnx.TensorProto.EXTERNAL


def external_info(tensor: onnx.TensorProto) -> dict[str, str]:
    """``tensor``'s external-data fields (``location``, ``offset``, ``length``, ...)."""
    return {e.key: e.value for e in tensor.external_data}


def initializer_array(tensor: onnx.TensorProto, base_dir: Path) -> np.ndarray:
    """``tensor`` as an array: a read-only ``np.memmap`` when external, a copy when inline."""
    if not is_external(tensor):
        return numpy_helper.to_array(tensor)
    dtype = _DTYPES.get(tensor.data_type)
    if dtype is None:
        raise ModelImportError(
            f"initializer {tensor.name!r}: external data of type "
            f"{onnx.TensorProto.DataType.Name(tensor.data_type)} is not supported")
    info = external_info(tensor)
    location = info.get("location")
    if not location:
        raise ModelImportError(f"initializer {tensor.name!r}: external data without a location")
    path = (base_dir / location).resolve()
    if base_dir.resolve() not in path.parents:
        raise ModelImportError(
            f"initializer {tensor.name!r}: external data location {location!r} leaves the model folder")
    shape = tuple(int(d) for d in tensor.dims)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    offset = int(info.get("offset", 0))
    length = int(info.get("length", nbytes))
    if length != nbytes:
        raise ModelImportError(
            f"initializer {tensor.name!r}: external data length {length} does not match "
            f"shape {list(shape)} of {dtype} ({nbytes} bytes)")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ModelImportError(f"initializer {tensor.name!r}: cannot read external data {path}: {exc}") from exc
    if offset + nbytes > size:
        raise ModelImportError(
            f"initializer {tensor.name!r}: external data {path.name} has {size} bytes, "
            f"needs {offset + nbytes} (offset {offset} + {nbytes})")
    if nbytes == 0:
        return np.zeros(shape, dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
