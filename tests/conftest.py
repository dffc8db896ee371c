"""Shared fixtures (kept tiny): a per-session cache of small DLRM ONNX exports."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def dlrm_export(tmp_path_factory):
    """``get(variant, exporter, **make_dlrm_kwargs) -> (torch model, onnx path)``, exported once
    per test session (see ``dlrm_models``)."""
    from dlrm_models import export_dlrm, make_dlrm

    cache: dict = {}

    def get(variant: str, exporter: str, **kw):
        key = (variant, exporter, tuple(sorted(kw.items())))
        if key not in cache:
            model = make_dlrm(variant, **kw)
            path = tmp_path_factory.mktemp(f"{variant}_{exporter}") / "model.onnx"
            export_dlrm(model, variant, exporter, path)
            cache[key] = (model, path)
        return cache[key]

    return get
