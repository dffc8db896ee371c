"""updlrm: DLRM inference with embedding bags on UPMEM PIM or a fast CPU kernel.

``updlrm.load("model.onnx")`` imports a DLRM exported to ONNX and returns a :class:`Session`.
"""
from .errors import CapacityError, DatasetError, InvalidInputError, ModelImportError, UpdlrmError
from .tables import EmbeddingTable, Pooling
from .sparse import SparseBatch
from .session import Session, load

__all__ = [
    "CapacityError",
    "DatasetError",
    "EmbeddingTable",
    "InvalidInputError",
    "ModelImportError",
    "Pooling",
    "Session",
    "SparseBatch",
    "UpdlrmError",
    "load",
]
__version__ = "0.1.0"
