"""Criteo TSV reader against a plain-Python twin: preprocessing, both id mappings, malformed lines
(skipped and counted per reason, or an error naming file:line and field), gz/plain, LF/CRLF."""
from __future__ import annotations

import gzip
import logging
import re

import numpy as np
import pytest

from updlrm import EmbeddingTable, InvalidInputError
from updlrm.datasets import CriteoReader, CriteoTsvSamples

ROWS = [3 + 7 * k for k in range(26)]
TABLES = [EmbeddingTable(f"t{k}", np.zeros((n, 2), np.float32)) for k, n in enumerate(ROWS)]
MASK64 = (1 << 64) - 1


def random_line(rng: np.random.Generator) -> str:
    ints = ["" if rng.random() < 0.2 else str(int(rng.integers(-3, 10**6))) for _ in range(13)]
    cats = ["" if rng.random() < 0.2 else f"{int(rng.integers(0, 2**63)):x}" for _ in range(26)]
    return "\t".join([str(int(rng.integers(0, 2)))] + ints + cats)


def random_lines(n: int, rng: np.random.Generator) -> list[str]:
    return [random_line(rng) for _ in range(n)]


def with_field(line: str, k: int, value: str) -> str:
    f = line.split("\t")
    f[k] = value
    return "\t".join(f)


def malformed_variants(line: str) -> list[str]:
    """One good line made bad in every way the reader must catch (and a few edge values that
    are still good)."""
    f = line.split("\t")
    return [
        "\t".join(f[:-1]),                         # a field missing: 39
        "\t".join(f[:20] + f[21:]),                # one missing in the middle (would shift columns)
        line + "\t",                               # 41 fields
        "",                                        # empty line
        with_field(line, 0, "2"), with_field(line, 0, "01"), with_field(line, 0, "-1"),
        with_field(line, 1, "1.5"), with_field(line, 5, "x"), with_field(line, 13, "-"),
        with_field(line, 2, "1" * 19), with_field(line, 3, " 7"),
        with_field(line, 14, "zz"), with_field(line, 20, "1" * 17), with_field(line, 39, "0x1f"),
        with_field(line, 1, "-0"), with_field(line, 2, "9" * 18), with_field(line, 14, "F" * 16),
        with_field(line, 15, "aBc"),
    ]


def mix64(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK64
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def python_twin(lines: list[str], rows: list[int], hashing: str = "modulo"):
    """(labels, dense, cats [26, n], malformed counts, first bad line (1-based) per reason)."""
    labels, dense, cats = [], [], []
    counts = {"field_count": 0, "integer": 0, "hex": 0, "label": 0}
    first: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        f = line.split("\t")
        if len(f) != 40:
            reason = "field_count"
        elif f[0] not in ("", "0", "1"):
            reason = "label"
        else:
            bad = [k for k in range(1, 40) if not re.fullmatch(
                r"(-?\d{1,18})?" if k <= 13 else r"[0-9a-fA-F]{0,16}", f[k])]
            reason = None if not bad else ("integer" if bad[0] <= 13 else "hex")
        if reason is not None:
            counts[reason] += 1
            first.setdefault(reason, number)
            continue
        labels.append(float(f[0] or 0))
        dense.append([np.log1p(max(int(v), 0)) if v else 0.0 for v in f[1:14]])
        ids = [int(v, 16) if v else 0 for v in f[14:]]
        cats.append([(mix64(i) if hashing == "mix64" else i) % n for i, n in zip(ids, rows)])
    return (np.array(labels, np.float32), np.array(dense, np.float32).reshape(-1, 13),
            np.array(cats, np.int64).reshape(-1, 26).T, counts, first)


def write(path, lines: list[str], newline: str, *, final_newline: bool) -> None:
    text = newline.join(lines) + (newline if final_newline else "")
    if path.suffix == ".gz":
        with gzip.open(path, "wb") as f:
            f.write(text.encode())
    else:
        path.write_bytes(text.encode())


def read_all(reader, batch_size: int):
    chunks = list(reader.chunks(batch_size))
    assert all(0 < c.size <= batch_size for c in chunks)
    return (np.concatenate([c.labels for c in chunks]),
            np.concatenate([c.dense[reader.dense_name] for c in chunks]),
            [np.concatenate([c.sparse.indices[t] for c in chunks]) for t in range(26)])


def assert_matches_twin(reader, lines, batch_size, hashing="modulo"):
    labels, dense, cats = read_all(reader, batch_size)
    t_labels, t_dense, t_cats, t_counts, _ = python_twin(lines, ROWS, hashing)
    np.testing.assert_array_equal(labels, t_labels)
    np.testing.assert_allclose(dense, t_dense, rtol=1e-6)
    for t in range(26):
        np.testing.assert_array_equal(cats[t], t_cats[t])
    assert reader.malformed == t_counts
    assert reader.skipped == sum(t_counts.values())
    assert reader.lines == len(lines)


@pytest.mark.parametrize("newline,name,final_newline", [
    ("\n", "d.tsv", False), ("\r\n", "d.tsv.gz", True), ("\r\n", "d.txt", True), ("\n", "d.tsv.gz", False)])
def test_good_lines_match_python_twin(tmp_path, newline, name, final_newline):
    lines = random_lines(500, np.random.default_rng(0))
    write(tmp_path / name, lines, newline, final_newline=final_newline)
    reader = CriteoTsvSamples(tmp_path / name, "dense_x", 13, TABLES)
    assert [c.size for c in reader.chunks(128)] == [128, 128, 128, 116]
    assert_matches_twin(reader, lines, 128)


@pytest.mark.parametrize("newline,name", [("\n", "d.tsv"), ("\r\n", "d.tsv.gz")])
@pytest.mark.parametrize("hashing", ["modulo", "mix64"])
def test_malformed_lines_are_skipped_and_counted(tmp_path, newline, name, hashing, caplog):
    rng = np.random.default_rng(2)
    lines = random_lines(60, rng)
    for v in malformed_variants(random_line(rng)):
        lines.insert(int(rng.integers(0, len(lines) + 1)), v)
    write(tmp_path / name, lines, newline, final_newline=True)
    reader = CriteoReader(tmp_path / name, ROWS, hashing=hashing)
    with caplog.at_level(logging.WARNING, logger="updlrm.datasets.criteo"):
        assert_matches_twin(reader, lines, 16, hashing)
    # the variants: 4 field counts, 3 labels, 5 integers, 3 hex ids bad; 4 edge values still good
    assert reader.malformed == {"field_count": 4, "integer": 5, "hex": 3, "label": 3}
    _, _, _, _, first = python_twin(lines, ROWS)
    [record] = [r for r in caplog.records if "malformed" in r.getMessage()]
    assert f"skipped 15 malformed line(s) of {len(lines)}" in record.getMessage()
    assert f"hex 3 (first at line {first['hex']})" in record.getMessage()


def test_a_second_pass_counts_afresh(tmp_path):
    lines = random_lines(10, np.random.default_rng(3))
    lines[4] = lines[4] + "\tx"
    write(tmp_path / "d.tsv", lines, "\n", final_newline=True)
    reader = CriteoReader(tmp_path / "d.tsv", ROWS)
    for _ in range(2):
        assert sum(c.size for c in reader.chunks(3)) == 9
        assert reader.malformed["field_count"] == 1 and reader.lines == 10


def test_a_chunk_of_only_bad_lines_is_not_yielded(tmp_path):
    good = random_lines(4, np.random.default_rng(4))
    write(tmp_path / "d.tsv", good[:2] + ["x", "y"] + good[2:], "\n", final_newline=True)
    assert [c.size for c in CriteoReader(tmp_path / "d.tsv", ROWS).chunks(2)] == [2, 2]


def test_mix64_spreads_sequential_ids(tmp_path):
    # ids 0, 16, 32, ... all fall on row 0 of a 16-row table modulo; mixed they spread out
    line = random_line(np.random.default_rng(5))
    lines = [with_field(line, 14, f"{16 * i:x}") for i in range(200)]
    write(tmp_path / "d.tsv", lines, "\n", final_newline=True)
    rows = [16] + ROWS[1:]
    modulo = np.concatenate([c.sparse.indices[0] for c in CriteoReader(tmp_path / "d.tsv", rows).chunks(64)])
    mixed = np.concatenate([c.sparse.indices[0] for c in
                            CriteoReader(tmp_path / "d.tsv", rows, hashing="mix64").chunks(64)])
    assert set(modulo) == {0}
    np.testing.assert_array_equal(mixed, [mix64(16 * i) % 16 for i in range(200)])
    assert len(set(mixed)) == 16


GOOD_FIELDS = ["1"] + [""] * 39


@pytest.mark.parametrize("bad,message", [
    (with_field("\t".join(GOOD_FIELDS), 0, "2"), r"d.tsv:3: the label"),
    (with_field("\t".join(GOOD_FIELDS), 1, "x"), r"d.tsv:3: field 2 \(I1\) is not an integer"),
    (with_field("\t".join(GOOD_FIELDS), 13, "1" * 19), r"d.tsv:3: field 14 \(I13\) is not an integer"),
    (with_field("\t".join(GOOD_FIELDS), 14, "zz"), r"d.tsv:3: field 15 \(C1\) is not a hex"),
    (with_field("\t".join(GOOD_FIELDS), 39, "1" * 17), r"d.tsv:3: field 40 \(C26\)"),
    ("\t".join(GOOD_FIELDS + [""]), r"d.tsv:3: expected 40 tab-separated fields, got 41"),
    ("1\t2\t3", r"d.tsv:3: expected 40 tab-separated fields, got 3"),
])
def test_strict_errors_name_line_and_field(tmp_path, bad, message):
    good = random_lines(2, np.random.default_rng(1))
    (tmp_path / "d.tsv").write_text("\n".join(good + [bad] + good) + "\n")
    with pytest.raises(InvalidInputError, match=message):
        list(CriteoTsvSamples(tmp_path / "d.tsv", "dense_x", 13, TABLES).chunks(2))
    with pytest.raises(InvalidInputError, match=message):
        list(CriteoReader(tmp_path / "d.tsv", ROWS, strict=True).chunks(2))
    # counting mode reads past it
    assert sum(c.size for c in CriteoReader(tmp_path / "d.tsv", ROWS).chunks(2)) == 4


def test_strict_error_line_number_counts_across_chunks(tmp_path):
    lines = random_lines(9, np.random.default_rng(6))
    lines[7] = with_field(lines[7], 20, "g")
    write(tmp_path / "d.tsv.gz", lines, "\r\n", final_newline=False)
    with pytest.raises(InvalidInputError, match=r"d.tsv.gz:8: field 21 \(C7\)"):
        list(CriteoReader(tmp_path / "d.tsv.gz", ROWS, strict=True).chunks(3))


def test_criteo_needs_matching_model(tmp_path):
    with pytest.raises(InvalidInputError, match="13 dense and 26 categorical"):
        CriteoTsvSamples(tmp_path / "d.tsv", "dense_x", 13, TABLES[:5])


@pytest.mark.parametrize("kwargs,message", [
    ({"rows": ROWS[:3]}, "26 categorical"), ({"rows": [0] + ROWS[1:]}, "at least one row"),
    ({"rows": ROWS, "hashing": "crc"}, "hashing must be one of")])
def test_reader_rejects_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(InvalidInputError, match=message):
        CriteoReader(tmp_path / "d.tsv", **kwargs)
