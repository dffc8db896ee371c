"""Malformed models and patterns the importer does not recognise: clear errors naming the node,
never a table silently dropped; bad feeds name the input."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from updlrm import InvalidInputError, ModelImportError
from updlrm.onnx_import import import_model

from dlrm_models import make_onnx_model, sample_inputs

ROWS, DIM = 20, 4


def _table(name: str = "T", dtype=TensorProto.FLOAT) -> onnx.TensorProto:
    values = np.arange(ROWS * DIM, dtype=np.float32).reshape(ROWS, DIM) / 10
    return helper.make_tensor(name, dtype, [ROWS, DIM], values.ravel().tolist())


def _save(tmp_path, nodes, inputs, outputs, inits, opset: int = 17):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=inits)
    model = make_onnx_model(graph, opset, extra_opsets=[helper.make_opsetid("ai.updlrm", 1)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    return path


IDX2D = helper.make_tensor_value_info("idx", TensorProto.INT64, ["B", 3])
OUT = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
AXES1 = helper.make_tensor("axes1", TensorProto.INT64, [1], [1])


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ModelImportError, match="no such file"):
        import_model(tmp_path / "absent.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    with pytest.raises(ModelImportError, match="not a readable ONNX model"):
        import_model(bad)


def test_value_defined_twice(tmp_path):
    """What dynamo's input_names collision produces: a node output named like a graph input."""
    off = helper.make_tensor_value_info("offsets_7", TensorProto.INT64, ["B"])
    path = _save(tmp_path, [helper.make_node("Identity", ["idx"], ["offsets_7"], name="internal"),
                            helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceSum", ["rows", "axes1"], ["out"], keepdims=0)],
                 [IDX2D, off], [OUT], [_table(), AXES1])
    with pytest.raises(ModelImportError, match="'offsets_7' is defined twice.*without input_names"):
        import_model(path)


def test_gathered_rows_into_an_unknown_op(tmp_path):
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("Relu", ["rows"], ["out"], name="weird_relu")],
                 [IDX2D], [OUT], [_table()])
    with pytest.raises(ModelImportError, match="Relu node 'weird_relu'.*not part of an embedding-bag"):
        import_model(path)


def test_reduce_over_the_wrong_axis(tmp_path):
    axes0 = helper.make_tensor("axes0", TensorProto.INT64, [1], [0])
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceSum", ["rows", "axes0"], ["out"], keepdims=0, name="rs")],
                 [IDX2D], [OUT], [_table(), axes0])
    with pytest.raises(ModelImportError, match=r"ReduceSum node 'rs' reduces axes \[0\]"):
        import_model(path)


def test_attribute_form_axes_is_recognised(tmp_path):
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceMax", ["rows"], ["out"], axes=[1], keepdims=0)],
                 [IDX2D], [OUT], [_table()], opset=11)
    (bag,) = import_model(path, verify=True).bags
    assert bag.table.pooling.value == "max" and bag.source.fixed and bag.pattern == "embedding-sum"


def test_table_read_outside_a_bag(tmp_path):
    """The table also feeds a MatMul of the dense part: refuse rather than drop it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", ROWS])
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceSum", ["rows", "axes1"], ["bag"], keepdims=0),
                            helper.make_node("MatMul", ["x", "T"], ["xt"], name="dense_mm"),
                            helper.make_node("Add", ["bag", "xt"], ["out"])],
                 [IDX2D, x], [OUT], [_table(), AXES1])
    with pytest.raises(ModelImportError, match="MatMul node 'dense_mm' reads table 'T' outside"):
        import_model(path)


def test_one_dimensional_indices_without_offsets(tmp_path):
    idx1d = helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceSum", ["rows", "axes1"], ["out"], keepdims=0)],
                 [idx1d], [OUT], [_table(), AXES1])
    with pytest.raises(ModelImportError, match="no offsets input and its indices 'idx' are not a 2-D"):
        import_model(path)


def test_loop_reading_two_tables(tmp_path):
    body = helper.make_graph(
        [helper.make_node("Identity", ["c_in"], ["c_out"]),
         helper.make_node("Gather", ["T", "i1"], ["a"]),
         helper.make_node("Gather", ["U", "i1"], ["b"]),
         helper.make_node("Add", ["a", "b"], ["r"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("c_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("r", TensorProto.FLOAT, None)],
        initializer=[helper.make_tensor("i1", TensorProto.INT64, [1], [1])])
    m = helper.make_tensor_value_info("M", TensorProto.INT64, [])
    path = _save(tmp_path, [helper.make_node("Loop", ["M", "cond"], ["out"], body=body, name="two_tables")],
                 [m], [OUT], [_table("T"), _table("U"), helper.make_tensor("cond", TensorProto.BOOL, [], [True])])
    with pytest.raises(ModelImportError, match=r"Loop node 'two_tables' reads several tables \['T', 'U'\]"):
        import_model(path)


def test_bfloat16_table_is_refused(tmp_path):
    t = helper.make_tensor("T", TensorProto.BFLOAT16, [ROWS, DIM], np.zeros(ROWS * DIM, np.uint16).tolist())
    path = _save(tmp_path, [helper.make_node("Gather", ["T", "idx"], ["rows"]),
                            helper.make_node("ReduceSum", ["rows", "axes1"], ["out"], keepdims=0)],
                 [IDX2D], [OUT], [t, AXES1])
    with pytest.raises(ModelImportError, match="table 'T' of type BFLOAT16"):
        import_model(path)


def test_custom_node_without_an_initializer_weight(tmp_path):
    w = helper.make_tensor_value_info("W", TensorProto.FLOAT, [ROWS, DIM])
    off = helper.make_tensor_value_info("off", TensorProto.INT64, ["B"])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, ["N"])
    path = _save(tmp_path, [helper.make_node("EmbeddingBag", ["W", "idx", "off"], ["out"], domain="ai.updlrm",
                                             mode="sum", include_last_offset=0, name="eb")],
                 [w, idx, off], [OUT], [])
    with pytest.raises(ModelImportError, match="EmbeddingBag node 'eb': weight 'W' is not a 2-D initializer"):
        import_model(path)


def test_exporter_metadata_disagreeing_with_the_graph(dlrm_export):
    _, path = dlrm_export("bag_list", "dynamo", num_tables=3, rows=60)
    model = onnx.load(str(path), load_external_data=False)
    edited = 0
    for node in model.graph.node:
        for prop in node.metadata_props:
            if prop.key == "pkg.torch.onnx.fx_node" and "aten.embedding_bag" in prop.value:
                args = prop.value.split(", ")
                args[4] = "1"  # claim mean mode
                prop.value = ", ".join(args)
                edited += 1
    assert edited
    out = path.parent / "edited.onnx"  # next to the original external data
    onnx.save(model, str(out))
    with pytest.raises(ModelImportError, match="metadata.*mode mean"):
        import_model(out)


def test_verification_catches_wrong_semantics(dlrm_export, monkeypatch):
    """If recognition got the pooling wrong, verify=True says so, naming the table."""
    from updlrm import Pooling
    from updlrm.onnx_import import bags

    _, path = dlrm_export("bag_mean", "ts11", num_tables=3, rows=60)
    monkeypatch.setattr(bags, "_pooling", lambda nodes, table, output: Pooling.SUM)
    with pytest.raises(ModelImportError, match="table 'emb_l.0.weight': recognised as sum bag"):
        import_model(path, verify=True)
    import_model(path)  # without verification the (wrong) reading is not checked


def test_feeds_errors_name_the_input(dlrm_export):
    _, path = dlrm_export("bag_stacked", "ts11", num_tables=3, rows=60)
    imported = import_model(path)
    _, feeds = sample_inputs("bag_stacked", 4, (1, 3), 3, 60, exporter="ts11")
    assert imported.batch_from_feeds(feeds).batch_size == 4
    with pytest.raises(InvalidInputError, match="missing input 'offsets'"):
        imported.batch_from_feeds({k: v for k, v in feeds.items() if k != "offsets"})
    with pytest.raises(InvalidInputError, match="input 'indices'.*must be integer"):
        imported.batch_from_feeds({**feeds, "indices": feeds["indices"].astype(np.float32)})
    with pytest.raises(InvalidInputError, match="input 'offsets'.*stacked 2-D"):
        imported.batch_from_feeds({**feeds, "offsets": feeds["offsets"][0]})
    with pytest.raises(InvalidInputError, match="input 'indices'.*has 2 rows, the model reads row 2"):
        imported.batch_from_feeds({**feeds, "indices": feeds["indices"][:2]})

    _, path = dlrm_export("bag_psw", "ts11", num_tables=3, rows=60)
    imported = import_model(path)
    _, feeds = sample_inputs("bag_psw", 4, (1, 3), 3, 60, exporter="ts11")
    with pytest.raises(InvalidInputError, match="input 'per_sample_weights_1' \\(weights of table 'emb_l.1.weight'\\)"):
        imported.batch_from_feeds({**feeds, "per_sample_weights_1": feeds["per_sample_weights_1"].astype(np.int64)})
    with pytest.raises(InvalidInputError, match="input 'indices_0'.*must be 1-D"):
        imported.batch_from_feeds({**feeds, "indices_0": feeds["indices_0"][None]})


def test_stacked_feeds_take_the_whole_array_path_with_the_same_result(dlrm_export, monkeypatch):
    """The reference layout (bag t reads row t of stacked indices and offsets) is taken in
    whole-array steps; it gives the batch the bag-by-bag path gives, for int32 and int64 feeds,
    extra rows, strided inputs and empty bags. Mixed dtypes go bag by bag."""
    from updlrm.onnx_import import feeds as feeds_mod

    _, path = dlrm_export("bag_stacked", "ts11", num_tables=3, rows=60)
    imported = import_model(path)
    whole_array = feeds_mod._stacked_batch
    for dtype in (np.int32, np.int64):
        _, feeds = sample_inputs("bag_stacked", 5, (0, 3), 3, 60, exporter="ts11", index_dtype=dtype)
        for fed in (feeds,
                    {**feeds, "indices": np.vstack([feeds["indices"], feeds["indices"][:1]])},
                    {**feeds, "offsets": np.repeat(feeds["offsets"], 2, axis=1)[:, ::2]}):
            fast = whole_array(imported.bags, fed)
            assert fast is not None
            monkeypatch.setattr(feeds_mod, "_stacked_batch", lambda *args: None)
            slow = imported.batch_from_feeds(fed)
            monkeypatch.undo()
            for got, want in zip(fast.indices + fast.offsets, slow.indices + slow.offsets):
                assert got.dtype == want.dtype == dtype
                np.testing.assert_array_equal(got, want)
            assert fast.weights == slow.weights == (None,) * 3
            fast.validate(imported.tables)
    mixed = {**feeds, "indices": feeds["indices"].astype(np.int32)}
    assert whole_array(imported.bags, mixed) is None
    imported.batch_from_feeds(mixed).validate(imported.tables)


def test_stale_value_info_is_ignored(tmp_path):
    """A value_info contradicting the initializers (a tool resized a table) does not stop import."""
    nodes = [helper.make_node("Gather", ["T", "idx"], ["rows"]),
             helper.make_node("ReduceSum", ["rows", "axes1"], ["bag"], keepdims=0),
             helper.make_node("Relu", ["bag"], ["out"])]
    graph = helper.make_graph(nodes, "g", [IDX2D], [OUT], initializer=[_table(), AXES1],
                              value_info=[helper.make_tensor_value_info("T", TensorProto.FLOAT, [99, DIM])])
    path = tmp_path / "stale.onnx"
    onnx.save(make_onnx_model(graph), str(path))
    imported = import_model(path, verify=True)
    assert [b.output for b in imported.bags] == ["bag"] and imported.dense_post.inputs == ["bag"]
