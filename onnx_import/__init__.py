"""Importing DLRMs exported to ONNX: find embedding bags, lift tables out, cut the dense rest.

``import_model(path)`` returns an :class:`ImportedModel`:

- ``bags``: one :class:`ImportedBag` per embedding bag, in the order the model's interaction
  consumes them — its :class:`~updlrm.tables.EmbeddingTable` (a read-only ``np.memmap`` of the
  external data, or a copy of an inline initializer; fp16 stays fp16), where its indices /
  offsets / per-sample weights come from (:class:`BagSource`), the value it replaces and the
  export pattern found;
- ``dense_pre`` (needs no embedding, e.g. the bottom MLP; None when nothing runs before the bags)
  and ``dense_post`` (takes the pooled bags as float32 ``[B, dim]``, ``dense_pre``'s outputs and any
  graph input it reads, produces the model's outputs): :class:`DenseGraph` sub-models whose
  initializers keep pointing at the original external data. ``DenseGraph.session()`` hands them to
  onnxruntime as bytes plus the data folder, so nothing is written next to the model and nothing
  is copied. A model without bags is all ``dense_post``.

Recognised exports (by structure, never by names): torch's TorchScript exporter (opsets 11–18,
per-table ``Loop``), its dynamo exporter (``Gather`` + while-``Loop`` + ``SequenceInsert``),
``nn.Embedding`` + ``sum``/``mean``/``max`` over axis 1, and updlrm's own custom ``EmbeddingBag``
node written by :func:`export_torch`; each with sum/mean/max, per-sample weights,
``include_last_offset``, fixed-size 2-D bags and stacked ``[T, N]`` inputs. Anything else that
reads a table raises :class:`~updlrm.errors.ModelImportError` naming the node.

``import_model(path, verify=True)`` also runs every bag's original region in onnxruntime on random
bags (B=1, empty, single-index and long bags) and compares it with :func:`reference_bag`.
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
