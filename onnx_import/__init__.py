"""Importing DLRMs exported to ONNX: find embedding bags, lift tables out, cut the dense rest.

``import_model(path)`` returns an :class:`ImportedModel`: its embedding bags (tables as
memory-maps of the external data, pooling mode, where their indices/offsets/weights come from)
and two onnxruntime sub-models, ``dense_pre`` (needs no embedding) and ``dense_post`` (consumes
the pooled bags). ``export_torch`` exports a PyTorch DLRM with one custom ``EmbeddingBag`` node
per table, the cleanest contract.
"""
from .export import CUSTOM_DOMAIN, export_torch
from .importer import import_model
from .model import BagSource, DenseGraph, ImportedBag, ImportedModel, ModelInput
from .verify import reference_bag

__all__ = [
    "CUSTOM_DOMAIN",
    "BagSource",
    "DenseGraph",
    "ImportedBag",
    "ImportedModel",
    "ModelInput",
    "export_torch",
    "import_model",
    "reference_bag",
]
