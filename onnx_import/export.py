"""Exporting a PyTorch DLRM with one custom ``EmbeddingBag`` node per table.

For users who still have the PyTorch model this is the cleanest contract: instead of the Loop
sub-graphs torch's exporters emit for ``nn.EmbeddingBag``, each bag becomes

    ai.updlrm::EmbeddingBag(weight, indices, offsets[, per_sample_weights]) -> pooled [B, dim]
        attributes: mode = "sum" | "mean" | "max", include_last_offset = 0 | 1

which :func:`~updlrm.onnx_import.import_model` reads directly (pattern "custom-op").

Limits:

- uses torch's TorchScript exporter (``dynamo=False``, deprecated upstream but present in
  torch 2.13); torch is imported lazily, only here;
- ``nn.EmbeddingBag`` (any mode, per-sample weights, ``include_last_offset``) becomes the custom
  node; ``padding_idx`` and ``max_norm`` are refused. 2-D (fixed-size) inputs keep the exporter's
  small ``Reshape`` + ``Range`` prologue, which the importer folds into fixed-size bags.
  ``nn.Embedding`` + ``sum`` stays ``Gather`` + ``ReduceSum`` (also recognised);
- onnxruntime cannot run the exported file by itself (the custom op has no kernel): load it with
  ``updlrm.load``.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ..errors import ModelImportError

CUSTOM_DOMAIN = "ai.updlrm"
_MODES = ("sum", "mean", "max")


def _embedding_bag_symbolic(g, weight, indices, offsets, scale_grad_by_freq, mode, sparse,
                            per_sample_weights, include_last_offset, padding_idx=None):
    from torch.onnx import symbolic_helper as sh

    mode_i = sh._maybe_get_const(mode, "i")
    ilo = sh._maybe_get_const(include_last_offset, "b")
    if padding_idx is not None and not sh._is_none(padding_idx):
        pad = sh._maybe_get_const(padding_idx, "i")
        if isinstance(pad, int) and pad >= 0:
            raise ModelImportError("export_torch: EmbeddingBag with padding_idx is not supported")
    if not isinstance(mode_i, int) or not 0 <= mode_i < 3:
        raise ModelImportError(f"export_torch: EmbeddingBag mode {mode_i!r} is not a constant sum/mean/max")
    inputs = [weight, indices, offsets]
    if not sh._is_none(per_sample_weights):
        inputs.append(per_sample_weights)
    out = g.op(f"{CUSTOM_DOMAIN}::EmbeddingBag", *inputs, mode_s=_MODES[mode_i],
               include_last_offset_i=int(bool(ilo)))
    return out, None, None, None


def export_torch(model: Any, example_inputs: tuple, path: str | Path, *,
                 input_names: list[str] | None = None, output_names: list[str] | None = None,
                 dynamic_axes: dict[str, dict[int, str]] | None = None, opset: int = 17) -> Path:
    """Export ``model`` (a ``torch.nn.Module``) to ``path`` with custom ``EmbeddingBag`` nodes.

    ``example_inputs`` is the tuple of forward arguments; ``input_names`` / ``output_names`` /
    ``dynamic_axes`` are passed to ``torch.onnx.export`` as they are. Returns ``path``.
    Tables above 2 GB in total go to external data files next to ``path`` (torch's choice).
    """
    import torch
    from torch.onnx import register_custom_op_symbolic, unregister_custom_op_symbolic

    path = Path(path)
    for module in model.modules():
        if isinstance(module, torch.nn.EmbeddingBag) and (module.padding_idx is not None or module.max_norm):
            raise ModelImportError("export_torch: EmbeddingBag with padding_idx or max_norm is not supported")
    register_custom_op_symbolic("aten::embedding_bag", _embedding_bag_symbolic, opset)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example_inputs, str(path), dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes,
                              custom_opsets={CUSTOM_DOMAIN: 1})
    finally:
        unregister_custom_op_symbolic("aten::embedding_bag", opset)
    return path
