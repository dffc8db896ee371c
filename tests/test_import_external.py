"""Tables in external data: memory-mapped from location/offset/length, never copied, never
serialised with the proto; a > 2 GB table is faked with a sparse file (no disk used)."""
from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from updlrm import ModelImportError, Pooling
from updlrm.onnx_import import import_model

from dlrm_models import make_onnx_model

DIM = 8


def _external(name: str, array: np.ndarray, location: str, offset: int | None) -> TensorProto:
    """A tensor whose bytes live at ``offset`` of ``location`` (offset None: TorchScript style,
    one file per tensor with only a location)."""
    t = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    t.data_location = TensorProto.EXTERNAL
    t.external_data.add(key="location", value=location)
    if offset is not None:
        t.external_data.add(key="offset", value=str(offset))
        t.external_data.add(key="length", value=str(array.nbytes))
    return t


def _write_at(path, offset: int, array: np.ndarray) -> None:
    with open(path, "r+b" if path.exists() else "wb") as f:
        f.seek(offset)
        f.write(np.ascontiguousarray(array).tobytes())


def _emb_sum_model(tables: list[TensorProto], dense_w: TensorProto, bag_len: int) -> onnx.ModelProto:
    """out = concat(sum_l T_k[idx_k[:, l]] for k) @ W, one [B, L] index input per table."""
    nodes, inputs, pooled = [], [], []
    axes = helper.make_tensor("axes1", TensorProto.INT64, [1], [1])
    for k, t in enumerate(tables):
        inputs.append(helper.make_tensor_value_info(f"idx_{k}", TensorProto.INT64, ["B", bag_len]))
        nodes.append(helper.make_node("Gather", [t.name, f"idx_{k}"], [f"rows_{k}"]))
        nodes.append(helper.make_node("ReduceSum", [f"rows_{k}", "axes1"], [f"bag_{k}"], keepdims=0))
        if t.data_type == TensorProto.FLOAT16:
            nodes.append(helper.make_node("Cast", [f"bag_{k}"], [f"bagf_{k}"], to=TensorProto.FLOAT))
            pooled.append(f"bagf_{k}")
        else:
            pooled.append(f"bag_{k}")
    nodes.append(helper.make_node("Concat", pooled, ["cat"], axis=1))
    nodes.append(helper.make_node("MatMul", ["cat", dense_w.name], ["out"]))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["B", 1])],
                              initializer=tables + [dense_w, axes])
    return make_onnx_model(graph)


def test_tables_are_memmaps_of_shared_and_per_tensor_files(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    t0 = rng.standard_normal((50, DIM)).astype(np.float32)
    t1 = rng.standard_normal((40, DIM)).astype(np.float16)
    w = rng.standard_normal((2 * DIM, 1)).astype(np.float32)
    shared = tmp_path / "model.onnx.data"
    _write_at(shared, 0, np.arange(300, dtype=np.float32))  # something before the table: offset 1200
    _write_at(shared, 1200, t0)
    _write_at(shared, 1200 + t0.nbytes + 4, w)  # unaligned, as dynamo packs them
    _write_at(tmp_path / "emb_l.1.weight", 0, t1)
    model = _emb_sum_model([_external("emb_l.0.weight", t0, shared.name, 1200),
                            _external("emb_l.1.weight", t1, "emb_l.1.weight", None)],
                           _external("W", w, shared.name, 1200 + t0.nbytes + 4), bag_len=3)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    before = sorted(os.listdir(tmp_path))

    # Nothing may load the external data into a proto (it would fail above 2 GB).
    real_load = onnx.load

    def guarded_load(f, *args, **kw):
        assert kw.get("load_external_data") is False, "the importer loaded external data"
        return real_load(f, *args, **kw)

    monkeypatch.setattr(onnx, "load", guarded_load)
    imported = import_model(path, verify=True)
    monkeypatch.setattr(onnx, "load", real_load)

    w0, w1 = (b.table.weight for b in imported.bags)
    assert isinstance(w0, np.memmap) and isinstance(w1, np.memmap)
    assert not w0.flags.writeable and not w1.flags.writeable
    assert w0.dtype == np.float32 and w1.dtype == np.float16  # fp16 stays fp16
    np.testing.assert_array_equal(w0, t0)
    np.testing.assert_array_equal(w1, t1)
    assert [b.table.pooling for b in imported.bags] == [Pooling.SUM] * 2
    assert all(b.source.fixed and b.pattern == "embedding-sum" for b in imported.bags)

    # The dense cut still points at the shared file: no bytes copied, nothing written.
    post = imported.dense_post
    (w_init,) = [t for t in post.model.graph.initializer if t.name == "W"]
    assert w_init.data_location == TensorProto.EXTERNAL
    assert len(post.model_bytes()) < 1024
    idx = [rng.integers(0, 50, (4, 3)), rng.integers(0, 40, (4, 3))]
    feeds = {"idx_0": idx[0], "idx_1": idx[1]}
    bags = [t0[idx[0]].sum(1), t1.astype(np.float32)[idx[1]].sum(1)]
    (got,) = post.session().run(None, {b.output: v for b, v in zip(imported.bags, bags)})
    # The graph pooled table 1 in fp16: dense_post rounds the float32 bag to fp16 the same way.
    bags[1] = bags[1].astype(np.float16).astype(np.float32)
    np.testing.assert_allclose(got, np.concatenate(bags, 1) @ w, rtol=1e-5, atol=1e-5)
    assert sorted(os.listdir(tmp_path)) == before
    batch = imported.batch_from_feeds(feeds)
    np.testing.assert_array_equal(batch.offsets[0], [0, 3, 6, 9, 12])


def test_table_larger_than_2gb_via_sparse_file(tmp_path):
    """A 2.5 GB table: the file is sparse, only the touched pages exist."""
    rows = (5 << 29) // (DIM * 4)  # 2.5 GiB of float32
    data = tmp_path / "big.onnx.data"
    offset = 4096 + 8
    with open(data, "wb") as f:
        f.truncate(offset + rows * DIM * 4 + 64)
    if os.stat(data).st_blocks * 512 > 1 << 20:
        pytest.skip("the file system does not support sparse files")
    picked = np.array([0, 1, rows // 2, rows - 1])
    values = np.arange(len(picked) * DIM, dtype=np.float32).reshape(len(picked), DIM) + 1
    for r, v in zip(picked, values):
        _write_at(data, offset + int(r) * DIM * 4, v)
    w = np.ones((DIM, 1), np.float32)
    table = _external("big_table", np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (rows, DIM), (0, 0)),
                      data.name, offset)
    model = _emb_sum_model([table], helper.make_tensor("W", TensorProto.FLOAT, [DIM, 1], w.ravel()), bag_len=2)
    path = tmp_path / "big.onnx"
    onnx.save(model, str(path))
    assert path.stat().st_size < 4096  # the proto itself stays tiny

    imported = import_model(path)
    weight = imported.bags[0].table.weight
    assert isinstance(weight, np.memmap) and weight.shape == (rows, DIM)
    assert weight.nbytes > 2 << 30
    np.testing.assert_array_equal(weight[picked], values)
    (got,) = imported.dense_post.session().run(None, {imported.bags[0].output: values[:2] + values[2:]})
    np.testing.assert_allclose(got, (values[:2] + values[2:]) @ w)


def test_truncated_external_data_is_reported(tmp_path):
    t0 = np.ones((50, DIM), np.float32)
    _write_at(tmp_path / "m.data", 0, t0[:10])
    model = _emb_sum_model([_external("tbl", t0, "m.data", 0)],
                           helper.make_tensor("W", TensorProto.FLOAT, [DIM, 1], [1.0] * DIM), bag_len=2)
    onnx.save(model, str(tmp_path / "m.onnx"))
    with pytest.raises(ModelImportError, match="'tbl'.*m.data"):
        import_model(tmp_path / "m.onnx")


def test_saved_dense_graph_resolves_external_data(tmp_path, monkeypatch):
    """The file fallback writes next to the data (external data in a sub-folder here), and
    session() takes it when onnxruntime cannot resolve external data of a model given as bytes."""
    import onnxruntime as ort

    rng = np.random.default_rng(2)
    t0 = rng.standard_normal((50, DIM)).astype(np.float32)
    w = rng.standard_normal((DIM, 1)).astype(np.float32)
    data = tmp_path / "sub" / "m.data"
    data.parent.mkdir()
    _write_at(data, 0, t0)
    _write_at(data, t0.nbytes, w)
    model = _emb_sum_model([_external("tbl", t0, "sub/m.data", 0)], _external("W", w, "sub/m.data", t0.nbytes),
                           bag_len=2)
    onnx.save(model, str(tmp_path / "m.onnx"))
    post = import_model(tmp_path / "m.onnx").dense_post
    path = post.save()
    assert path.parent == tmp_path and path.stat().st_size < 1024
    bag = rng.standard_normal((3, DIM)).astype(np.float32)
    (got,) = ort.InferenceSession(str(path)).run(None, {post.inputs[0]: bag})
    np.testing.assert_allclose(got, bag @ w, rtol=1e-5, atol=1e-6)
    assert post.save() == path  # same content, same file

    # An onnxruntime that cannot find external data of a model given as bytes: the file route.
    os.remove(path)
    real_session = ort.InferenceSession

    def bytes_blind(model, *args, **kw):
        if isinstance(model, bytes):
            raise RuntimeError("cannot open external data file m.data")
        return real_session(model, *args, **kw)

    monkeypatch.setattr(ort, "InferenceSession", bytes_blind)
    (got,) = post.session().run(None, {post.inputs[0]: bag})
    np.testing.assert_allclose(got, bag @ w, rtol=1e-5, atol=1e-6)
    assert path.exists()
    monkeypatch.setattr(ort, "InferenceSession", real_session)

    os.remove(path)
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    with pytest.raises(ModelImportError, match="not writable"):
        post.save()
    # The normal route writes nothing and needs no write access.
    (got,) = post.session().run(None, {post.inputs[0]: bag})
    np.testing.assert_allclose(got, bag @ w, rtol=1e-5, atol=1e-6)
