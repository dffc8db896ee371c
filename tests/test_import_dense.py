"""The dense cut on models whose dense part is not the standard bottom-MLP/dot/top-MLP chain."""
from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from updlrm.onnx_import import import_model

from dlrm_models import make_onnx_model, run_split, sample_inputs

ROWS = 50


@pytest.mark.parametrize("exporter", ["ts11", "dynamo"])
def test_cat_interaction_with_extra_dense_input(dlrm_export, exporter):
    model, path = dlrm_export("bag_list", exporter, num_tables=2, rows=ROWS, interaction="cat",
                              extra_dense=3)
    imported = import_model(path, verify=True)
    assert len(imported.bags) == 2
    assert imported.dense_pre.inputs == ["dense_x"]
    # dense_y skips the bottom MLP and goes straight into dense_post.
    assert "dense_y" in imported.dense_post.inputs and "dense_y" not in imported.dense_pre.inputs
    for seed, (batch, pooling) in enumerate([(1, (0, 3)), (10, (0, 60))]):
        args, feeds = sample_inputs("bag_list", batch, pooling, 2, ROWS, seed=seed, exporter=exporter,
                                    extra_dense=3)
        with torch.inference_mode():
            want = model(*args).numpy()
        np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


class NoBottom(nn.Module):
    """dense_x goes into the interaction as it is: nothing to run before the bags."""

    def __init__(self):
        super().__init__()
        self.emb = nn.ModuleList([nn.EmbeddingBag(ROWS, 4, mode="sum") for _ in range(2)])
        self.top = nn.Linear(4 + 8, 1)

    def forward(self, dense_x, ls_o, ls_i):
        ly = [e(i, o) for e, i, o in zip(self.emb, ls_i, ls_o)]
        return torch.sigmoid(self.top(torch.cat([dense_x] + ly, dim=1)))


class ShapeReader(NoBottom):
    """The dense part reads a sparse input's length: a Shape read outside the bags."""

    def forward(self, dense_x, ls_o, ls_i):
        return super().forward(dense_x, ls_o, ls_i) * ls_i[0].shape[0]


class MlpOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, dense_x):
        return self.net(dense_x)


def _jagged_args(batch: int, seed: int):
    rng = np.random.default_rng(seed)
    dense = torch.from_numpy(rng.standard_normal((batch, 4)).astype(np.float32))
    ls_o, ls_i, feeds = [], [], {}
    for k in range(2):
        lengths = rng.integers(0, 5, batch)
        ls_i.append(torch.from_numpy(rng.integers(0, ROWS, int(lengths.sum()))))
        ls_o.append(torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])))
    feeds = {"dense_x": dense.numpy(), **{f"ls_o_{k}": o.numpy() for k, o in enumerate(ls_o)},
             **{f"ls_i_{k}": i.numpy() for k, i in enumerate(ls_i)}}
    return (dense, ls_o, ls_i), feeds


def _export(model, args, path, dynamic: bool):
    from torch.export import Dim

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamic:
            batch = Dim("batch", min=1)
            shapes = ({0: batch}, [{0: batch}] * 2, [{0: Dim(f"nnz_{k}", min=1)} for k in range(2)])
            torch.onnx.export(model, args, str(path), dynamo=True, dynamic_shapes=shapes)
        else:
            names = ["dense_x", "ls_o_0", "ls_o_1", "ls_i_0", "ls_i_1"]
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17, input_names=names,
                              dynamic_axes={n: {0: f"d_{n}"} for n in names})
    return path


@pytest.mark.parametrize("dynamic", [False, True], ids=["ts17", "dynamo"])
def test_no_dense_pre_when_dense_x_feeds_the_interaction(tmp_path, dynamic):
    model = NoBottom().eval()
    args, _ = _jagged_args(4, 0)
    imported = import_model(_export(model, args, tmp_path / "m.onnx", dynamic), verify=True)
    assert imported.dense_pre is None
    assert set(imported.dense_post.inputs) == {b.output for b in imported.bags} | {"dense_x"}
    args, feeds = _jagged_args(7, 1)
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("dynamic", [False, True], ids=["ts17", "dynamo"])
def test_shape_read_of_a_sparse_input_in_the_dense_part(tmp_path, dynamic):
    """The dense graphs list the sparse input they read the shape of; fed, they match torch."""
    model = ShapeReader().eval()
    args, _ = _jagged_args(4, 0)
    imported = import_model(_export(model, args, tmp_path / "m.onnx", dynamic))
    dense_inputs = set(imported.dense_post.inputs) | set(imported.dense_pre.inputs if imported.dense_pre else [])
    assert "ls_i_0" in dense_inputs
    args, feeds = _jagged_args(6, 2)
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


def test_model_without_bags_is_all_dense_post(tmp_path):
    model = MlpOnly().eval()
    x = torch.randn(3, 4)
    path = tmp_path / "mlp.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["dense_x"],
                          output_names=["y"], dynamic_axes={"dense_x": {0: "b"}})
    imported = import_model(path, verify=True)
    assert imported.bags == [] and imported.dense_pre is None
    assert imported.dense_post.inputs == ["dense_x"] and imported.dense_post.outputs == ["y"]
    x = torch.randn(5, 4)
    with torch.inference_mode():
        want = model(x).numpy()
    (got,) = imported.dense_post.session(ort.SessionOptions()).run(None, {"dense_x": x.numpy()})
    np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
    assert imported.batch_from_feeds({"dense_x": x.numpy()}).num_tables == 0


def test_fp16_model_gets_float32_bags(tmp_path):
    """A half-precision graph: the table stays fp16, dense_post takes float32 bags and casts."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    table = rng.standard_normal((30, 4)).astype(np.float16)
    nodes = [helper.make_node("Gather", ["T", "idx"], ["rows"]),
             helper.make_node("ReduceSum", ["rows", "axes"], ["bag"], keepdims=0),
             helper.make_node("Concat", ["x", "bag"], ["cat"], axis=1),
             helper.make_node("Cast", ["cat"], ["out"], to=TensorProto.FLOAT)]
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["B", 2]),
         helper.make_tensor_value_info("idx", TensorProto.INT64, ["B", 3])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 6])],
        initializer=[onnx.numpy_helper.from_array(table, "T"),
                     helper.make_tensor("axes", TensorProto.INT64, [1], [1])])
    path = tmp_path / "half.onnx"
    onnx.save(make_onnx_model(graph), str(path))
    imported = import_model(path, verify=True)
    (bag,) = imported.bags
    assert bag.table.weight.dtype == np.float16
    x = rng.standard_normal((5, 2)).astype(np.float16)
    idx = rng.integers(0, 30, (5, 3))
    pooled = table.astype(np.float32)[idx].sum(1)
    (got,) = imported.dense_post.session().run(None, {"x": x, bag.output: pooled})
    want = np.concatenate([x.astype(np.float32), pooled.astype(np.float16).astype(np.float32)], 1)
    np.testing.assert_array_equal(got, want)


class SharedTable(nn.Module):
    """Two features look up the same table: two bags, one (shared, uncopied) weight."""

    def __init__(self):
        super().__init__()
        self.emb = nn.EmbeddingBag(ROWS, 4, mode="sum")
        self.top = nn.Linear(8, 1)

    def forward(self, dense_x, ls_o, ls_i):
        return self.top(torch.cat([self.emb(ls_i[0], ls_o[0]), self.emb(ls_i[1], ls_o[1])], 1)) + dense_x[:, :1]


@pytest.mark.parametrize("dynamic", [False, True], ids=["ts17", "dynamo"])
def test_table_shared_by_two_features(tmp_path, dynamic):
    model = SharedTable().eval()
    args, _ = _jagged_args(4, 0)
    imported = import_model(_export(model, args, tmp_path / "m.onnx", dynamic), verify=True)
    first, second = imported.bags
    assert first.table.name == second.table.name and first.table.weight is second.table.weight
    assert (first.source.indices, second.source.indices) == ("ls_i_0", "ls_i_1")
    args, feeds = _jagged_args(5, 3)
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)
