"""The Criteo examples run end to end in a reduced mode (tiny tables, few samples), as a user
would start them, so they cannot rot."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def max_diff(text: str, label: str) -> float:
    match = re.search(rf"max \|{label}\| = (\S+) over ([\d,]+) scores", text)
    assert match, f"no '{label}' line in:\n{text}"
    return float(match.group(1))


def test_criteo_dlrm_scores_a_tsv_like_pytorch(tmp_path):
    out = run_example("criteo_dlrm.py", "--samples", "300", "--max-rows", "1000", "--batch-size", "128",
                      "--workdir", str(tmp_path))
    assert "wrote 300 samples" in out and "updlrm (cpu backend): 300 samples" in out
    assert max_diff(out, "updlrm - pytorch") < 1e-5
    assert (tmp_path / "criteo_dlrm.onnx").exists()


def test_criteo_synthetic_scores_plans_and_checks_pim(tmp_path):
    out = run_example("criteo_synthetic.py", "--samples", "1500", "--max-rows", "1000", "--pooling", "1-6",
                      "--batch-size", "512", "--check-samples", "1500", "--profile-samples", "1000",
                      "--dpus", "64", "--pim-samples", "96", "--pim-dpus", "8", "--workdir", str(tmp_path))
    assert "updlrm (cpu backend): 1,500 samples" in out
    assert max_diff(out, "updlrm - pytorch") < 1e-5
    assert "access profile of 1,000 requests" in out
    for level in ("uniform", "popularity", "cache"):
        assert f"level {level}:" in out
        assert (tmp_path / "plots" / f"load_{level}.png").read_bytes().startswith(b"\x89PNG")
    assert "MODELLED ms per batch" in out and "every latency below is MODELLED" in out
    assert "26 of 26 tables on DPUs" in out
    assert max_diff(out, "pim - cpu") < 1e-5
