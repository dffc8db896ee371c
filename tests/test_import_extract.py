"""The outer-scope-aware extractor: bag regions cut out of TorchScript/dynamo exports run in
onnxruntime, where ``onnx.utils.extract_model``'s cut is invalid."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from updlrm.onnx_import.extract import extract, infer_value_types
from updlrm.onnx_import.graph import GraphIndex, dead_code_elimination, outer_reads
from updlrm.onnx_import.importer import import_model, load_structure

from dlrm_models import sample_inputs


@pytest.mark.parametrize("exporter", ["ts17", "dynamo"])
def test_bag_region_runs_and_equals_the_full_model(dlrm_export, exporter, tmp_path):
    _, path = dlrm_export("bag_psw", exporter, num_tables=3, rows=60)
    bag = import_model(path).bags[1]
    model = load_structure(path)
    dead_code_elimination(model.graph)
    idx = GraphIndex(model)
    region = extract(idx, [], [bag.output], infer_value_types(model), path.parent)
    saved = path.parent / f"region_{bag.table.name}.onnx"  # next to the external data it uses
    onnx.save(region.model, str(saved))
    onnx.checker.check_model(str(saved))
    # The Loop reads its table (and offsets) from the outer scope: they must be in the cut.
    loops = [n for n in region.model.graph.node if n.op_type == "Loop"]
    assert loops and bag.table.name in {t.name for t in region.model.graph.initializer} | {
        r for n in loops for a in n.attribute if a.type == onnx.AttributeProto.GRAPH for r in outer_reads(a.g)}
    assert set(region.inputs) <= {bag.source.indices, bag.source.offsets, bag.source.weights}

    _, feeds = sample_inputs("bag_psw", 6, (0, 55), 3, 60, seed=1, exporter=exporter)
    (got,) = region.session().run(None, {n: feeds[n] for n in region.inputs})
    # Same value as the bag output inside the whole model, run by onnxruntime.
    whole = onnx.load(str(path))
    whole.graph.output.append(onnx.helper.make_tensor_value_info(bag.output, onnx.TensorProto.FLOAT, None))
    full_path = tmp_path / "with_bag_output.onnx"
    onnx.save(whole, str(full_path))
    want = ort.InferenceSession(str(full_path)).run([bag.output], feeds)[0]
    np.testing.assert_array_equal(got, want)

    # onnx's own extractor drops the outer-scope producers of the same region.
    cut = tmp_path / "onnx_cut.onnx"
    with pytest.raises(Exception):
        onnx.utils.extract_model(str(path), str(cut), region.inputs, [bag.output])
        onnx.checker.check_model(str(cut))
        ort.InferenceSession(str(cut)).run(None, {n: feeds[n] for n in region.inputs})
