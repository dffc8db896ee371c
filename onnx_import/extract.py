"""Cutting sub-models out of a graph, following Loop/If outer-scope references.

Unlike ``onnx.utils.extract_model``, a node whose body reads a value of the main graph keeps that
value's producers. Initializers are copied as they are in the structure-only proto: external ones
keep pointing at the original data files (``location`` relative to the model folder), so a cut
never copies table bytes and never serialises the full model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, shape_inference

from ..errors import ModelImportError
from .bags import describe
from .graph import GraphIndex
from .model import DenseGraph

# Initializers above this many elements are stubbed out for shape inference: their values are
# not needed to infer types, and inline tables would make the proto it serialises large.
_STUB_ELEMS = 1 << 14


def infer_value_types(model: onnx.ModelProto) -> dict[str, onnx.TypeProto]:
    """Types of the main graph's values (inputs, outputs, inferred intermediates)."""
    stub = onnx.ModelProto()
    stub.ir_version = model.ir_version
    stub.opset_import.extend(model.opset_import)
    stub.functions.extend(model.functions)
    g = stub.graph
    g.node.extend(model.graph.node)
    g.input.extend(model.graph.input)
    g.output.extend(model.graph.output)
    g.value_info.extend(model.graph.value_info)
    for t in model.graph.initializer:
        if int(np.prod(t.dims, dtype=np.int64)) > _STUB_ELEMS:
            s = onnx.TensorProto(name=t.name, data_type=t.data_type, dims=t.dims)
            s.data_location = onnx.TensorProto.EXTERNAL
            s.external_data.add(key="location", value="__updlrm_stub__")
            g.initializer.append(s)
        else:
            g.initializer.append(t)
    try:
        inferred = shape_inference.infer_shapes(stub, strict_mode=False)
    except Exception:  # onnx raises several unrelated types here
        # Stale value_info (e.g. left by a tool that edited the graph) can contradict inference.
        del g.value_info[:]
        try:
            inferred = shape_inference.infer_shapes(stub, strict_mode=False)
        except Exception as exc:
            raise ModelImportError(f"shape inference failed on the model: {exc}") from exc
    types: dict[str, onnx.TypeProto] = {}
    for vi in list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output):
        if vi.type.WhichOneof("value") is not None:
            types[vi.name] = vi.type
    for t in model.graph.initializer:
        types.setdefault(t.name, helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    return types


def extract(idx: GraphIndex, inputs: list[str], outputs: list[str], types: dict[str, onnx.TypeProto],
            base_dir: Path, *, forbidden: frozenset[str] = frozenset(), name: str = "dense",
            allow_graph_inputs: bool = True) -> DenseGraph:
    """The sub-model computing ``outputs`` from ``inputs`` (values of the main graph).

    Graph inputs of the original model that the cut reaches are added as inputs too (after
    ``inputs``); ``forbidden`` initializers (the tables) must not be reached.
    """
    stop = set(inputs)
    nodes = idx.upstream(outputs, stop)
    produced = {o for n in nodes for o in n.output if o}
    read: list[str] = []
    seen: set[str] = set()
    for node in nodes:
        for r in idx.reads[id(node)]:
            if r in forbidden:
                raise ModelImportError(
                    f"{describe(node)} reads table {r!r} outside any recognised embedding bag")
            if r not in seen:
                seen.add(r)
                read.append(r)
    for o in outputs:
        if o not in seen:
            seen.add(o)
            read.append(o)
    graph_inputs = set(idx.input_names)
    extra_inputs, inits = [], []
    for r in read:
        if r in produced or r in stop:
            continue
        if r in idx.initializers:
            inits.append(idx.initializers[r])
        elif r in graph_inputs:
            if not allow_graph_inputs:
                raise ModelImportError(f"{name}: needs graph input {r!r}")
            extra_inputs.append(r)
        else:
            raise ModelImportError(f"{name}: value {r!r} is read but nothing defines it")
    used_inputs = [i for i in inputs if i in seen]
    all_inputs = used_inputs + [i for i in idx.input_names if i in extra_inputs]

    def value_info(v: str) -> onnx.ValueInfoProto:
        t = types.get(v)
        if t is None:
            raise ModelImportError(f"{name}: the type of value {v!r} is unknown (shape inference gave none)")
        vi = onnx.ValueInfoProto(name=v)
        vi.type.CopyFrom(t)
        return vi

    graph = helper.make_graph(nodes, name, [value_info(i) for i in all_inputs],
                              [value_info(o) for o in outputs], initializer=inits)
    model = helper.make_model(graph, opset_imports=list(idx.model.opset_import),
                              producer_name="updlrm.onnx_import")
    model.ir_version = idx.model.ir_version
    model.functions.extend(idx.model.functions)
    return DenseGraph(model=model, base_dir=base_dir, inputs=all_inputs, outputs=list(outputs))
