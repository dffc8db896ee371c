"""Access-trace extractor: profiles of bounded samples of every kind of source equal the row and
pair counts computed directly with NumPy on the same samples."""
from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from updlrm import InvalidInputError
from updlrm.datasets import ArraySamples, CriteoReader
from updlrm.datasets.synthetic import criteo_synthetic
from updlrm.datasets.traces import SparseTrace, extract_profile

ROWS = [40, 300, 7]
EXACT = {"pair_rows": 1024, "max_pairs": 100_000, "min_pair_count": 1}


def synthetic_source(n: int = 3_000) -> ArraySamples:
    chunk = criteo_synthetic(n, rows=ROWS, pooling=(0, 6), top1_share=0.4, seed=11)
    return ArraySamples(chunk.dense, chunk.sparse, chunk.labels)


def bags_of(source: ArraySamples, t: int, n: int) -> list[np.ndarray]:
    idx, off = source.sparse.indices[t], source.sparse.offsets[t]
    return [idx[off[b]:off[b + 1]] for b in range(n)]


def direct_pairs(bags: list[np.ndarray]) -> Counter:
    """Bags holding both rows of each pair (a bag counts once)."""
    pairs: Counter = Counter()
    for bag in bags:
        pairs.update(itertools.combinations(sorted(set(bag.tolist())), 2))
    return pairs


@pytest.mark.parametrize("max_samples,batch_size", [(None, 512), (1_234, 500), (1_000, 1_000)])
def test_profile_equals_direct_counts(max_samples, batch_size):
    source = synthetic_source()
    n = source.num_samples if max_samples is None else max_samples
    profile = extract_profile(source, ROWS, batch_size=batch_size, max_samples=max_samples, **EXACT)
    assert profile.num_batches == -(-n // batch_size)
    for t, rows in enumerate(ROWS):
        bags = bags_of(source, t, n)
        flat = np.concatenate(bags)
        prof = profile[t]
        assert (prof.bags, prof.lookups) == (n, flat.size)
        np.testing.assert_array_equal(prof.counts, np.bincount(flat, minlength=rows))
        expected = direct_pairs(bags)
        got = {tuple(sorted(p)): int(c) for p, c in zip(prof.pairs.tolist(), prof.pair_counts)}
        assert got == dict(expected)
        (a, b), most = expected.most_common(1)[0]   # the most frequent pair, checked by name
        assert got[(a, b)] == most == sum(1 for bag in bags if a in bag and b in bag)


def test_sources_of_every_kind_give_the_same_profile():
    source = synthetic_source(1_000)
    batches = [source.sparse.slice(s, min(s + 300, 1_000)) for s in range(0, 1_000, 300)]
    reference = extract_profile(source, ROWS, batch_size=300, max_samples=800, **EXACT)
    for other in (batches, iter(batches), (b for b in batches)):
        prof = extract_profile(other, ROWS, max_samples=800, **EXACT)
        for t in range(len(ROWS)):
            np.testing.assert_array_equal(prof[t].counts, reference[t].counts)
            np.testing.assert_array_equal(prof[t].pair_counts, reference[t].pair_counts)
    whole = extract_profile(source.sparse, ROWS)
    assert [t.lookups for t in whole.tables] == [int(o[-1]) for o in source.sparse.offsets]


def test_criteo_file_is_streamed_on_every_pass(tmp_path):
    rng = np.random.default_rng(12)
    rows = [5 + k for k in range(26)]
    ids = rng.integers(0, 50, size=(900, 26))
    lines = ["\t".join(["1"] + ["3"] * 13 + [f"{v:x}" for v in row]) for row in ids]
    (tmp_path / "d.tsv").write_text("\n".join(lines) + "\n")
    reader = CriteoReader(tmp_path / "d.tsv", rows)
    # a tiny exact limit forces the sketch and its second pass over the file
    profile = extract_profile(reader, rows, batch_size=128, max_samples=700, exact_limit=10)
    for t in (0, 20):
        counts = np.bincount(ids[:700, t] % rows[t], minlength=rows[t])
        if profile[t].exact:
            np.testing.assert_array_equal(profile[t].counts, counts)
        else:
            top = profile[t].hot_rows[0]
            assert counts[top] == counts.max() and profile[t].hot_counts[0] >= counts.max()
        assert profile[t].lookups == 700


def test_trace_rejects_what_it_cannot_read():
    with pytest.raises(InvalidInputError, match="iterable of SparseBatch"):
        SparseTrace(42)
    with pytest.raises(InvalidInputError, match="holds SparseBatch"):
        list(SparseTrace([np.zeros(3)]))
    with pytest.raises(InvalidInputError, match="max_samples"):
        SparseTrace([], max_samples=0)
