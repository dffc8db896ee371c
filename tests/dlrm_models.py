"""Small DLRM torch modules for every embedding-bag variant, their ONNX exports and sample inputs.

Shared by the importer tests, the Session tests and the benchmarks. The modules follow
facebookresearch/dlrm's ``DLRM_Net`` in structure (bottom MLP, one bag per table, "dot" or "cat"
interaction, top MLP with a sigmoid) but are written from scratch and kept tiny.

Variants (how each table is called):

=============  ===========================================================  ======================
variant        call                                                         forward arguments
=============  ===========================================================  ======================
bag_list       ``EmbeddingBag(sum)(indices_k, offsets_k)``                  dense_x, ls_o, ls_i
bag_stacked    same, offsets ``[T, B]`` / indices ``[T, N]`` stacked        dense_x, ls_o, ls_i
bag_2d         ``EmbeddingBag(sum)(indices_k[B, L_k])``                     dense_x, ls_i
emb_sum        ``Embedding(indices_k[B, L_k]).sum(1)``                      dense_x, ls_i
bag_mean       ``mode="mean"``                                              dense_x, ls_o, ls_i
bag_max        ``mode="max"`` (``sparse=False``)                            dense_x, ls_o, ls_i
bag_psw        ``per_sample_weights=ls_w[k]``                               dense_x, ls_o, ls_i, ls_w
bag_ilo        ``include_last_offset=True`` (offsets have B+1 entries)      dense_x, ls_o, ls_i
=============  ===========================================================  ======================

``make_dlrm(..., extra_dense=E)`` adds a last forward argument ``dense_y [B, E]`` that goes straight
into the top MLP (a dense part that is not the standard MLP chain).

Exporters: "ts11" / "ts17" / "ts18" (TorchScript, ``dynamo=False``), "dynamo" (opset 18) and
"custom" (``updlrm.onnx_import.export_torch``: one custom ``EmbeddingBag`` node per table).

ONNX input names: the TorchScript and custom exports use the reference script's names (``dense_x``,
``offsets_k`` / ``indices_k`` / ``per_sample_weights_k``, ``offsets`` / ``indices`` when stacked,
``dense_y``); the dynamo exports pass no ``input_names`` (torchlib's internal ``offsets_<n>`` values
collide with them) and get the forward-argument names ``dense_x``, ``ls_o_k``, ``ls_i_k``,
``ls_w_k`` (``ls_o`` / ``ls_i`` when stacked), ``dense_y``. :func:`input_names` gives either list.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

VARIANTS = ("bag_list", "bag_stacked", "bag_2d", "emb_sum", "bag_mean", "bag_max", "bag_psw", "bag_ilo")
EXPORTERS = ("ts11", "ts17", "ts18", "dynamo", "custom")
DENSE_IN = 4

_MODE = {"bag_mean": "mean", "bag_max": "max"}


def _mlp(sizes: list[int], sigmoid_last: bool, gen: torch.Generator) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(n_in, n_out)
        with torch.no_grad():
            lin.weight.normal_(0.0, (2.0 / (n_in + n_out)) ** 0.5, generator=gen)
            lin.bias.normal_(0.0, (1.0 / n_out) ** 0.5, generator=gen)
        layers.append(lin)
        last = i == len(sizes) - 2
        layers.append(nn.Sigmoid() if (last and sigmoid_last) else nn.ReLU())
    return nn.Sequential(*layers)


class DLRM(nn.Module):
    """Bottom MLP → embedding bags → interaction → top MLP → sigmoid; forward varies by variant."""

    def __init__(self, variant: str, num_tables: int, rows: list[int], dim: int, interaction: str,
                 extra_dense: int, seed: int) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}")
        self.variant, self.interaction, self.extra_dense = variant, interaction, extra_dense
        gen = torch.Generator().manual_seed(seed)
        self.bot_l = _mlp([DENSE_IN, 16, dim], False, gen)
        tables: list[nn.Module] = []
        for n in rows:
            if variant == "emb_sum":
                emb: nn.Module = nn.Embedding(n, dim)
            else:
                emb = nn.EmbeddingBag(n, dim, mode=_MODE.get(variant, "sum"),
                                      include_last_offset=variant == "bag_ilo")
            with torch.no_grad():
                emb.weight.uniform_(-1.0, 1.0, generator=gen)
            tables.append(emb)
        self.emb_l = nn.ModuleList(tables)
        if interaction == "dot":
            top_in = dim + (num_tables + 1) * num_tables // 2
        elif interaction == "cat":
            top_in = dim * (num_tables + 1)
        else:
            raise ValueError(f"unknown interaction {interaction!r}")
        self.top_l = _mlp([top_in + extra_dense, 16, 1], True, gen)

    def embed(self, ls_o, ls_i, ls_w=None) -> list[torch.Tensor]:
        """One pooled ``[B, dim]`` tensor per table."""
        out = []
        for k, emb in enumerate(self.emb_l):
            if self.variant == "emb_sum":
                out.append(emb(ls_i[k]).sum(1))
            elif self.variant == "bag_2d":
                out.append(emb(ls_i[k]))
            elif self.variant == "bag_psw":
                out.append(emb(ls_i[k], ls_o[k], per_sample_weights=ls_w[k]))
            else:
                out.append(emb(ls_i[k], ls_o[k]))
        return out

    def finish(self, dense_x: torch.Tensor, ly: list[torch.Tensor], dense_y=None) -> torch.Tensor:
        x = self.bot_l(dense_x)
        if self.interaction == "dot":
            batch, d = x.shape
            t = torch.cat([x] + ly, dim=1).view((batch, -1, d))
            z = torch.bmm(t, torch.transpose(t, 1, 2))
            ni = len(ly) + 1
            li = torch.tensor([i for i in range(ni) for j in range(i)])
            lj = torch.tensor([j for i in range(ni) for j in range(i)])
            r = torch.cat([x, z[:, li, lj]], dim=1)
        else:
            r = torch.cat([x] + ly, dim=1)
        if dense_y is not None:
            r = torch.cat([r, dense_y], dim=1)
        return self.top_l(r)


class JaggedDLRM(DLRM):
    """bag_list / bag_stacked / bag_mean / bag_max / bag_ilo."""

    def forward(self, dense_x, ls_o, ls_i):
        return self.finish(dense_x, self.embed(ls_o, ls_i))


class WeightedDLRM(DLRM):
    """bag_psw."""

    def forward(self, dense_x, ls_o, ls_i, ls_w):
        return self.finish(dense_x, self.embed(ls_o, ls_i, ls_w))


class FixedDLRM(DLRM):
    """bag_2d / emb_sum."""

    def forward(self, dense_x, ls_i):
        return self.finish(dense_x, self.embed(None, ls_i))


class ExtraDenseDLRM(DLRM):
    """A jagged variant with a second dense input that feeds the top MLP directly."""

    def forward(self, dense_x, ls_o, ls_i, dense_y):
        return self.finish(dense_x, self.embed(ls_o, ls_i), dense_y)


def table_rows(num_tables: int, rows: int) -> list[int]:
    """Row counts per table: ``rows``, ``rows + 7``, ... (distinct, so a mix-up shows)."""
    return [rows + 7 * k for k in range(num_tables)]


def make_dlrm(variant: str, num_tables: int = 3, rows: int = 60, dim: int = 8,
              interaction: str = "dot", seed: int = 0, extra_dense: int = 0) -> DLRM:
    """A small DLRM in eval mode; ``extra_dense > 0`` adds a ``dense_y`` input (jagged variants)."""
    if extra_dense and variant in ("bag_2d", "emb_sum", "bag_psw"):
        raise ValueError("extra_dense is only built for the jagged unweighted variants")
    cls = (ExtraDenseDLRM if extra_dense else
           FixedDLRM if variant in ("bag_2d", "emb_sum") else
           WeightedDLRM if variant == "bag_psw" else JaggedDLRM)
    return cls(variant, num_tables, table_rows(num_tables, rows), dim, interaction, extra_dense, seed).eval()


def input_names(variant: str, num_tables: int, exporter: str, extra_dense: int = 0) -> list[str]:
    """The ONNX graph input names, in forward-argument order, for ``exporter``."""
    ts = exporter.startswith("ts") or exporter == "custom"
    names = ["dense_x"]
    ks = range(num_tables)
    if variant == "bag_stacked":
        names += ["offsets", "indices"] if ts else ["ls_o", "ls_i"]
    else:
        if variant not in ("bag_2d", "emb_sum"):
            names += [f"offsets_{k}" if ts else f"ls_o_{k}" for k in ks]
        names += [f"indices_{k}" if ts else f"ls_i_{k}" for k in ks]
        if variant == "bag_psw":
            names += [f"per_sample_weights_{k}" if ts else f"ls_w_{k}" for k in ks]
    if extra_dense:
        names.append("dense_y")
    return names


def sample_inputs(variant: str, batch_size: int, pooling_range: tuple[int, int] = (0, 6),
                  num_tables: int = 3, rows: int = 60, seed: int = 0, *, exporter: str = "dynamo",
                  extra_dense: int = 0, index_dtype=np.int64):
    """Random inputs: ``(torch_args, feeds)``.

    ``torch_args`` is the forward-argument tuple, ``feeds`` the ORT-style dict keyed by the names
    ``exporter`` gives the inputs. Bag sizes are drawn from ``pooling_range`` (inclusive); for the
    fixed-size variants table k uses ``max(1, lo) + k`` indices per bag; for the stacked variant every
    table gets the same number of indices (the ``[T, N]`` layout needs it). ``index_dtype`` sets the
    feeds' integer dtype (torch always gets int64).
    """
    rng = np.random.default_rng(seed)
    lo, hi = pooling_range
    n_rows = table_rows(num_tables, rows)
    dense_x = rng.standard_normal((batch_size, DENSE_IN)).astype(np.float32)
    offs, idxs, wts = [], [], []
    if variant == "bag_stacked":
        lengths = rng.integers(lo, hi + 1, batch_size)
        for k in range(num_tables):
            idxs.append(rng.integers(0, n_rows[k], int(lengths.sum())))
            offs.append(np.concatenate([[0], np.cumsum(lengths)[:-1]]))
    elif variant in ("bag_2d", "emb_sum"):
        for k in range(num_tables):
            idxs.append(rng.integers(0, n_rows[k], (batch_size, max(1, lo) + k)))
    else:
        for k in range(num_tables):
            lengths = rng.integers(lo, hi + 1, batch_size)
            idxs.append(rng.integers(0, n_rows[k], int(lengths.sum())))
            starts = np.concatenate([[0], np.cumsum(lengths)])
            offs.append(starts if variant == "bag_ilo" else starts[:-1])
            if variant == "bag_psw":
                wts.append(rng.uniform(0.1, 2.0, int(lengths.sum())).astype(np.float32))
    dense_y = rng.standard_normal((batch_size, extra_dense)).astype(np.float32) if extra_dense else None

    t = torch.from_numpy
    if variant == "bag_stacked":
        o = [np.stack(offs)]
        i = [np.stack(idxs)]
        args = (t(dense_x), t(o[0]), t(i[0]))
    elif variant in ("bag_2d", "emb_sum"):
        o, i = [], idxs
        args = (t(dense_x), [t(a) for a in idxs])
    else:
        o, i = offs, idxs
        args = (t(dense_x), [t(a) for a in offs], [t(a) for a in idxs])
        if variant == "bag_psw":
            args += ([t(a) for a in wts],)
    if dense_y is not None:
        args += (t(dense_y),)
    arrays = ([dense_x] + [a.astype(index_dtype) for a in o] + [a.astype(index_dtype) for a in i]
              + wts + ([dense_y] if dense_y is not None else []))
    feeds = dict(zip(input_names(variant, num_tables, exporter, extra_dense), arrays))
    return args, feeds


def _dynamic_axes(variant: str, names: list[str]) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name in names:
        if name in ("dense_x", "dense_y"):
            axes[name] = {0: "batch"}
        elif variant == "bag_stacked":
            axes[name] = {1: "batch" if name == "offsets" else "nnz"}
        elif variant in ("bag_2d", "emb_sum"):
            axes[name] = {0: "batch"}
        else:
            axes[name] = {0: f"n_{name}"}
    return axes


def _dynamic_shapes(model: DLRM, args: tuple) -> tuple:
    """dynamo's ``dynamic_shapes``, positional, mirroring the forward arguments."""
    from torch.export import Dim

    batch = Dim("batch", min=1)
    v, nt = model.variant, len(model.emb_l)
    shapes: list = [{0: batch}]
    if v == "bag_stacked":
        shapes += [{1: batch}, {1: Dim("nnz", min=1)}]
    elif v in ("bag_2d", "emb_sum"):
        shapes += [[{0: batch} for _ in range(nt)]]
    else:
        nnz = [Dim(f"nnz_{k}", min=1) for k in range(nt)]
        shapes += [[{0: batch + 1 if v == "bag_ilo" else batch} for _ in range(nt)],
                   [{0: n} for n in nnz]]
        if v == "bag_psw":
            shapes += [[{0: n} for n in nnz]]
    if model.extra_dense:
        shapes += [{0: batch}]
    assert len(shapes) == len(args)
    return tuple(shapes)


def export_dlrm(model: DLRM, variant: str, exporter: str, path: str | Path,
                opset: int | None = None, example_args: tuple | None = None) -> Path:
    """Export ``model`` to ``path`` with ``exporter`` ("ts11"/"ts17"/"ts18", "ts" + ``opset``,
    "dynamo" (opset 18), "dynamo" + opset (e.g. "dynamo20") or "custom"); dynamic batch and bag
    sizes. Returns the path."""
    path = Path(path)
    nt = len(model.emb_l)
    if example_args is None:
        example_args, _ = sample_inputs(variant, 4, (1, 3), nt, model.emb_l[0].weight.shape[0],
                                        extra_dense=model.extra_dense)
    if exporter.startswith("ts"):
        opset = opset or int(exporter[2:])
        names = input_names(variant, nt, "ts", model.extra_dense)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example_args, str(path), dynamo=False, opset_version=opset,
                              input_names=names, output_names=["pred"],
                              dynamic_axes={**_dynamic_axes(variant, names), "pred": {0: "batch"}})
    elif exporter == "custom":
        from updlrm.onnx_import import export_torch

        names = input_names(variant, nt, exporter, model.extra_dense)
        export_torch(model, example_args, path, input_names=names, output_names=["pred"],
                     dynamic_axes={**_dynamic_axes(variant, names), "pred": {0: "batch"}},
                     opset=opset or 17)
    elif exporter.startswith("dynamo"):
        opset = opset or int(exporter[6:] or 18)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, example_args, str(path), dynamo=True, opset_version=opset,
                              dynamic_shapes=_dynamic_shapes(model, example_args), verbose=False)
    else:
        raise ValueError(f"unknown exporter {exporter!r}")
    return path


def run_split(imported, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Score an ``updlrm.onnx_import.ImportedModel`` without updlrm's engine: ``dense_pre`` and
    ``dense_post`` in onnxruntime, the bags with the slow NumPy reference (``reference.py``).

    Checks the importer's cut and bag semantics independently of the CPU kernel.
    """
    from reference import reference_embedding_bag

    batch = imported.batch_from_feeds(feeds)
    values = dict(feeds)
    for k, bag in enumerate(imported.bags):
        t = bag.table
        values[bag.output] = reference_embedding_bag(t.weight, batch.indices[k], batch.offsets[k],
                                                     batch.weights[k], t.pooling.value)
    for graph in (imported.dense_pre, imported.dense_post):
        if graph is None:
            continue
        sess = graph.session()
        outs = sess.run(graph.outputs, {name: values[name] for name in graph.inputs})
        values.update(zip(graph.outputs, outs))
    return [values[name] for name in imported.output_names]


#: IR version of hand-made test models: what torch's exporters write and every supported
#: onnxruntime reads (onnx 1.23's default, 14, needs onnxruntime >= 1.23).
TEST_IR_VERSION = 10


def make_onnx_model(graph, opset: int = 17, **kwargs):
    """``onnx.helper.make_model`` for hand-made test graphs, at :data:`TEST_IR_VERSION`."""
    from onnx import helper
    opsets = [helper.make_opsetid("", opset)] + kwargs.pop("extra_opsets", [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=TEST_IR_VERSION, **kwargs)
