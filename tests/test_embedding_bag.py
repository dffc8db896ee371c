"""The CPU embedding-bag kernel against a NumPy twin and torch.nn.functional.embedding_bag."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import updlrm.embedding_bag as eb
from updlrm import _embedding_bag as kernel
from updlrm.embedding_bag import allocate_outputs, embedding_bag, embedding_bags
from updlrm.errors import InvalidInputError
from updlrm.sparse import SparseBatch
from updlrm.tables import EmbeddingTable, Pooling

from reference import reference_embedding_bag

MODES = ["sum", "mean", "max"]
TOL = dict(rtol=1e-5, atol=1e-5)


@pytest.fixture(params=kernel.ISAS)
def isa(request):
    """Run a test on every kernel code path (AVX-512, AVX2, portable C) the CPU supports."""
    active = kernel.select_isa(request.param)
    try:
        if active != request.param:
            pytest.skip(f"CPU lacks {request.param}")
        yield request.param
    finally:
        kernel.select_isa(kernel.ISAS[-1])


def random_bags(rng, n_bags, rows, lengths=(0, 1, 2, 5, 17, 55)):
    """Offsets (B+1) and indices with bag lengths drawn from ``lengths`` (empty and 50+ included)."""
    sizes = rng.choice(lengths, size=n_bags)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    indices = rng.integers(0, rows, size=int(offsets[-1]))
    return indices, offsets


def torch_bag(weight, indices, offsets_bplus1, weights, mode):
    """torch's answer, fed the B+1 offsets with include_last_offset=True."""
    with torch.inference_mode():
        return torch.nn.functional.embedding_bag(
            torch.from_numpy(np.asarray(indices, dtype=np.int64)),
            torch.from_numpy(np.asarray(weight, dtype=np.float32)),
            torch.from_numpy(np.asarray(offsets_bplus1, dtype=np.int64)),
            mode=mode,
            per_sample_weights=None if weights is None else torch.from_numpy(weights),
            include_last_offset=True,
        ).numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("wdtype", [np.float32, np.float16])
@pytest.mark.parametrize("idtype", [np.int32, np.int64])
@pytest.mark.parametrize("include_last_offset", [False, True])
def test_single_table_matches_reference_and_torch(isa, mode, weighted, wdtype, idtype, include_last_offset):
    rng = np.random.default_rng(7)
    rows, dim, n_bags = 300, 37, 40
    weight = rng.standard_normal((rows, dim)).astype(wdtype)
    indices, offsets = random_bags(rng, n_bags, rows)
    offsets[5:7] = offsets[5]  # two empty bags in a row
    offsets[7:] = np.maximum(offsets[7:], offsets[6])
    indices = indices[: offsets[-1]]
    psw = rng.uniform(-2, 2, size=indices.size).astype(np.float32) if weighted else None
    given = offsets if include_last_offset else offsets[:-1]

    got = embedding_bag(weight, indices.astype(idtype), given.astype(idtype), psw, mode=mode,
                        include_last_offset=include_last_offset)

    assert got.dtype == np.float32 and got.shape == (n_bags, dim) and got.flags.c_contiguous
    np.testing.assert_allclose(got, reference_embedding_bag(weight, indices, offsets, psw, mode), **TOL)
    if not weighted or mode == "sum":  # torch takes per-sample weights only with mode="sum"
        np.testing.assert_allclose(got, torch_bag(weight, indices, offsets, psw, mode), **TOL)


@pytest.mark.parametrize("mode", MODES)
def test_empty_bags_are_zero_in_every_mode(mode):
    weight = np.full((4, 8), -3.0, dtype=np.float32)  # max of an empty bag must not be -inf or -3
    got = embedding_bag(weight, [1, 2], [0, 0, 0, 2, 2], mode=mode)
    expected = np.zeros((5, 8), np.float32)
    expected[2] = {"sum": -6.0, "mean": -3.0, "max": -3.0}[mode]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(got, torch_bag(weight, [1, 2], [0, 0, 0, 2, 2, 2], None, mode))


def test_batch_of_one_and_all_empty():
    rng = np.random.default_rng(1)
    weight = rng.standard_normal((50, 16)).astype(np.float32)
    idx = rng.integers(0, 50, 60)
    np.testing.assert_allclose(embedding_bag(weight, idx, [0]), weight[idx].sum(0, keepdims=True), **TOL)
    np.testing.assert_array_equal(embedding_bag(weight, [], [0, 0, 0]), np.zeros((3, 16), np.float32))


@pytest.mark.parametrize("dim", [1, 3, 8, 64, 130])
def test_fp16_rows_of_every_width(isa, dim):
    """Widths around the 8-lane conversion and the 64-element half chunk."""
    rng = np.random.default_rng(dim)
    weight = rng.standard_normal((40, dim)).astype(np.float16)
    indices, offsets = random_bags(rng, 20, 40)
    for mode in MODES:
        got = embedding_bag(weight, indices, offsets, mode=mode, include_last_offset=True)
        np.testing.assert_allclose(got, reference_embedding_bag(weight, indices, offsets, None, mode), **TOL)


def make_tables(rng, dims, rows=(50, 400, 7, 1000, 64, 90)):
    modes = list(Pooling)
    return [
        EmbeddingTable(f"t{i}", rng.standard_normal((rows[i % len(rows)], d)).astype(
            np.float16 if i % 3 == 2 else np.float32), pooling=modes[i % 3], weighted=i % 2 == 1)
        for i, d in enumerate(dims)
    ]


def make_batch(rng, tables, n_bags, idtype=np.int64):
    idx, off, w = [], [], []
    for t in tables:
        i, o = random_bags(rng, n_bags, t.rows)
        idx.append(i.astype(idtype))
        off.append(o[:-1].astype(idtype))
        w.append(rng.uniform(0, 1, i.size).astype(np.float32) if t.weighted else None)
    return SparseBatch.from_jagged(idx, off, w)


def expected(tables, batch):
    return [reference_embedding_bag(t.weight, batch.indices[k], batch.offsets[k], batch.weights[k], t.pooling.value)
            for k, t in enumerate(tables)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("idtype", [np.int32, np.int64])
def test_many_tables_different_dims(isa, threads, idtype, monkeypatch):
    # Force the OpenMP path even for this small batch, so threads=2 really runs two threads.
    monkeypatch.setattr(eb, "SERIAL_BELOW_LOOKUPS", 0)
    rng = np.random.default_rng(3)
    tables = make_tables(rng, [4, 16, 1, 64, 33, 8, 128, 2])
    batch = make_batch(rng, tables, 257, idtype)
    got = embedding_bags(tables, batch, threads=threads)
    assert [g.shape for g in got] == [(257, t.dim) for t in tables]
    for g, e in zip(got, expected(tables, batch)):
        assert g.flags.c_contiguous and g.dtype == np.float32
        np.testing.assert_allclose(g, e, **TOL)


def test_outputs_share_one_buffer_and_can_be_reused():
    rng = np.random.default_rng(4)
    tables = make_tables(rng, [8, 3, 16])
    batch = make_batch(rng, tables, 10)
    out = allocate_outputs(10, [8, 3, 16])
    assert out[1].base is out[0].base and out[2].base is out[0].base
    assert not np.shares_memory(out[0], out[1]) and not np.shares_memory(out[1], out[2])
    out[1][:] = np.nan
    got = embedding_bags(tables, batch, out=out)
    assert all(g is o for g, o in zip(got, out))
    for g, e in zip(got, expected(tables, batch)):
        np.testing.assert_allclose(g, e, **TOL)


def test_outputs_come_back_only_once_every_view_is_dropped():
    """The previous call's buffer is reused only when none of its arrays is alive: results a
    caller keeps never change under it."""
    rng = np.random.default_rng(5)
    tables = make_tables(rng, [8, 4])
    first_batch, second_batch = make_batch(rng, tables, 12), make_batch(rng, tables, 12)
    first = embedding_bags(tables, first_batch)
    kept = [a.copy() for a in first]
    second = embedding_bags(tables, second_batch)
    assert not any(np.shares_memory(a, b) for a in first for b in second)
    for a, k in zip(first, kept):
        np.testing.assert_array_equal(a, k)
    address = second[0].ctypes.data
    del second
    again = embedding_bags(tables, first_batch)
    assert again[0].ctypes.data == address       # the dropped buffer came back
    one_view = again[1]
    del again
    last = embedding_bags(tables, second_batch)   # one array of the previous call is still alive
    assert not np.shares_memory(last[0], one_view)
    for g, e in zip(last, expected(tables, second_batch)):
        np.testing.assert_allclose(g, e, **TOL)


def test_prepared_tables_validate_a_batch_once_and_pool_every_table(monkeypatch):
    """PreparedTables (what the CPU backend keeps) validates a batch only when it was not yet
    validated for tables like these, and pools into equal-width outputs that do not overlap."""
    rng = np.random.default_rng(8)
    tables = make_tables(rng, [16, 16, 16])
    prepared = eb.PreparedTables(tables)
    validated = []
    validate = SparseBatch.validate
    monkeypatch.setattr(SparseBatch, "validate", lambda self, tabs: validated.append(self) or validate(self, tabs))
    batch = make_batch(rng, tables, 9)
    for _ in range(2):
        got = prepared.pool(batch)
        assert not np.shares_memory(got[0], got[1]) and not np.shares_memory(got[1], got[2])
        for g, e in zip(got, expected(tables, batch)):
            np.testing.assert_allclose(g, e, **TOL)
    assert validated == [batch]
    small = eb.PreparedTables([EmbeddingTable(t.name, t.weight[:3], t.pooling, t.weighted) for t in tables])
    with pytest.raises(InvalidInputError, match="out of range"):
        small.pool(batch)  # validated for other row counts: checked again


def test_one_table_large_batch_is_split_across_threads(monkeypatch):
    monkeypatch.setattr(eb, "SERIAL_BELOW_LOOKUPS", 0)
    rng = np.random.default_rng(5)
    tables = make_tables(rng, [24])
    batch = make_batch(rng, tables, 3000)  # ~40k lookups: many work items for one table
    (got,) = embedding_bags(tables, batch, threads=2)
    np.testing.assert_allclose(got, expected(tables, batch)[0], **TOL)


def test_unvalidated_bad_batch_is_rejected_before_the_kernel():
    table = EmbeddingTable("t", np.zeros((10, 4), np.float32))
    batch = SparseBatch([np.array([3, 10])], [np.array([0, 2])])
    with pytest.raises(InvalidInputError, match="index 10"):
        embedding_bags([table], batch)


def test_prefetch_distance_does_not_change_results():
    rng = np.random.default_rng(6)
    weight = rng.standard_normal((500, 16)).astype(np.float32)
    indices, offsets = random_bags(rng, 100, 500)
    base = embedding_bag(weight, indices, offsets, include_last_offset=True)
    old = kernel.prefetch_distance()
    try:
        for distance in (0, 1, 64):
            kernel.set_prefetch_distance(distance)
            np.testing.assert_array_equal(embedding_bag(weight, indices, offsets, include_last_offset=True), base)
    finally:
        kernel.set_prefetch_distance(old)


@pytest.mark.parametrize("dim", [8, 37, 64, 100])
def test_empty_bags_at_work_item_edges(isa, dim, monkeypatch):
    """Tiny work items, so items start and end on empty bags, in runs of empties and at the ends."""
    monkeypatch.setattr(eb, "SERIAL_BELOW_LOOKUPS", 0)
    monkeypatch.setattr(eb, "ITEM_LOOKUPS", 3)
    rng = np.random.default_rng(dim)
    sizes = np.array([0, 0, 2, 1, 0, 3, 0, 0, 0, 1, 4, 0, 1, 1, 0, 0])
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    weight = rng.standard_normal((20, dim)).astype(np.float32)
    indices = rng.integers(0, 20, offsets[-1])
    for mode in MODES:
        got = embedding_bag(weight, indices, offsets, mode=mode, include_last_offset=True, threads=2)
        np.testing.assert_allclose(got, reference_embedding_bag(weight, indices, offsets, None, mode), **TOL)


# ---- helper threads (kernels/work_pool.c) ---------------------------------------------------

@pytest.fixture
def many_items(monkeypatch):
    """Every batch takes the helper path and splits into many small work items."""
    monkeypatch.setattr(eb, "SERIAL_BELOW_LOOKUPS", 0)
    monkeypatch.setattr(eb, "ITEM_LOOKUPS", 16)
    rng = np.random.default_rng(11)
    tables = make_tables(rng, [4, 16, 1, 64, 33, 128])
    return tables, make_batch(rng, tables, 300)


def test_results_identical_for_every_thread_count(many_items):
    tables, batch = many_items
    base = embedding_bags(tables, batch, threads=1)
    for g, e in zip(base, expected(tables, batch)):
        np.testing.assert_allclose(g, e, **TOL)
    for threads in (2, 3, 4, 8):
        for _ in range(3):  # helpers already running from the previous call, too
            got = embedding_bags(tables, batch, threads=threads)
            for g, b in zip(got, base):
                np.testing.assert_array_equal(g, b)


def test_caller_finishes_alone_when_helpers_do_not_run(many_items):
    """Helpers that wake for a job but never claim an item (descheduled) cannot stall it."""
    tables, batch = many_items
    embedding_bags(tables, batch, threads=2)  # make sure a helper exists and is parked
    assert kernel.helper_threads() >= 1
    kernel.hold_helpers(True)
    try:
        got = embedding_bags(tables, batch, threads=2)
        caller_items, items = kernel.last_call_split()
    finally:
        kernel.hold_helpers(False)
    assert items > 100 and caller_items == items
    for g, e in zip(got, expected(tables, batch)):
        np.testing.assert_allclose(g, e, **TOL)
    # Released late, the helper finds that job gone and serves the next one normally.
    again = embedding_bags(tables, batch, threads=2)
    for g, b in zip(again, got):
        np.testing.assert_array_equal(g, b)


def test_concurrent_calls_from_two_threads(many_items):
    """A call that finds the helpers busy with another thread's job pools on its own thread."""
    import threading

    tables, batch = many_items
    want = embedding_bags(tables, batch, threads=1)
    failures = []

    def worker():
        for _ in range(20):
            got = embedding_bags(tables, batch, threads=2)
            if not all(np.array_equal(g, w) for g, w in zip(got, want)):
                failures.append(got)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


def test_pooling_in_a_forked_child(many_items):
    """The child of fork() has no helper threads; pooling there starts new ones and is right."""
    import os

    tables, batch = many_items
    want = embedding_bags(tables, batch, threads=2)  # the parent has helpers now
    assert kernel.helper_threads() >= 1
    pid = os.fork()
    if pid == 0:  # child: report through the exit status only
        status = 1
        try:
            before = kernel.helper_threads()
            got = embedding_bags(tables, batch, threads=2)
            same = all(np.array_equal(g, w) for g, w in zip(got, want))
            status = 0 if before == 0 and same and kernel.helper_threads() >= 1 else 2
        finally:
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's pool is unaffected.
    for g, w in zip(embedding_bags(tables, batch, threads=2), want):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("dim", [16, 37, 64, 128])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_streaming_stores_give_the_same_outputs(isa, dim, aligned, weighted):
    """Short bags in large work items take the non-temporal store path (whole-vector rows on
    aligned addresses only; weighted and unweighted tables have their own loops); results must
    equal the normal stores bit for bit."""
    rng = np.random.default_rng(dim)
    tables = [EmbeddingTable(f"t{m}", rng.standard_normal((500, dim)).astype(np.float32), pooling=p,
                             weighted=weighted)
              for m, p in enumerate(Pooling)]
    n_bags = 4000  # work items of >= 64 KiB output
    sizes = rng.choice([0, 1, 1, 1, 2], size=n_bags)
    offsets = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    weights = [rng.random(sizes.sum(), dtype=np.float32) + 0.5 for _ in tables] if weighted else None
    batch = SparseBatch.from_jagged([rng.integers(0, 500, sizes.sum()) for _ in tables], [offsets] * 3, weights)

    def run(stream):
        raw = np.zeros(3 * n_bags * dim + 64, np.float32)
        start = (-raw.ctypes.data % 64) // 4 + (0 if aligned else 1)
        out = [raw[start + k * n_bags * dim:start + (k + 1) * n_bags * dim].reshape(n_bags, dim) for k in range(3)]
        old = kernel.stream_max_pooling()
        kernel.set_stream_max_pooling(stream)
        try:
            return embedding_bags(tables, batch, out=out, threads=1)
        finally:
            kernel.set_stream_max_pooling(old)

    streamed, plain = run(1.5), run(0)
    for s, p, e in zip(streamed, plain, expected(tables, batch)):
        np.testing.assert_array_equal(s, p)
        np.testing.assert_allclose(s, e, **TOL)
