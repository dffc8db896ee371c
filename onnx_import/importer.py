"""``import_model``: from an ONNX file to an :class:`ImportedModel`."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnx
from onnx import helper

from ..errors import ModelImportError
from .bags import recognise_bags
from .extract import infer_value_types
from .graph import GraphIndex, dead_code_elimination
from .model import ImportedModel, ModelInput
from .split import split_dense

logger = logging.getLogger(__name__)


def load_structure(path: Path) -> onnx.ModelProto:
    """The model without its external data (tables stay on disk); ModelImportError if unreadable."""
    try:
        return onnx.load(str(path), load_external_data=False)
    except FileNotFoundError:
        raise ModelImportError(f"{path}: no such file") from None
    except Exception as exc:  # protobuf's DecodeError and friends
        raise ModelImportError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from exc


def check_single_definitions(graph: onnx.GraphProto) -> None:
    """Every value of the main graph is defined once (graph input or node output).

    torch's dynamo exporter breaks this when ``input_names`` clash with its internal names
    (e.g. ``offsets_7``); onnxruntime rejects such files and so do we, with the hint.
    """
    defined = {i.name for i in graph.input}
    for node in graph.node:
        for out in node.output:
            if not out:
                continue
            if out in defined:
                raise ModelImportError(
                    f"invalid model: value {out!r} is defined twice (graph input or another node, and "
                    f"{node.op_type} node {node.name!r}); torch's dynamo exporter does this when "
                    "input_names clash with its internal names: export without input_names")
            defined.add(out)


def _model_inputs(idx: GraphIndex) -> list[ModelInput]:
    inputs = []
    for name in idx.input_names:
        t = idx.input_types[name]
        if not t.HasField("tensor_type"):
            raise ModelImportError(f"graph input {name!r} is not a tensor")
        tt = t.tensor_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tt.elem_type)) if tt.elem_type else None
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim)
        inputs.append(ModelInput(name, dtype, shape))
    return inputs


def import_model(path: str | Path, *, verify: bool = False) -> ImportedModel:
    """Read ``path``, recognise its embedding bags and cut the dense rest.

    Tables are memory-mapped from external data (or copied from inline initializers); the full
    proto is never serialised. With ``verify=True`` each bag's original region is run in
    onnxruntime on random bags and compared with the recognised semantics. Raises
    :class:`~updlrm.errors.ModelImportError` naming the node for anything it does not recognise.
    """
    path = Path(path)
    model = load_structure(path)
    if not model.graph.output:
        raise ModelImportError(f"{path}: the graph has no outputs")
    check_single_definitions(model.graph)
    removed = dead_code_elimination(model.graph)
    idx = GraphIndex(model)
    base_dir = path.resolve().parent
    bags = recognise_bags(idx, base_dir)
    types = infer_value_types(model)
    dense_pre, dense_post = split_dense(idx, bags, types, base_dir)
    if verify:
        from .verify import verify_bags

        verify_bags(idx, bags, types, base_dir)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    notes = [f"removed {removed} dead nodes"] if removed else []
    logger.info("imported %s: %d bags, dense_pre %s nodes, dense_post %d nodes", path.name, len(bags),
                dense_pre.num_nodes if dense_pre else "no", dense_post.num_nodes)
    return ImportedModel(path=path, inputs=_model_inputs(idx), output_names=list(idx.output_names),
                         bags=bags, dense_pre=dense_pre, dense_post=dense_post, opset=opset, notes=notes)
