"""A read-only index over an ONNX graph that sees through Loop/If/Scan bodies.

ONNX sub-graphs read values of enclosing graphs by name ("outer-scope references"), which
``onnx.utils.extract_model`` ignores. This index counts such reads as inputs of the node that owns
the sub-graph, resolves names scope by scope, and reads small constants.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

SHAPE_OPS = frozenset({"Shape", "Size"})


def subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    """The sub-graphs held by ``node``'s attributes (Loop body, If branches, Scan body)."""
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            yield attr.g
        elif attr.type == onnx.AttributeProto.GRAPHS:
            yield from attr.graphs


def outer_reads(graph: onnx.GraphProto) -> set[str]:
    """Names ``graph`` (recursively, with its own sub-graphs) reads from enclosing scopes."""
    defined = {i.name for i in graph.input} | {t.name for t in graph.initializer}
    for node in graph.node:
        defined.update(o for o in node.output if o)
    reads: set[str] = set()
    for node in graph.node:
        reads.update(i for i in node.input if i and i not in defined)
        for sub in subgraphs(node):
            reads.update(outer_reads(sub) - defined)
    return reads


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Every name ``node`` reads: its explicit inputs, then its sub-graphs' outer-scope reads."""
    names = [i for i in node.input if i]
    seen = set(names)
    for sub in subgraphs(node):
        for name in sorted(outer_reads(sub)):
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def attribute(node: onnx.NodeProto, name: str, default=None):
    """The value of ``node``'s attribute ``name`` (``default`` when absent)."""
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


@dataclass
class Scope:
    """One graph (the main graph or a sub-graph) and the scope that encloses it."""

    graph: onnx.GraphProto
    parent: "Scope | None"
    owner: onnx.NodeProto | None = None
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    inputs: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.inputs = {i.name for i in self.graph.input}
        for node in self.graph.node:
            for out in node.output:
                if out:
                    self.producers[out] = node

    def resolve(self, name: str) -> tuple["Scope", str, object]:
        """Where ``name`` is defined: ``(scope, kind, thing)``, kind "node" / "init" / "input".

        Raises ``KeyError`` when no enclosing scope defines it.
        """
        scope: Scope | None = self
        while scope is not None:
            if name in scope.producers:
                return scope, "node", scope.producers[name]
            if name in scope.initializers:
                return scope, "init", scope.initializers[name]
            if name in scope.inputs:
                return scope, "input", None
            scope = scope.parent
        raise KeyError(name)


class GraphIndex:
    """Producers, consumers (incl. outer-scope reads) and scopes of a model's main graph."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.root = Scope(self.graph, None)
        self.scopes: list[Scope] = [self.root]
        self._child_scopes: dict[int, list[Scope]] = {}
        self._collect_scopes(self.root)
        self.initializers = self.root.initializers
        self.input_names = [i.name for i in self.graph.input if i.name not in self.initializers]
        self.input_types = {i.name: i.type for i in self.graph.input}
        self.output_names = [o.name for o in self.graph.output]
        self.order = {id(n): k for k, n in enumerate(self.graph.node)}
        self.reads: dict[int, list[str]] = {id(n): node_reads(n) for n in self.graph.node}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in self.reads[id(node)]:
                self.consumers.setdefault(name, []).append(node)

    def _collect_scopes(self, scope: Scope) -> None:
        for node in scope.graph.node:
            children = [Scope(g, scope, node) for g in subgraphs(node)]
            if children:
                self._child_scopes[id(node)] = children
                self.scopes.extend(children)
                for child in children:
                    self._collect_scopes(child)

    def child_scopes(self, node: onnx.NodeProto) -> list[Scope]:
        """The scopes of ``node``'s sub-graphs (empty for plain nodes)."""
        return self._child_scopes.get(id(node), [])

    def walk(self, nodes) -> Iterator[tuple[Scope, onnx.NodeProto]]:
        """``(scope, node)`` for main-graph ``nodes`` and every node nested in their sub-graphs."""
        stack = [(self.root, n) for n in reversed(list(nodes))]
        while stack:
            scope, node = stack.pop()
            yield scope, node
            for child in reversed(self.child_scopes(node)):
                stack.extend((child, n) for n in reversed(child.graph.node))

    def top_level_owner(self, scope: Scope, node: onnx.NodeProto) -> onnx.NodeProto:
        """The main-graph node that holds ``node`` (``node`` itself when it is in the main graph)."""
        while scope.parent is not None:
            node, scope = scope.owner, scope.parent
        return node

    def upstream(self, outputs, stop: set[str] = frozenset()) -> list[onnx.NodeProto]:
        """Main-graph nodes ``outputs`` depend on (through sub-graph reads), stopping at ``stop``.

        Returned in graph order.
        """
        seen: dict[int, onnx.NodeProto] = {}
        stack = [o for o in outputs if o not in stop]
        visited: set[str] = set()
        while stack:
            name = stack.pop()
            if name in visited:
                continue
            visited.add(name)
            node = self.root.producers.get(name)
            if node is None or id(node) in seen:
                continue
            seen[id(node)] = node
            stack.extend(r for r in self.reads[id(node)] if r not in stop)
        return sorted(seen.values(), key=lambda n: self.order[id(n)])

    def constant(self, scope: Scope, name: str, max_elems: int = 4096) -> np.ndarray | None:
        """The value of ``name`` if it is a small constant (initializer, Constant node, or an
        Identity/Cast of one) seen from ``scope``; None otherwise."""
        try:
            where, kind, thing = scope.resolve(name)
        except KeyError:
            return None
        if kind == "init":
            tensor = thing
            if tensor.data_location == onnx.TensorProto.EXTERNAL or _numel(tensor) > max_elems:
                return None
            return numpy_helper.to_array(tensor)
        if kind != "node":
            return None
        node = thing
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
                if attr.name in ("value_int", "value_float"):
                    return np.array(onnx.helper.get_attribute_value(attr))
                if attr.name in ("value_ints", "value_floats"):
                    return np.array(onnx.helper.get_attribute_value(attr))
            return None
        if node.op_type in ("Identity", "Cast", "CastLike") and node.input:
            return self.constant(where, node.input[0], max_elems)
        return None


def _numel(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims)) if len(tensor.dims) else 1


def dead_code_elimination(graph: onnx.GraphProto) -> int:
    """Drop main-graph nodes whose outputs nobody reads (dynamo leaves dead Identity nodes).

    Returns how many nodes were removed. Sub-graph reads keep their sources alive.
    """
    removed = 0
    while True:
        used = {o.name for o in graph.output}
        for node in graph.node:
            used.update(node_reads(node))
        keep = [n for n in graph.node if any(o in used for o in n.output if o)]
        if len(keep) == len(graph.node):
            return removed
        removed += len(graph.node) - len(keep)
        del graph.node[:]
        graph.node.extend(keep)
