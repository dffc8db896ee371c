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
from .graph import GraphIndex
from .model import DenseGraph, ImportedBag


def split_dense(idx: GraphIndex, bags: list[ImportedBag], types: dict[str, onnx.TypeProto],
                base_dir: Path) -> tuple[DenseGraph | None, DenseGraph]:
    """``(dense_pre or None, dense_post)`` for a model whose bags are ``bags``."""
    tables = frozenset(b.table.name for b in bags)
    outputs = idx.output_names
    bag_outputs = [b.output for b in bags]
    types = dict(types)
    for b in bags:  # the pooled bag values are float32 [B, dim] whatever inference found
        batch = _batch_dim(types.get(b.output))
        types[b.output] = helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [batch, b.table.dim])
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
    return dense_pre, dense_post


def _batch_dim(t: onnx.TypeProto | None) -> str | int | None:
    if t is None or not t.tensor_type.HasField("shape") or not t.tensor_type.shape.dim:
        return "batch"
    d = t.tensor_type.shape.dim[0]
    if d.HasField("dim_value"):
        return d.dim_value
    return d.dim_param or "batch"
