"""Sample readers: the Criteo TSV parser against a plain-Python twin, and its error messages."""
from __future__ import annotations

import gzip

import numpy as np
import pytest

from updlrm import EmbeddingTable, InvalidInputError
from updlrm.datasets import CriteoTsvSamples

ROWS = [3 + 7 * k for k in range(26)]
TABLES = [EmbeddingTable(f"t{k}", np.zeros((n, 2), np.float32)) for k, n in enumerate(ROWS)]


def random_lines(n: int, rng: np.random.Generator) -> list[str]:
    lines = []
    for _ in range(n):
        ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-3, 10**6))) for _ in range(13)]
        cats = ["" if rng.random() < 0.2 else f"{int(rng.integers(0, 2**63)):x}" for _ in range(26)]
        lines.append("\t".join([str(int(rng.integers(0, 2)))] + ints + cats))
    return lines


def python_twin(lines: list[str]):
    labels, dense, cats = [], [], []
    for line in lines:
        f = line.split("\t")
        labels.append(float(f[0]))
        dense.append([np.log1p(max(int(v), 0)) if v else 0.0 for v in f[1:14]])
        cats.append([int(v, 16) % n if v else 0 for v, n in zip(f[14:], ROWS)])
    return np.array(labels, np.float32), np.array(dense, np.float32), np.array(cats).T


@pytest.mark.parametrize("newline,compress", [("\n", False), ("\r\n", True)])
def test_parser_matches_python_twin(tmp_path, newline, compress):
    lines = random_lines(500, np.random.default_rng(0))
    text = newline.join(lines)  # no newline after the last line
    path = tmp_path / ("d.tsv.gz" if compress else "d.tsv")
    if compress:
        with gzip.open(path, "wt", newline="") as f:
            f.write(text)
    else:
        path.write_bytes(text.encode())
    chunks = list(CriteoTsvSamples(path, "dense_x", 13, TABLES).chunks(128))
    assert [c.size for c in chunks] == [128, 128, 128, 116]
    labels, dense, cats = python_twin(lines)
    np.testing.assert_array_equal(np.concatenate([c.labels for c in chunks]), labels)
    np.testing.assert_allclose(np.concatenate([c.dense["dense_x"] for c in chunks]), dense, rtol=1e-6)
    for t in range(26):
        np.testing.assert_array_equal(np.concatenate([c.sparse.indices[t] for c in chunks]), cats[t])


@pytest.mark.parametrize("bad,message", [
    ("2", r"d.tsv:3: the label"),
    ("1\t" + "\t".join(["x"] + [""] * 12) + "\t" + "\t".join([""] * 26), r"d.tsv:3: field 2 \(I1\) is not an integer"),
    ("1\t" + "\t".join([""] * 13) + "\t" + "\t".join(["zz"] + [""] * 25), r"d.tsv:3: field 15 \(C1\) is not a hex"),
    ("1\t" + "\t".join([""] * 13) + "\t" + "\t".join(["1" * 17] + [""] * 25), r"d.tsv:3: field 15 \(C1\)"),
    ("1\t" + "\t".join([""] * 13) + "\t" + "\t".join([""] * 27), r"d.tsv:3: .*got more"),
    ("1\t2\t3", r"d.tsv:3: expected 40 tab-separated fields, got 3"),
])
def test_parser_errors_name_line_and_field(tmp_path, bad, message):
    good = random_lines(2, np.random.default_rng(1))
    (tmp_path / "d.tsv").write_text("\n".join(good + [bad] + good) + "\n")
    with pytest.raises(InvalidInputError, match=message):
        list(CriteoTsvSamples(tmp_path / "d.tsv", "dense_x", 13, TABLES).chunks(2))


def test_criteo_needs_matching_model(tmp_path):
    with pytest.raises(InvalidInputError, match="13 dense and 26 categorical"):
        CriteoTsvSamples(tmp_path / "d.tsv", "dense_x", 13, TABLES[:5])
