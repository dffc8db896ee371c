"""Real torch 2.13 exports of every embedding-bag variant, recognised and split by the importer.

For each variant × {TorchScript opset 11, 17; dynamo; updlrm's custom-op export}: the bags found (table, pooling, weights,
include_last_offset, input binding, order) and the scores of dense_pre → NumPy bags → dense_post
against PyTorch, for B=1 and larger batches with bags of 0, 1 and 50+ indices.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from updlrm import Pooling
from updlrm.onnx_import import import_model

from dlrm_models import VARIANTS, input_names, run_split, sample_inputs

NUM_TABLES, ROWS = 3, 60
EXPORTERS = ("ts11", "ts17", "dynamo", "custom")
POOLING = {"bag_mean": Pooling.MEAN, "bag_max": Pooling.MAX}
# (batch size, inclusive bag-size range): B=1, empty and single-index bags, 50+ indices.
CASES = [(1, (0, 2)), (1, (50, 60)), (13, (0, 1)), (9, (0, 4)), (6, (50, 70))]


def expected_pattern(variant: str, exporter: str) -> str:
    if variant == "emb_sum":
        return "embedding-sum"  # export_torch leaves nn.Embedding alone too
    if exporter == "custom":
        return "custom-op"
    return "dynamo-loop" if exporter == "dynamo" else "torchscript-loop"


@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_recognises_and_matches_pytorch(dlrm_export, variant, exporter):
    model, path = dlrm_export(variant, exporter, num_tables=NUM_TABLES, rows=ROWS)
    imported = import_model(path, verify=True)

    names = input_names(variant, NUM_TABLES, exporter)
    assert [i.name for i in imported.inputs] == names
    assert len(imported.bags) == NUM_TABLES
    for k, bag in enumerate(imported.bags):
        src, table = bag.source, bag.table
        assert bag.pattern == expected_pattern(variant, exporter)
        # Same values as the torch module's table k: the bags come in interaction order.
        np.testing.assert_array_equal(np.asarray(table.weight), model.emb_l[k].weight.detach().numpy())
        assert table.pooling is POOLING.get(variant, Pooling.SUM)
        assert table.weighted == (variant == "bag_psw")
        assert src.include_last_offset == (variant == "bag_ilo")
        assert src.fixed == (variant in ("bag_2d", "emb_sum"))
        if variant == "bag_stacked":
            assert (src.offsets, src.indices) == (names[1], names[2])
            assert src.offsets_row == src.indices_row == k
        elif src.fixed:
            assert (src.indices, src.offsets, src.indices_row) == (names[1 + k], None, None)
        else:
            assert (src.offsets, src.indices) == (names[1 + k], names[1 + NUM_TABLES + k])
            assert src.offsets_row is None and src.indices_row is None
        assert src.weights == (names[1 + 2 * NUM_TABLES + k] if variant == "bag_psw" else None)
    # The dense cut reads no sparse input: only dense_x, bag outputs and dense_pre outputs.
    assert imported.dense_pre is not None and imported.dense_pre.inputs == ["dense_x"]
    pre_out = set(imported.dense_pre.outputs)
    bag_out = [b.output for b in imported.bags]
    assert set(imported.dense_post.inputs) <= pre_out | set(bag_out)
    assert imported.dense_post.inputs[:NUM_TABLES] == bag_out

    for seed, (batch_size, pooling) in enumerate(CASES):
        args, feeds = sample_inputs(variant, batch_size, pooling, NUM_TABLES, ROWS, seed=seed,
                                    exporter=exporter)
        with torch.inference_mode():
            want = model(*args).numpy()
        (got,) = run_split(imported, feeds)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("variant,exporter", [("bag_mean", "ts18"), ("bag_max", "ts18"), ("bag_psw", "ts18"),
                                              ("bag_mean", "dynamo20")])
def test_other_opsets(dlrm_export, variant, exporter):
    """Opset 18 moves ReduceMean/ReduceMax axes from attribute to input; dynamo's own default is 20."""
    model, path = dlrm_export(variant, exporter, num_tables=2, rows=ROWS)
    imported = import_model(path, verify=True)
    assert [b.table.pooling for b in imported.bags] == [POOLING.get(variant, Pooling.SUM)] * 2
    args, feeds = sample_inputs(variant, 5, (0, 55), 2, ROWS, seed=3, exporter=exporter)
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


def test_torchscript_max_empty_bag_is_minus_inf_in_onnxruntime(dlrm_export):
    """The export bug the engine must not copy: ORT gives -inf (NaN score) where torch gives 0."""
    import onnxruntime as ort

    model, path = dlrm_export("bag_max", "ts11", num_tables=NUM_TABLES, rows=ROWS)
    args, feeds = sample_inputs("bag_max", 13, (0, 1), NUM_TABLES, ROWS, seed=2, exporter="ts11")
    ort_out = ort.InferenceSession(str(path)).run(None, feeds)[0]
    with torch.inference_mode():
        want = model(*args).numpy()
    assert np.isnan(ort_out).any() and np.isfinite(want).all()
    np.testing.assert_allclose(run_split(import_model(path), feeds)[0], want, atol=1e-5, rtol=0)


def test_int32_feeds(dlrm_export):
    model, path = dlrm_export("bag_list", "dynamo", num_tables=NUM_TABLES, rows=ROWS)
    imported = import_model(path)
    args, feeds = sample_inputs("bag_list", 7, (0, 5), NUM_TABLES, ROWS, seed=4, index_dtype=np.int32)
    batch = imported.batch_from_feeds(feeds)
    assert all(i.dtype == np.int32 for i in batch.indices)
    assert batch.batch_size == 7 and batch.num_tables == NUM_TABLES
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("exporter", ["dynamo", "ts17"])
def test_tables_with_different_modes(tmp_path, exporter):
    """Bags of one model with sum, mean and max side by side (the exporter shares nodes between
    them: each table's pooling must come from its own region and metadata)."""
    modes = ["sum", "mean", "max"]

    class Mixed(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bags = torch.nn.ModuleList(torch.nn.EmbeddingBag(10, 4, mode=m) for m in modes)

        def forward(self, x, offsets, indices):
            return x + sum(bag(indices[k], offsets[k]) for k, bag in enumerate(self.bags))

    torch.manual_seed(0)
    model = Mixed().eval()
    x, off, idx = torch.rand(3, 4), [torch.tensor([0, 1, 3])] * 3, [torch.tensor([1, 2, 3, 4])] * 3
    path = tmp_path / "mixed.onnx"
    if exporter == "dynamo":
        b = torch.export.Dim("b", min=1)
        shapes = ({0: b}, [{0: b}] * 3, [{0: torch.export.Dim(f"n{k}", min=1)} for k in range(3)])
        torch.onnx.export(model, (x, off, idx), path, dynamo=True, dynamic_shapes=shapes)
    else:
        torch.onnx.export(model, (x, off, idx), path, dynamo=False, opset_version=17)
    imported = import_model(path)
    assert [bag.table.pooling for bag in imported.bags] == [Pooling.SUM, Pooling.MEAN, Pooling.MAX]
    feeds = {i.name: v.numpy() for i, v in zip(imported.inputs, [x, *off, *idx])}
    with torch.inference_mode():
        want = model(x, off, idx).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-6, rtol=0)
