"""Recognising embedding bags by structure, never by names.

A *table* is a 2-D float/half initializer of the main graph read as input 0 of a ``Gather``
(axis 0) anywhere, Loop/If bodies included, or as input 0 of updlrm's custom ``EmbeddingBag`` node.
From each table read we walk forward to the bag's pooled output:

- top-level ``Gather`` → [``Mul`` weights] → ``ReduceSum|Mean|Max(axes=[1], keepdims=0)``:
  ``nn.Embedding`` + sum ("embedding-sum");
- top-level ``Gather`` → ``Mul`` → while-``Loop`` (reads it from its body) → ``ConcatFromSequence``
  → ``Cast``: torchlib's ``embedding_bag`` ("dynamo-loop");
- a ``Loop`` whose body gathers the table, output = its scan output: TorchScript's
  ``embedding_bag`` ("torchscript-loop");
- ``<domain>::EmbeddingBag`` ("custom-op", see :mod:`.export`).

The bag's semantics come from the region the output depends on, not from node lists: the indices
input is where the table Gather's index operand comes from (through Slice/Reshape/...; a
``Gather(input, k)`` on the way means a stacked ``[T, N]`` input, row k); the offsets input is the
other integer graph input the region reads by value (reads through ``Shape``/``Size`` do not
count); per-sample weights are a float graph input it reads by value; the pooling mode is the
reduce op in the region; offsets miss the last offset (``include_last_offset=False``) exactly when
the region appends a length to them with ``Concat``. Dynamo's ``fx_node`` metadata, when present,
is checked against the result.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import ModelImportError
from ..tables import EmbeddingTable, Pooling
from .graph import SHAPE_OPS, GraphIndex, Scope, attribute
from .model import BagSource, ImportedBag
from .weights import initializer_array

logger = logging.getLogger(__name__)

REDUCE_POOLING = {"ReduceSum": Pooling.SUM, "ReduceMean": Pooling.MEAN, "ReduceMax": Pooling.MAX}
_MODE_NAMES = {"sum": Pooling.SUM, "mean": Pooling.MEAN, "max": Pooling.MAX,
               0: Pooling.SUM, 1: Pooling.MEAN, 2: Pooling.MAX}
# Ops that pass index values through unchanged (up to shape), on the way back to a graph input.
_INDEX_PATH_OPS = frozenset({"Identity", "Cast", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Slice"})
_TABLE_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
_UNSUPPORTED_TABLE_TYPES = (onnx.TensorProto.BFLOAT16, onnx.TensorProto.DOUBLE)
_INT_TYPES = (onnx.TensorProto.INT64, onnx.TensorProto.INT32)
_FLOAT_TYPES = (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE)


def describe(node: onnx.NodeProto) -> str:
    """``Op node 'name'`` (or its first output when unnamed), for error messages."""
    label = node.name or (node.output[0] if node.output else "?")
    domain = f"{node.domain}::" if node.domain not in ("", "ai.onnx") else ""
    return f"{domain}{node.op_type} node {label!r}"


def is_custom_bag(node: onnx.NodeProto) -> bool:
    """updlrm's (or any custom domain's) ``EmbeddingBag`` node."""
    return node.op_type == "EmbeddingBag" and node.domain not in ("", "ai.onnx")


@dataclass
class TableRead:
    """A node (maybe nested in a sub-graph) that reads a table, and its main-graph owner."""

    table: str
    scope: Scope
    node: onnx.NodeProto
    owner: onnx.NodeProto


def find_table_reads(idx: GraphIndex) -> list[TableRead]:
    """Every read of a table, in graph order of the owners."""
    reads = []
    for scope, node in idx.walk(idx.graph.node):
        custom = is_custom_bag(node)
        if not (custom or (node.op_type == "Gather" and attribute(node, "axis", 0) == 0)):
            continue
        if not node.input or not node.input[0]:
            continue
        try:
            where, kind, tensor = scope.resolve(node.input[0])
        except KeyError:
            continue
        if kind != "init" or where is not idx.root or len(tensor.dims) != 2:
            if custom:
                raise ModelImportError(f"{describe(node)}: weight {node.input[0]!r} is not a 2-D initializer")
            continue
        if tensor.data_type in _UNSUPPORTED_TABLE_TYPES:
            raise ModelImportError(
                f"{describe(node)} gathers from table {tensor.name!r} of type "
                f"{onnx.TensorProto.DataType.Name(tensor.data_type)}; only float32/float16 tables are supported")
        if tensor.data_type not in _TABLE_TYPES:
            if custom:
                raise ModelImportError(f"{describe(node)}: weight {tensor.name!r} is not float32/float16")
            continue
        reads.append(TableRead(tensor.name, scope, node, idx.top_level_owner(scope, node)))
    return reads


def recognise_bags(idx: GraphIndex, base_dir: Path) -> list[ImportedBag]:
    """All embedding bags of the model, ordered by where the model consumes their outputs."""
    by_owner: dict[int, list[TableRead]] = {}
    for read in find_table_reads(idx):
        by_owner.setdefault(id(read.owner), []).append(read)
    arrays: dict[str, np.ndarray] = {}
    bags = []
    for reads in by_owner.values():
        tables = sorted({r.table for r in reads})
        owner = reads[0].owner
        if len(tables) != 1:
            raise ModelImportError(f"{describe(owner)} reads several tables {tables}; "
                                   "one bag per table read is expected")
        bags.append(_recognise_one(idx, reads[0], base_dir, arrays))
    outputs = [b.output for b in bags]
    if len(set(outputs)) != len(outputs):
        raise ModelImportError(f"several table reads end in the same value; outputs {outputs}")
    return sorted(bags, key=lambda b: _consumer_position(idx, b.output))


_PASS_THROUGH = frozenset({"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


def _consumer_position(idx: GraphIndex, name: str) -> tuple[int, int]:
    """Where the model first combines bag value ``name`` with others: (node order, input slot),
    looking through single-consumer Cast/Reshape/... chains."""
    consumers = idx.consumers.get(name, [])
    while len(consumers) == 1 and consumers[0].op_type in _PASS_THROUGH and consumers[0].input[0] == name:
        name = consumers[0].output[0]
        consumers = idx.consumers.get(name, [])
    best = (len(idx.graph.node), 0)
    for node in consumers:
        best = min(best, (idx.order[id(node)], idx.reads[id(node)].index(name)))
    return best


def _recognise_one(idx: GraphIndex, read: TableRead, base_dir: Path,
                   arrays: dict[str, np.ndarray]) -> ImportedBag:
    owner = read.owner
    if is_custom_bag(owner):
        output, pattern = owner.output[0], "custom-op"
    elif owner is read.node:  # Gather in the main graph
        output, pattern = _follow_rows(idx, owner, read.table)
    elif owner.op_type == "Loop":
        output, pattern = _loop_result(idx, owner, read.table), "torchscript-loop"
    else:
        raise ModelImportError(f"table {read.table!r} is read inside {describe(owner)}, "
                               "which is not an embedding-bag pattern updlrm knows")
    source, pooling = _classify(idx, read, output, pattern)
    if read.table not in arrays:
        arrays[read.table] = initializer_array(idx.initializers[read.table], base_dir)
    table = EmbeddingTable(read.table, arrays[read.table], pooling, source.weights is not None)
    logger.debug("bag %s: table %s %s, %s, pattern %s", output, read.table,
                 table.weight.shape, pooling.value, pattern)
    return ImportedBag(table, source, output, pattern)


def _single_consumer(idx: GraphIndex, name: str, table: str) -> onnx.NodeProto:
    consumers = idx.consumers.get(name, [])
    if len(consumers) != 1 or name in idx.output_names:
        where = ", ".join(describe(c) for c in consumers) or "a graph output"
        raise ModelImportError(
            f"table {table!r}: value {name!r} is used by {len(consumers)} nodes ({where}); "
            "an embedding bag's intermediate values have exactly one consumer")
    return consumers[0]


def reduce_axes(idx: GraphIndex, node: onnx.NodeProto) -> list[int] | None:
    """A Reduce* node's axes, attribute form (opset < 13/18) or input form; None if not constant."""
    axes = attribute(node, "axes")
    if axes is not None:
        return [int(a) for a in axes]
    if len(node.input) > 1 and node.input[1]:
        value = idx.constant(idx.root, node.input[1])
        return None if value is None else [int(a) for a in np.atleast_1d(value)]
    return []


def _follow_rows(idx: GraphIndex, gather: onnx.NodeProto, table: str) -> tuple[str, str]:
    """From a main-graph table Gather (un-pooled rows) to the pooled bag output."""
    value, weighted = gather.output[0], False
    while True:
        node = _single_consumer(idx, value, table)
        if node.op_type == "Identity":
            value = node.output[0]
        elif node.op_type == "Mul" and not weighted and value in node.input:
            value, weighted = node.output[0], True
        elif node.op_type in REDUCE_POOLING and node.input[0] == value:
            axes = reduce_axes(idx, node)
            if axes != [1] or attribute(node, "keepdims", 1) != 0:
                raise ModelImportError(
                    f"table {table!r}: {describe(node)} reduces axes {axes} with keepdims="
                    f"{attribute(node, 'keepdims', 1)}; an embedding bag reduces axis 1 and drops it")
            return node.output[0], "embedding-sum"
        elif node.op_type == "Loop" and value not in node.input:
            return _loop_result(idx, node, table), "dynamo-loop"
        else:
            raise ModelImportError(
                f"table {table!r}: gathered rows go into {describe(node)}, which is not part of an "
                "embedding-bag pattern updlrm knows (Mul by weights, Reduce* over axis 1, or a Loop)")


def _loop_result(idx: GraphIndex, loop: onnx.NodeProto, table: str) -> str:
    """The pooled ``[B, dim]`` value a bag Loop produces (its scan output, or the concatenated
    sequence it builds)."""
    used = [o for o in loop.output if o and (o in idx.consumers or o in idx.output_names)]
    if len(used) != 1:
        raise ModelImportError(
            f"table {table!r}: {describe(loop)} has {len(used)} used outputs; a bag Loop has one")
    value = used[0]
    body = attribute(loop, "body")
    carried = len(body.input) - 2 if body is not None else 0
    is_state = list(loop.output).index(value) < carried
    consumers = idx.consumers.get(value, [])
    if len(consumers) == 1 and consumers[0].op_type == "ConcatFromSequence" and value not in idx.output_names:
        value = consumers[0].output[0]
        consumers = idx.consumers.get(value, [])
        if (len(consumers) == 1 and consumers[0].op_type == "Cast"
                and attribute(consumers[0], "to") == onnx.TensorProto.FLOAT
                and value not in idx.output_names):
            value = consumers[0].output[0]
    elif is_state:
        raise ModelImportError(
            f"table {table!r}: {describe(loop)} output {value!r} is loop state, not a pooled bag "
            "(expected a scan output or a sequence fed to ConcatFromSequence)")
    return value


def _trace_to_input(idx: GraphIndex, scope: Scope, name: str) -> tuple[str, int | None] | None:
    """Follow an index-like value back through pass-through ops to a main-graph input.

    Returns ``(input name, stacked row or None)``, or None when it comes from anything else.
    """
    row = None
    while True:
        try:
            where, kind, thing = scope.resolve(name)
        except KeyError:
            return None
        if kind == "input":
            return (name, row) if where is idx.root else None
        if kind != "node":
            return None
        node: onnx.NodeProto = thing
        if node.op_type == "Gather" and attribute(node, "axis", 0) == 0 and row is None:
            k = idx.constant(where, node.input[1])
            if k is None or k.ndim != 0:
                return None
            row = int(k)
        elif node.op_type not in _INDEX_PATH_OPS:
            return None
        scope, name = where, node.input[0]


def _row_of(idx: GraphIndex, name: str, readers: list[tuple[Scope, onnx.NodeProto]],
            table: str) -> int | None:
    """Row k if every value read of input ``name`` is ``Gather(name, k, axis=0)``, else None."""
    rows = set()
    for scope, node in readers:
        k = None
        if node.op_type == "Gather" and node.input[0] == name and attribute(node, "axis", 0) == 0:
            value = idx.constant(scope, node.input[1])
            if value is not None and value.ndim == 0:
                k = int(value)
        rows.add(k)
    if len(rows) != 1:
        raise ModelImportError(f"table {table!r}: input {name!r} is read both whole and by row")
    return rows.pop()


def _elem_type(idx: GraphIndex, name: str) -> int:
    t = idx.input_types.get(name)
    return t.tensor_type.elem_type if t is not None and t.HasField("tensor_type") else 0


def _rank(idx: GraphIndex, name: str) -> int | None:
    t = idx.input_types.get(name)
    if t is None or not t.tensor_type.HasField("shape"):
        return None
    return len(t.tensor_type.shape.dim)


def _classify(idx: GraphIndex, read: TableRead, output: str, pattern: str) -> tuple[BagSource, Pooling]:
    table = read.table
    region = idx.upstream([output])
    nodes = list(idx.walk(region))

    value_reads: dict[str, list[tuple[Scope, onnx.NodeProto]]] = {}
    tables_read = set()
    for scope, node in nodes:
        for pos, name in enumerate(node.input):
            if not name:
                continue
            try:
                where, kind, tensor = scope.resolve(name)
            except KeyError:
                raise ModelImportError(f"{describe(node)} reads {name!r}, which nothing defines") from None
            if where is not idx.root:
                continue
            if kind == "input" and node.op_type not in SHAPE_OPS:
                value_reads.setdefault(name, []).append((scope, node))
            elif (kind == "init" and pos == 0 and len(tensor.dims) == 2
                  and (node.op_type == "Gather" or is_custom_bag(node))):
                tables_read.add(name)
    if tables_read != {table}:
        raise ModelImportError(f"bag output {output!r} of table {table!r} depends on tables "
                               f"{sorted(tables_read)}; a bag reads exactly one table")

    # Indices: where the table reads' index operands come from.
    index_sources = set()
    for scope, node in nodes:
        if (node.op_type == "Gather" or is_custom_bag(node)) and node.input[0] == table:
            src = _trace_to_input(idx, scope, node.input[1])
            if src is None:
                raise ModelImportError(
                    f"table {table!r}: the indices of {describe(node)} do not come from a graph input "
                    "through Slice/Reshape/Gather(row)")
            index_sources.add(src)
    if len(index_sources) != 1:
        raise ModelImportError(f"table {table!r}: index operands come from {sorted(index_sources)}")
    indices, indices_row = index_sources.pop()
    if _elem_type(idx, indices) not in _INT_TYPES:
        raise ModelImportError(f"table {table!r}: indices input {indices!r} is not int32/int64")

    others = {n: r for n, r in value_reads.items() if n != indices}
    offsets_cands = [n for n in others if _elem_type(idx, n) in _INT_TYPES]
    weight_cands = [n for n in others if _elem_type(idx, n) in _FLOAT_TYPES]
    strays = sorted(set(others) - set(offsets_cands) - set(weight_cands))
    if len(offsets_cands) > 1 or len(weight_cands) > 1 or strays:
        raise ModelImportError(
            f"table {table!r}: bag output {output!r} reads inputs {sorted(value_reads)}; expected "
            "indices, at most one integer offsets input and at most one float weights input")
    offsets = offsets_cands[0] if offsets_cands else None
    weights = weight_cands[0] if weight_cands else None
    row_of = {n: _row_of(idx, n, value_reads[n], table) for n in value_reads}
    if indices_row is not None and row_of.get(indices, indices_row) != indices_row:
        raise ModelImportError(f"table {table!r}: indices input {indices!r} is read by several rows")

    custom = read.owner if pattern == "custom-op" else None
    fixed = offsets is None
    if fixed and (_rank(idx, indices) not in (2, None) or indices_row is not None):
        raise ModelImportError(
            f"table {table!r}: bag output {output!r} has no offsets input and its indices "
            f"{indices!r} are not a 2-D [batch, bag size] input")
    if pattern == "embedding-sum" and not fixed:
        raise ModelImportError(f"table {table!r}: Gather + Reduce bag reads offsets {offsets!r}")

    if custom is not None:
        include_last = bool(attribute(custom, "include_last_offset", 0)) and not fixed
        pooling = _mode(attribute(custom, "mode", "sum"), describe(custom))
    else:
        include_last = not fixed and not _appends_length(idx, nodes, offsets, row_of.get(offsets))
        pooling = _pooling(nodes, table, output)
    source = BagSource(indices=indices, indices_row=indices_row, offsets=offsets,
                       offsets_row=row_of.get(offsets) if offsets else None,
                       weights=weights, weights_row=row_of.get(weights) if weights else None,
                       include_last_offset=include_last, fixed=fixed)
    # only the table's own Gather: the exporter shares nodes (e.g. a Shape of a common input)
    # between bags, and their metadata then describes another table's call
    _check_fx_metadata([(s, n) for s, n in nodes if n.op_type == "Gather" and n.input[0] == table],
                       table, source, pooling)
    return source, pooling


def _mode(value, where: str) -> Pooling:
    if isinstance(value, bytes):
        value = value.decode()
    try:
        return _MODE_NAMES[value]
    except (KeyError, TypeError):
        raise ModelImportError(f"{where}: unknown pooling mode {value!r}") from None


def _pooling(nodes, table: str, output: str) -> Pooling:
    found = {node.op_type for _, node in nodes} & set(REDUCE_POOLING)
    # dynamo's mean bag also holds a ReduceSum (+ Div) for its last bag.
    if found == {"ReduceSum"}:
        return Pooling.SUM
    if found in ({"ReduceMean"}, {"ReduceMean", "ReduceSum"}):
        return Pooling.MEAN
    if found == {"ReduceMax"}:
        return Pooling.MAX
    raise ModelImportError(f"table {table!r}: bag output {output!r} has reduce ops {sorted(found)}; "
                           "cannot tell sum / mean / max apart")


def _appends_length(idx: GraphIndex, nodes, offsets: str, row: int | None) -> bool:
    """Whether the region extends the offsets by the indices' length (``Concat(offsets, n)``),
    i.e. the offsets hold bag starts only (``include_last_offset=False``)."""
    for scope, node in nodes:
        if node.op_type == "Concat" and len(node.input) >= 2:
            if _trace_to_input(idx, scope, node.input[0]) == (offsets, row):
                return True
    return False


# e.g. "... target=torch.ops.aten.embedding_bag.padding_idx](args = (%w, %i, %o, False, 0, ...), kwargs = {})"
_FX_BAG = re.compile(r"aten\.embedding_bag[.\w]*\]?\(args = \(([^)]*)\)")


def _check_fx_metadata(nodes, table: str, source: BagSource, pooling: Pooling) -> None:
    """Cross-check against dynamo's ``pkg.torch.onnx.fx_node`` (mode, weights, include_last_offset)."""
    for _, node in nodes:
        for prop in node.metadata_props:
            if prop.key != "pkg.torch.onnx.fx_node":
                continue
            m = _FX_BAG.search(prop.value)
            if not m:
                continue
            args = [a.strip() for a in m.group(1).split(",")]
            if len(args) < 8:
                continue
            mode = _MODE_NAMES.get(int(args[4])) if args[4].isdigit() else None
            weighted = args[6] != "None"
            ilo = args[7] == "True"
            problems = []
            if mode is not None and mode != pooling:
                problems.append(f"mode {mode.value} (found {pooling.value})")
            if weighted != (source.weights is not None):
                problems.append(f"per_sample_weights {'given' if weighted else 'absent'}")
            if not source.fixed and ilo != source.include_last_offset:
                problems.append(f"include_last_offset={ilo}")
            if problems:
                raise ModelImportError(
                    f"table {table!r}: the exporter's metadata on {describe(node)} says "
                    + ", ".join(problems) + "; the recognised graph disagrees")
            return
