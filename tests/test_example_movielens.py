"""examples/movielens_dlrm.py in reduced mode on a fake RecBole wheel, so the example cannot rot."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from fake_movielens import fake_files, write_fake_wheel

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "movielens_dlrm.py"


def test_example_reduced_mode(tmp_path):
    # Three epochs spread the scores apart: near-equal scores of an untrained model can swap order
    # under float rounding and move the AUC (the example then reports how many are that close).
    wheel = write_fake_wheel(tmp_path / "fake.whl", fake_files(seed=3, users=40, items=30,
                                                              ratings_per_user=(6, 25)))
    cmd = [sys.executable, str(EXAMPLE), "--data", str(wheel), "--cache-dir", str(tmp_path / "cache"),
           "--workdir", str(tmp_path / "work"), "--epochs", "3", "--lr", "0.01", "--train-batch", "32",
           "--batch-sizes", "1,16", "--repeats", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "AUC agreement within 1e-06: yes" in out
    aucs = [float(v) for v in re.findall(r"test AUC, [^:]+:\s+([0-9.]+)", out)]
    assert len(aucs) == 3 and max(aucs) - min(aucs) <= 1e-6, out
    assert (tmp_path / "work" / "movielens_dlrm_ts.onnx").exists()
    assert (tmp_path / "work" / "movielens_dlrm_dynamo.onnx").exists()
    timing_rows = [line.split() for line in out.splitlines() if re.match(r"\s+(1|16) ", line)]
    assert [r[0] for r in timing_rows] == ["1", "16"] and all(len(r) == 6 for r in timing_rows), out
