"""CpuBackend (EmbeddingBackend protocol) and the huge-page placement of its tables."""
from __future__ import annotations

import mmap

import numpy as np
import pytest

import updlrm.hugepages as hp
from updlrm.cpu_backend import CpuBackend
from updlrm.errors import InvalidInputError, UpdlrmError
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable, Pooling

from reference import reference_embedding_bag

THP = hp.thp_mode() in ("always", "madvise")


def small_model(rng):
    tables = [
        EmbeddingTable("a", rng.standard_normal((100, 16)).astype(np.float32), Pooling.SUM),
        EmbeddingTable("b", rng.standard_normal((30, 8)).astype(np.float16), Pooling.MAX, weighted=True),
        EmbeddingTable("c", rng.standard_normal((7, 4)).astype(np.float32), Pooling.MEAN),
    ]
    batch = SparseBatch.from_fixed(
        [rng.integers(0, t.rows, (64, 5)) for t in tables],
        weights=[None, rng.uniform(0, 1, (64, 5)), None],
    )
    return tables, batch


@pytest.mark.parametrize("threads", [1, 2])
def test_lookup_matches_reference_and_counts(threads):
    rng = np.random.default_rng(0)
    tables, batch = small_model(rng)
    backend = CpuBackend(threads=threads)
    assert backend.name == "cpu"
    backend.load(tables)
    for _ in range(2):
        out = backend.lookup(batch)
    for k, (t, got) in enumerate(zip(tables, out)):
        want = reference_embedding_bag(t.weight, batch.indices[k], batch.offsets[k], batch.weights[k], t.pooling.value)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    stats = backend.stats()
    assert stats.backend == "cpu" and stats.batches == 2 and stats.lookups == 2 * 3 * 64 * 5
    assert stats.measured_s["lookup"] > 0 and stats.modelled_s == {}
    assert stats.extra["threads"] == threads and stats.extra["huge_page_copies"] == []


def test_lookup_validates_an_unvalidated_batch():
    rng = np.random.default_rng(1)
    tables, _ = small_model(rng)
    backend = CpuBackend()
    backend.load(tables)
    bad = SparseBatch.from_fixed([np.full((2, 1), 100), np.zeros((2, 1), int), np.zeros((2, 1), int)],
                                 weights=[None, np.ones((2, 1)), None])
    with pytest.raises(InvalidInputError, match=r"table 'a' \(#0\): bag 0 has index 100"):
        backend.lookup(bad)


def test_lookup_before_load_and_bad_options():
    with pytest.raises(UpdlrmError, match="load"):
        CpuBackend().lookup(SparseBatch([], []))
    with pytest.raises(ValueError, match="hugepages"):
        CpuBackend(hugepages="yes")
    with pytest.raises(ValueError, match="threads"):
        CpuBackend(threads=0)


def test_copy_to_huge_pages_is_an_aligned_read_only_copy():
    src = np.random.default_rng(2).standard_normal((1 << 15, 64)).astype(np.float32)  # 8 MiB
    copy = hp.copy_to_huge_pages(src)
    np.testing.assert_array_equal(copy, src)
    assert not np.shares_memory(copy, src) and not copy.flags.writeable and copy.flags.c_contiguous
    assert copy.__array_interface__["data"][0] % hp.HUGE_PAGE_BYTES == 0
    if THP:
        assert hp.residency(copy).huge_bytes >= src.nbytes


@pytest.mark.skipif(not THP, reason="kernel has THP disabled")
def test_auto_policy_copies_large_tables_that_are_not_on_huge_pages(monkeypatch):
    monkeypatch.setattr(hp, "AUTO_MIN_BYTES", 4 << 20)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((1 << 14, 128)).astype(np.float32)  # 8 MiB
    # Memory that certainly has no huge pages, like a buffer some other library allocated.
    mapping = mmap.mmap(-1, data.nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    mapping.madvise(mmap.MADV_NOHUGEPAGE)
    foreign = np.frombuffer(mapping, np.float32).reshape(data.shape)
    foreign[:] = data
    tables = [EmbeddingTable("small", data[:100].copy()), EmbeddingTable("foreign", foreign)]
    backend = CpuBackend(hugepages="auto")
    backend.load(tables)
    assert backend.stats().extra["huge_page_copies"] == ["foreign"]
    assert backend.tables[0] is tables[0]
    assert hp.residency(backend.tables[1].weight).huge_bytes >= foreign.nbytes
    batch = SparseBatch.from_fixed([np.zeros((3, 2), int), np.arange(6).reshape(3, 2) * 1000])
    np.testing.assert_array_equal(backend.lookup(batch)[1], foreign[[0, 2000, 4000]] + foreign[[1000, 3000, 5000]])
    off = CpuBackend(hugepages=False)
    off.load(tables)
    assert off.tables[1] is tables[1]


def test_memmapped_table_is_not_copied_and_stays_mostly_unresident(tmp_path, monkeypatch):
    monkeypatch.setattr(hp, "AUTO_MIN_BYTES", 4 << 20)
    rows, dim = 1 << 18, 64  # 64 MiB on disk
    path = tmp_path / "table.bin"
    np.random.default_rng(4).standard_normal((rows, dim)).astype(np.float32).tofile(path)
    weight = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, dim))
    backend = CpuBackend(hugepages="auto")
    backend.load([EmbeddingTable("mm", weight)])
    assert backend.tables[0].weight is weight
    picks = np.array([[5, 100_000], [250_000, 123]])
    out = backend.lookup(SparseBatch.from_fixed([picks]))
    np.testing.assert_allclose(out[0], weight[picks].sum(axis=1), rtol=1e-6)
    where = hp.residency(weight)
    assert where.file_backed
    # The pages touched, not the file: 3 distinct 2 MiB regions even where the page cache maps
    # them as huge pages (large folios), plus fault-around.
    assert where.resident_bytes <= 3 * hp.HUGE_PAGE_BYTES + (1 << 20)
    if THP:
        forced = CpuBackend(hugepages=True)
        forced.load([EmbeddingTable("mm", weight)])
        assert forced.tables[0].weight is not weight
        np.testing.assert_array_equal(forced.tables[0].weight, weight)
