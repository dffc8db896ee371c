"""The NumPy bag model that ``verify=True`` compares onnxruntime against, checked against torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from updlrm import Pooling
from updlrm.onnx_import import reference_bag


# torch takes per_sample_weights only with mode="sum".
@pytest.mark.parametrize("mode,weighted", [("sum", False), ("mean", False), ("max", False), ("sum", True)])
def test_reference_bag_matches_torch(mode, weighted):
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((30, 6)).astype(np.float32)
    lengths = np.array([0, 1, 3, 0, 55, 2])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    indices = rng.integers(0, 30, offsets[-1])
    psw = rng.uniform(0.5, 2, offsets[-1]).astype(np.float32) if weighted else None
    got = reference_bag(weight, indices, offsets, psw, Pooling(mode))
    want = torch.nn.functional.embedding_bag(
        torch.from_numpy(indices), torch.from_numpy(weight), torch.from_numpy(offsets),
        mode=mode, include_last_offset=True,
        per_sample_weights=None if psw is None else torch.from_numpy(psw)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-6)
    assert not got[lengths == 0].any()  # empty bags are 0 in every mode
