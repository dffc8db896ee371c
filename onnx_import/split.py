"""Cutting the non-embedding rest of a model into ``dense_pre`` and ``dense_post``.

``dense_post`` = everything the model outputs need, cut at the pooled bag outputs.
Among its nodes, those that depend on a graph input but on no bag (the bottom MLP, shape reads of
its output, ...) move to ``dense_pre``, which can run while the bags are pooled; the values they
hand over become ``dense_pre`` outputs and ``dense_post`` inputs. Nodes that depend on neither
(constants) stay wherever they are needed.
"""
from __future__ import annotations

from pathlib import Path

import onnx
from onnx import helper

from .extract import extract
from .graph import GraphIndex, subgraphs
from .model import DenseGraph, ImportedBag


def split_dense(idx: GraphIndex, bags: list[ImportedBag], types: dict[str, onnx.TypeProto],
                base_dir: Path) -> tuple[DenseGraph | None, DenseGraph]:
    """``(dense_pre or None, dense_post)`` for a model whose bags are ``bags``."""
    tables = frozenset(b.table.name for b in bags)
    outputs = idx.output_names
    bag_outputs = [b.output for b in bags]
    types = dict(types)
    recast: dict[str, int] = {}
    for b in bags:  # the engine hands over float32 [B, dim], whatever the graph computed them in
        original = types.get(b.output)
        elem = original.tensor_type.elem_type if original is not None else 0
        if elem not in (0, onnx.TensorProto.FLOAT):
            recast[b.output] = elem
        types[b.output] = helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [_batch_dim(original), b.table.dim])
    if not bags:
        return None, extract(idx, [], outputs, types, base_dir, forbidden=tables, name="dense_post")

    post_nodes = idx.upstream(outputs, set(bag_outputs))
    on_bags = set(bag_outputs)
    on_inputs = set(idx.input_names)
    pre_nodes = []
    for node in post_nodes:
        reads = idx.reads[id(node)]
        if any(r in on_bags for r in reads):
            on_bags.update(node.output)
        elif any(r in on_inputs for r in reads):
            on_inputs.update(node.output)
            pre_nodes.append(node)
    pre_values = {o for n in pre_nodes for o in n.output if o}
    handover: list[str] = []
    for node in post_nodes:
        if any(o in on_bags for o in node.output):
            handover.extend(r for r in idx.reads[id(node)] if r in pre_values and r not in handover)
    handover.extend(o for o in outputs if o in pre_values and o not in handover)

    dense_pre = None
    if handover:
        dense_pre = extract(idx, [], handover, types, base_dir, forbidden=tables, name="dense_pre")
    dense_post = extract(idx, bag_outputs + handover, outputs, types, base_dir,
                         forbidden=tables, name="dense_post")
    _cast_inputs(dense_post.model.graph, recast)
    return dense_pre, dense_post


def _cast_inputs(graph: onnx.GraphProto, recast: dict[str, int]) -> None:
    """Feed float32 inputs ``name`` to a graph built for another float type (fp16 models):
    readers of ``name`` now read ``Cast(name, to=type)``."""
    if not recast:
        return
    renamed = {name: f"{name}__as_{onnx.TensorProto.DataType.Name(t).lower()}" for name, t in recast.items()}
    _rename_reads(graph, renamed)
    casts = [helper.make_node("Cast", [name], [renamed[name]], to=t, name=f"updlrm_cast_{name}")
             for name, t in recast.items()]
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


def _rename_reads(graph: onnx.GraphProto, renamed: dict[str, str]) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
        for sub in subgraphs(node):
            _rename_reads(sub, renamed)


def _batch_dim(t: onnx.TypeProto | None) -> str | int | None:
    if t is None or not t.tensor_type.HasField("shape") or not t.tensor_type.shape.dim:
        return "batch"
    d = t.tensor_type.shape.dim[0]
    if d.HasField("dim_value"):
        return d.dim_value
    return d.dim_param or "batch"
