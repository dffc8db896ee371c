"""``export_torch``: one custom EmbeddingBag node per table, and its limits."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from updlrm import ModelImportError
from updlrm.onnx_import import CUSTOM_DOMAIN, export_torch, import_model

from dlrm_models import input_names, make_dlrm, run_split, sample_inputs


def test_one_custom_node_per_table_with_attributes(dlrm_export):
    model, path = dlrm_export("bag_psw", "custom", num_tables=2, rows=40)
    graph = onnx.load(str(path)).graph
    nodes = [n for n in graph.node if n.op_type == "EmbeddingBag"]
    assert len(nodes) == 2 and all(n.domain == CUSTOM_DOMAIN for n in nodes)
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nodes[0].attribute}
    assert attrs == {"mode": b"sum", "include_last_offset": 0}
    assert list(nodes[0].input) == ["emb_l.0.weight", "indices_0", "offsets_0", "per_sample_weights_0"]
    # Only Loop-free graphs: no bag machinery is left for onnxruntime.
    assert not any(n.op_type == "Loop" for n in graph.node)


def test_include_last_offset_and_max_round_trip(tmp_path):
    model = make_dlrm("bag_ilo", num_tables=2, rows=30)
    for emb in model.emb_l:
        emb.mode = "max"
    args, _ = sample_inputs("bag_ilo", 3, (1, 2), 2, 30, exporter="custom")
    names = input_names("bag_ilo", 2, "custom")
    path = export_torch(model, args, tmp_path / "m.onnx", input_names=names, output_names=["pred"],
                        dynamic_axes={n: {0: f"d_{n}"} for n in names})
    imported = import_model(path)
    assert [(b.table.pooling.value, b.source.include_last_offset) for b in imported.bags] == [("max", True)] * 2
    args, feeds = sample_inputs("bag_ilo", 11, (0, 60), 2, 30, seed=5, exporter="custom")
    with torch.inference_mode():
        want = model(*args).numpy()
    np.testing.assert_allclose(run_split(imported, feeds)[0], want, atol=1e-5, rtol=0)


def test_padding_idx_is_refused(tmp_path):
    class Padded(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.EmbeddingBag(10, 4, padding_idx=0)

        def forward(self, idx, off):
            return self.emb(idx, off)

    with pytest.raises(ModelImportError, match="padding_idx"):
        export_torch(Padded(), (torch.tensor([1, 2]), torch.tensor([0])), tmp_path / "p.onnx")
