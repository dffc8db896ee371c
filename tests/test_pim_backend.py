"""PIM backend (emulated DPUs) against the CPU backend and PyTorch.

References are independent of the backend: the CPU backend's kernel for pooled values, the same
kernel over |W| (and |w|) for the scale of fp32 reordering errors, bounds derived from the
tables' largest values for integer modes, and PyTorch for whole DLRMs.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import updlrm
from updlrm import InvalidInputError, SparseBatch
from updlrm.cpu_backend import CpuBackend
from updlrm.pim import PimBackend, _emb_pack, _scatter
from updlrm.pim.emb_host import FixedPointOverflowError
from updlrm.pim.partitioner import Level, PlannerConfig, make_plan
from updlrm.pim.plan import Plan, TableRoute
from updlrm.pim.scatter import BatchScatter
from updlrm.pim.profile import AccessProfile, build_profile
from updlrm.datasets.synthetic import random_batch
from updlrm.tables import EmbeddingTable

DIM, NR_DPUS, BATCH = 16, 16, 128
# (rows, pooling, weighted): sum, mean, max, weighted sum, a tiny table
SHAPES = [(6000, "sum", False), (300, "mean", False), (2000, "max", False), (4000, "sum", True), (40, "sum", False)]
# 256 KiB of table region per DPU: the big tables are cut by rows and replicated
SMALL_MRAM = dict(mram_bytes=(8 << 20) + (256 << 10), mram_reserve=8 << 20)
QMAX = {"i8": 127, "i32": (2**31 - 1) // 1024}


def make_tables(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return [EmbeddingTable(f"t{i}", rng.standard_normal((n, DIM)).astype(dtype), pooling=p, weighted=w)
            for i, (n, p, w) in enumerate(SHAPES)]


def config(level, **kw):
    base = dict(nr_dpus=NR_DPUS, level=level, batch_size=BATCH, allow_cpu=False, **SMALL_MRAM)
    base.update(kw)
    return PlannerConfig(**base)


@pytest.fixture(scope="module")
def tables():
    return make_tables()


@pytest.fixture(scope="module")
def profile(tables):
    rng = np.random.default_rng(1)
    return build_profile([random_batch(tables, BATCH, pooling=(1, 20), skewed=True, rng=rng) for _ in range(12)],
                         [t.rows for t in tables])


@pytest.fixture(scope="module")
def cpu(tables):
    backend = CpuBackend(threads=1)
    backend.load(tables)
    return backend


@pytest.fixture(scope="module")
def cpu_abs(tables):
    """Pools |W| with |w|: the scale a reordered fp32 sum's error is measured against."""
    backend = CpuBackend(threads=1)
    backend.load([dataclasses.replace(t, weight=np.abs(t.weight)) for t in tables])
    return backend


@pytest.fixture(scope="module")
def backends(tables, profile):
    made = {}
    yield lambda level, mode="f32": made.setdefault((level, mode), _loaded(tables, profile, level, mode))
    for backend in made.values():
        backend.close()


def _loaded(tables, profile, level, mode):
    backend = PimBackend(value_mode=mode, planner_config=config(level, value_mode="fp32" if mode == "f32" else "int32"),
                         cpu_fallback=False)
    backend.load(tables, profile=profile)
    return backend


def abs_batch(batch):
    return SparseBatch(batch.indices, batch.offsets, [None if w is None else np.abs(w) for w in batch.weights])


def assert_fp32_close(got, want, scale):
    for t, (g, w, s) in enumerate(zip(got, want, scale)):
        assert g.dtype == np.float32 and g.flags.c_contiguous and g.shape == w.shape, t
        err = np.abs(g.astype(np.float64) - w)
        assert np.all(err <= 1e-6 * s + 1e-30), (t, float((err / np.maximum(s, 1e-30)).max()))


def batches(tables, seed):
    rng = np.random.default_rng(seed)
    return [random_batch(tables, BATCH, pooling=(0, 20), skewed=True, rng=rng),
            random_batch(tables, BATCH, pooling=(1, 12), skewed=False, rng=rng, index_dtype=np.int32)]


# ---- fp32 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", [lvl.value for lvl in Level])
def test_fp32_matches_cpu_backend(backends, tables, cpu, cpu_abs, level):
    backend = backends(level)
    assert backend.stats().extra["tables_on_cpu"] == []
    for batch in batches(tables, seed=10):
        got = backend.lookup(batch)
        assert_fp32_close(got, cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    if level == "cache":
        assert backend.stats().extra["cache_hit_rate"] > 0      # cache rows were actually read
        assert backend.plan.tables[0].n_cache > 0


def test_fp32_matches_cpu_backend_with_replicas_split_by_lookups(tables, profile, cpu, cpu_abs):
    backend = PimBackend(planner_config=config("popularity", split_by="lookups"), cpu_fallback=False)
    backend.load(tables, profile=profile)
    assert {tp.split_by for tp in backend.plan.tables} == {"lookups"}
    assert max(int(tp.group_replicas.max()) for tp in backend.plan.tables) > 1    # there is a split
    for batch in batches(tables, seed=12):
        assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    backend.close()


def test_float16_tables(profile):
    tables = make_tables(seed=4, dtype=np.float16)
    backend = PimBackend(planner_config=config("cache"), cpu_fallback=False)
    backend.load(tables, profile=profile)
    cpu, cpu_abs = CpuBackend(threads=1), CpuBackend(threads=1)
    cpu.load(tables)
    cpu_abs.load([dataclasses.replace(t, weight=np.abs(t.weight)) for t in tables])
    batch = batches(tables, seed=11)[0]
    assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    backend.close()


def test_whole_tables_are_copied_without_a_row_map(tables, profile, cpu, cpu_abs):
    # 4 MiB per DPU: every table (sum, mean, max, weighted) fits one tile, replicated by bag ranges
    backend = PimBackend(planner_config=config("popularity", mram_bytes=(8 << 20) + (4 << 20)), cpu_fallback=False)
    backend.load(tables, profile=profile)
    assert sorted(backend._scatter.whole) == list(range(len(tables)))
    assert max(tp.n_groups for tp in backend.plan.tables) == 1 and backend.plan.tables[0].group_replicas[0] > 1
    for batch in batches(tables, seed=13):
        assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
        assert backend._scatter(batch).reads_routed == 0
    backend.close()
    # two replicas of the weighted table on one DPU: one segment, one job for both bag ranges
    plan = backend.plan
    first, second = (plan.tiles[i] for i in plan.tables[3].group_tiles[:2])
    second.mram_offset, second.dpu = int(plan.mram_used()[first.dpu]), first.dpu
    plan.validate()
    shared = PimBackend(plan=plan, cpu_fallback=False)
    shared.load(tables)
    assert 3 in shared._scatter.whole and len(set(shared._segs.tile_seg[shared._scatter.whole[3]].tolist())) < len(shared._scatter.whole[3])
    for batch in batches(tables, seed=14):
        assert_fp32_close(shared.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    shared.close()


# ---- hybrid tables: hot rows on the DPUs, cold rows pooled by the CPU kernel -----------------------

HYBRID = {"t0": 0.05, "t1": 0.3, "t3": 0.1}     # sum, mean, weighted sum (MAX tables are never hybrid)


def test_hybrid_tables_match_cpu_backend(tables, profile, cpu, cpu_abs):
    backend = PimBackend(planner_config=config("cache", hybrid_tables=HYBRID), cpu_fallback=False)
    backend.load(tables, profile=profile)
    plan = backend.plan
    assert [tp.n_host_rows > 0 for tp in plan.tables] == [True, True, False, True, False]
    for batch in batches(tables, seed=12):
        for t in (0, 1, 3):                  # the batch really reads rows of both parts
            r = plan.route(t, batch.indices[t], batch.offsets[t])
            assert 0 < len(r.host_rows) < batch.indices[t].size
        assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    assert backend.stats().modelled_s["cpu_tables"] > 0      # the host part is in the model
    backend.close()


@pytest.mark.parametrize("variant,exporter", [("bag_mean", "dynamo"), ("bag_psw", "dynamo")])
def test_hybrid_plan_through_updlrm_load(dlrm_export, variant, exporter):
    from dlrm_models import sample_inputs
    _, path = dlrm_export(variant, exporter)
    with updlrm.load(path) as ref:
        specs = ref.tables
        sample = [ref.model.batch_from_feeds(sample_inputs(variant, 32, (1, 8), seed=s, exporter=exporter)[1])
                  for s in range(4)]
        prof = build_profile(sample, [t.rows for t in specs])
        cfg = PlannerConfig(nr_dpus=8, level="popularity", batch_size=32, allow_cpu=False,
                            hybrid_tables={t.name: 0.25 for t in specs})
        plan = make_plan(specs, prof, cfg)
        assert all(0 < tp.n_host_rows < tp.spec.rows for tp in plan.tables)
        with updlrm.load(path, backend="pim", plan=plan, cpu_fallback=False) as sess:
            for batch_size, pooling in [(1, (0, 3)), (32, (0, 6)), (8, (30, 40))]:
                _, feeds = sample_inputs(variant, batch_size, pooling, seed=100 + batch_size, exporter=exporter)
                sparse = ref.model.batch_from_feeds(feeds)
                got = sess.backend.lookup(sparse)
                want = ref.backend.lookup(sparse)
                for g, w in zip(got, want):
                    np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6 * float(np.abs(w).max(initial=1.0)))
                np.testing.assert_allclose(sess.run(None, feeds)[0], ref.run(None, feeds)[0], rtol=1e-5, atol=1e-6)


# ---- integer modes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["i32", "i8"])
@pytest.mark.parametrize("level", ["uniform", "cache"])
def test_integer_modes_within_their_bound(backends, tables, cpu, cpu_abs, level, mode):
    backend = backends(level, mode)
    qmax = QMAX[mode]
    for batch in batches(tables, seed=20):
        got = backend.lookup(batch)
        want = cpu.lookup(batch)
        scale = cpu_abs.lookup(abs_batch(batch))
        for t, table in enumerate(tables):
            lengths = np.diff(batch.offsets[t]).astype(np.float64)
            peak = float(np.abs(table.weight).max())
            # per-segment scale <= max|stored value| / qmax; cache rows hold pairs (<= 2 peak)
            s = peak * (2 if backend.plan.tables[t].n_cache else 1) / qmax
            if table.pooling == "max":
                bound = np.full_like(lengths, s / 2)
            elif table.weighted:
                w = np.abs(batch.weights[t])
                csum = np.concatenate([[0.0], np.cumsum(w, dtype=np.float64)])
                wsum = csum[batch.offsets[t][1:]] - csum[batch.offsets[t][:-1]]
                levels = _emb_pack.weight_levels(qmax, int(lengths.max()))
                bound = s / 2 * wsum + float(w.max()) / levels / 2 * lengths * peak
            else:
                bound = lengths * s / 2
                if table.pooling == "mean":
                    bound = bound / np.maximum(lengths, 1)
            err = np.abs(got[t].astype(np.float64) - want[t])
            allowed = bound[:, None] + 1e-6 * scale[t] + 1e-30
            assert np.all(err <= allowed), (t, float((err / allowed).max()))
            assert np.any(err > 0) or mode == "i32" or table.rows < 100   # really quantised


def test_int32_overflow_is_raised_not_wrapped():
    weight = np.full((10, 8), 1.0, np.float32)
    tables = [EmbeddingTable("ones", weight)]
    backend = PimBackend(value_mode="i32", i32_headroom=4, cpu_fallback=False,
                         planner_config=PlannerConfig(nr_dpus=2, level="uniform", batch_size=4, allow_cpu=False))
    backend.load(tables)
    ok = SparseBatch.from_jagged([np.zeros(4, np.int64)], [np.array([0, 4])], include_last_offset=True)
    np.testing.assert_allclose(backend.lookup(ok)[0], 4.0, rtol=1e-6)      # 4 rows: within the headroom
    too_long = SparseBatch.from_jagged([np.zeros(40, np.int64)], [np.array([0, 40])], include_last_offset=True)
    with pytest.raises(FixedPointOverflowError, match="overflowed"):
        backend.lookup(too_long)
    np.testing.assert_allclose(backend.lookup(ok)[0], 4.0, rtol=1e-6)      # the backend still works
    backend.close()


# ---- shapes of batches -----------------------------------------------------------------------------

def test_empty_bags_and_batch_of_one(backends, tables, cpu, cpu_abs):
    backend = backends("cache")
    rng = np.random.default_rng(30)
    one = random_batch(tables, 1, pooling=(3, 9), skewed=True, rng=rng)
    none = random_batch(tables, 5, pooling=0, rng=rng)
    mixed = random_batch(tables, 64, pooling=(0, 2), skewed=True, rng=rng)
    for batch in (one, none, mixed):
        got = backend.lookup(batch)
        assert all(g.shape == (batch.batch_size, DIM) for g in got)
        assert_fp32_close(got, cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    assert all(np.all(g == 0) for g in backend.lookup(none))


def test_rounds_when_a_dpu_holds_more_segments_than_the_kernel_takes_jobs():
    rng = np.random.default_rng(40)
    tables = [EmbeddingTable(f"s{i}", rng.standard_normal((20 + i, 8)).astype(np.float32)) for i in range(70)]
    backend = PimBackend(planner_config=PlannerConfig(nr_dpus=1, level="uniform", batch_size=32, allow_cpu=False),
                         cpu_fallback=False)
    backend.load(tables)
    batch = random_batch(tables, 32, pooling=(1, 4), rng=rng)
    jobs = backend._scatter(batch)
    assert len(backend._rounds(jobs)) == 2           # 70 jobs on one DPU, 64 per launch
    cpu = CpuBackend(threads=1)
    cpu.load(tables)
    want = cpu.lookup(batch)
    for got, w in zip(backend.lookup(batch), want):
        np.testing.assert_allclose(got, w, rtol=1e-5, atol=1e-5)
    assert backend.stats().batches == 1
    backend.close()


def test_batches_too_large_for_the_mram_areas_are_split(tables, cpu, cpu_abs):
    # 64 KiB request and output areas: 512 bags x 64 B of one job already fill the output area
    cfg = config("uniform", nr_dpus=1, mram_bytes=64 << 20, mram_reserve=128 << 10)
    backend = PimBackend(planner_config=cfg, cpu_fallback=False)
    backend.load(tables)
    batch = random_batch(tables, 2048, pooling=(1, 3), rng=np.random.default_rng(45))
    assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    assert backend.stats().batches >= 4
    backend.close()


def test_cpu_fallback_pools_batches_the_model_prefers_on_the_host(tables, profile, cpu):
    backend = PimBackend(planner_config=config("popularity"))   # cpu_fallback is on by default
    backend.load(tables, profile=profile)
    tiny = random_batch(tables, 1, pooling=2, rng=np.random.default_rng(46))   # fixed costs dominate
    for got, want in zip(backend.lookup(tiny), cpu.lookup(tiny)):
        np.testing.assert_array_equal(got, want)                             # the CPU kernel itself
    st = backend.stats()
    assert st.extra["cpu_fallback_batches"] == 1 and st.measured_s["wait"] == 0
    assert st.modelled_s["total"] == st.modelled_s["cpu_tables"] > 0 and st.modelled_s["kernel"] == 0
    backend.close()


# ---- CPU-resident tables, plans --------------------------------------------------------------------

def test_tables_the_plan_keeps_on_the_cpu(tables, profile, cpu, cpu_abs, caplog):
    plan = make_plan(tables, profile, config("popularity"))
    plan.tables[2].placement = "cpu"          # the MAX table and the tiny one stay on the host
    plan.tables[4].placement = "cpu"
    backend = PimBackend(plan=plan, cpu_fallback=False)
    with caplog.at_level("INFO", logger="updlrm.pim.backend"):
        backend.load(tables)
    assert "'t2' stays on the CPU" in caplog.text
    batch = batches(tables, seed=50)[0]
    assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    st = backend.stats()
    assert st.extra["tables_on_cpu"] == ["t2", "t4"] and st.measured_s["cpu_tables"] > 0
    assert st.modelled_s["cpu_tables"] > 0
    backend.close()


def test_plan_save_load_and_mismatch(tmp_path, tables, profile, cpu, cpu_abs):
    plan = make_plan(tables, profile, config("cache"))
    plan.save(tmp_path / "plan.json")
    backend = PimBackend(plan=tmp_path / "plan.json", cpu_fallback=False)
    backend.load(tables)
    batch = batches(tables, seed=60)[0]
    assert_fp32_close(backend.lookup(batch), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    backend.close()
    other = tables[:1] + [dataclasses.replace(tables[1], weight=tables[1].weight[:200])] + tables[2:]
    with pytest.raises(InvalidInputError, match=r"'t1'.*rows=300.*rows=200"):
        PimBackend(plan=tmp_path / "plan.json").load(other)
    with pytest.raises(InvalidInputError, match="plan is for 16 DPUs"):
        PimBackend(plan=tmp_path / "plan.json", nr_dpus=8).load(tables)
    with pytest.raises(InvalidInputError, match="nr_dpus=8 but planner_config.nr_dpus=16"):
        PimBackend(nr_dpus=8, planner_config=config("cache"))


def bag_position(tp, offsets, b):
    """Where bag ``b`` lies in its batch for the replica cuts (module doc of updlrm.pim.plan)."""
    n_bags, total = len(offsets) - 1, int(offsets[-1] - offsets[0])
    if tp.split_by == "bags" or total == 0:
        return (b + 0.5) / n_bags
    return (offsets[b] - offsets[0] + 0.5 * (offsets[b + 1] - offsets[b])) / total


def reference_route(tp, indices, offsets):
    """The plan's routing rule (module doc of updlrm.pim.plan) in plain Python: per bag, sorted
    (tile, local row) reads and sorted host rows, plus the cache hits."""
    reads, host, hits = [], [], 0
    n_bags = len(offsets) - 1
    for b in range(n_bags):
        rows = [int(r) for r in indices[offsets[b]:offsets[b + 1]]]
        for e in range(tp.n_cache):
            members = [int(m) for m in tp.cache_rows[tp.cache_ptr[e]:tp.cache_ptr[e + 1]]]
            if all(m in rows for m in members):
                for m in members:
                    rows.remove(m)
                rows.append(tp.spec.rows + e)
                hits += 1
        bag_reads, bag_host = [], []
        for r in rows:
            g = int(tp.row_group[r])
            if g < 0:
                bag_host.append(r)
                continue
            cuts = tp.replica_cut[tp.replica_ptr[g]:tp.replica_ptr[g + 1]]
            j = int(np.flatnonzero(cuts > bag_position(tp, offsets, b))[0])
            for s in range(tp.n_slices):
                bag_reads.append((int(tp.group_tiles[tp.group_ptr[g] + j * tp.n_slices + s]), int(tp.row_local[r])))
        reads.append(sorted(bag_reads))
        host.append(sorted(bag_host))
    return reads, host, hits


@pytest.mark.parametrize("split_by", ["bags", "lookups"])
@pytest.mark.parametrize("hybrid", [False, True])
def test_scatter_routes_by_the_plans_rule(tables, profile, hybrid, split_by):
    """The Cython routing (through Plan.route) against a plain-Python reading of the rule, with
    replicas splitting batches by bags and by lookups; hybrid tables route through the compact row
    map (a bit per row, the DPU rows' places only)."""
    if hybrid:
        plan = make_plan(tables, profile, config("popularity", hybrid_tables=HYBRID, split_by=split_by))
        compact = {t for t, tp in enumerate(plan.tables) if tp.placement == "pim" and TableRoute.of(tp).dpu_bits.size}
        assert compact == {0, 1, 3}
    else:
        plan = make_plan(tables, profile, config("cache", split_by=split_by))
    assert {tp.split_by for tp in plan.tables} == {split_by}
    for batch in batches(tables, seed=70):
        for t in range(len(tables)):
            got = plan.route(t, batch.indices[t], batch.offsets[t])
            want_reads, want_host, want_hits = reference_route(plan.tables[t], batch.indices[t], batch.offsets[t])
            for b, (reads, host) in enumerate(zip(want_reads, want_host)):
                sel = got.bag == b
                assert sorted(zip(got.tile[sel].tolist(), got.local_row[sel].tolist())) == reads
                assert sorted(got.host_rows[got.host_offsets[b]:got.host_offsets[b + 1]].tolist()) == host
            assert got.cache_hits == want_hits
            assert got.reads_saved == want_hits * plan.tables[t].n_slices   # pair entries: one read saved each
    with pytest.raises(InvalidInputError, match="output arrays"):
        small = np.empty(1, np.int32)
        _scatter.route(np.arange(4), np.array([0, 4]), 10, np.zeros(0, np.int32), np.zeros(1, np.int64),
                       np.zeros(0, np.int64), np.stack([np.zeros(10, np.int32), np.arange(10, dtype=np.int32)], 1),
                       np.zeros(0, np.uint64), np.zeros(0, np.int32), np.array([0, 1]), np.ones(1), np.array([0, 1]), np.zeros(1, np.int32), 1,
                       small, small, small, np.empty(1, np.int64), np.empty(4, np.int64), np.empty(2, np.int64),
                       np.empty(0, np.int64))



def test_scatter_threads_give_the_same_jobs(backends, tables):
    """Routing in a worker thread (threads=2) appends the same jobs, in the same order, as one
    thread does; the per-table scratch is reused from batch to batch without leaking."""
    plan = backends("cache").plan
    one, two = BatchScatter(plan, tables, threads=1), BatchScatter(plan, tables, threads=2)
    try:
        assert len(one.pim) - len(one.whole) > 1   # the worker has tables to route
        for batch in batches(tables, seed=71) * 2:
            a, b = one(batch), two(batch)
            for field in ("seg", "bag_ptr", "off", "idx", "bag_row"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
            # weights are only written (and read by the kernel) for weighted tables' jobs
            weighted = np.array([tables[t].weighted for t in one.segs.table[a.seg]])
            reads = np.repeat(weighted, a.off[a.bag_ptr[1:]] - a.off[a.bag_ptr[:-1]])
            np.testing.assert_array_equal(a.w[reads], b.w[reads])
            assert reads.any()
            assert (a.reads_routed, a.lookups_copied, a.cache_hits, a.reads_saved, a.partials_routed) == \
                   (b.reads_routed, b.lookups_copied, b.cache_hits, b.reads_saved, b.partials_routed)
            # the partial sums of the tables that are not copied whole: their jobs' sub-bags
            routed = ~np.isin(one.segs.table[a.seg], list(one.whole))
            assert a.partials_routed == int(a.n_bags[routed].sum()) > 0
            assert a.host.keys() == b.host.keys()
            for t in a.host:
                for x, y in zip(a.host[t], b.host[t]):
                    np.testing.assert_array_equal(x, y)
    finally:
        two.close()
    with pytest.raises(InvalidInputError, match="1 or 2 threads"):
        BatchScatter(plan, tables, threads=3)

# ---- async use and stats ---------------------------------------------------------------------------

def test_submit_returns_before_the_result_and_batches_stay_apart(backends, tables, cpu, cpu_abs):
    backend = backends("popularity")
    first, second = batches(tables, seed=80)
    h1 = backend.submit(first)
    assert not h1.done()
    h2 = backend.submit(second)          # completes the first batch before launching
    assert h1.done()
    for handle, batch in ((h2, second), (h1, first)):
        assert_fp32_close(handle.result(), cpu.lookup(batch), cpu_abs.lookup(abs_batch(batch)))
    assert h2.result() is h2.result()


def test_stats_keep_measured_and_modelled_apart(tables, profile):
    backend = PimBackend(planner_config=config("cache"), cpu_fallback=False)
    backend.load(tables, profile=profile)
    for batch in batches(tables, seed=90):
        backend.lookup(batch)
    st = backend.stats()
    assert st.backend == "pim" and st.batches == 2 and st.lookups > 0
    assert set(st.measured_s) == {"load", "scatter", "push", "cpu_tables", "wait", "pull_reduce"}
    assert all(st.measured_s[k] > 0 for k in ("load", "scatter", "push", "pull_reduce"))
    m = st.modelled_s
    assert set(m) == {"h2d", "launch", "kernel", "d2h", "host", "cpu_tables", "total"}
    assert all(m[k] > 0 for k in ("h2d", "launch", "kernel", "d2h", "host"))
    assert m["total"] == pytest.approx(m["h2d"] + m["launch"] + max(m["kernel"], m["cpu_tables"]) + m["d2h"]
                                       + m["host"], rel=1e-9)
    assert m["launch"] == pytest.approx(2 * backend.cost.launch_s)
    assert st.extra["plan"]["level"] == "cache" and st.extra["imbalance"]["reads"] >= 1.0
    assert 0 < st.extra["cache_hit_rate"] < 1 and st.extra["reads_saved"] > 0
    backend.close()


# ---- whole models ----------------------------------------------------------------------------------

@pytest.mark.parametrize("variant,exporter", [("bag_list", "ts11"), ("bag_max", "ts11"), ("bag_psw", "dynamo"),
                                              ("bag_mean", "dynamo")])
def test_exported_dlrm_matches_pytorch(dlrm_export, variant, exporter):
    import torch
    from dlrm_models import sample_inputs
    model, path = dlrm_export(variant, exporter)
    cfg = PlannerConfig(nr_dpus=16, level="cache", batch_size=32, allow_cpu=False)
    with updlrm.load(path, backend="pim", nr_dpus=16, planner_config=cfg, cpu_fallback=False) as sess:
        assert sess.stats().backend.extra["tables_on_cpu"] == []
        for batch_size, pooling in [(1, (0, 3)), (32, (0, 6)), (8, (30, 40))]:
            args, feeds = sample_inputs(variant, batch_size, pooling, seed=batch_size, exporter=exporter)
            (got,) = sess.run(None, feeds)
            with torch.inference_mode():
                want = model(*args).numpy()
            np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_session_score_pipelines_over_the_pim_backend(dlrm_export):
    import torch
    from dlrm_models import sample_inputs
    model, path = dlrm_export("bag_list", "ts11")
    args, feeds = sample_inputs("bag_list", 50, (0, 5), exporter="ts11")
    sparse = SparseBatch.from_jagged([feeds[f"indices_{k}"] for k in range(3)], [feeds[f"offsets_{k}"] for k in range(3)])
    with updlrm.load(path, backend="pim", planner_config=PlannerConfig(nr_dpus=8, allow_cpu=False),
                     cpu_fallback=False) as sess:
        got = sess.score((feeds["dense_x"], sparse), batch_size=8, progress=False)
        assert sess.stats().backend.batches == 7
    with torch.inference_mode():
        np.testing.assert_allclose(got, model(*args).numpy().reshape(-1), atol=1e-5, rtol=0)


def test_plan_cli_prints_levels_and_writes_plan_and_pngs(dlrm_export, tmp_path, capsys):
    from dlrm_models import sample_inputs
    from updlrm.cli import main
    _, path = dlrm_export("bag_list", "ts11")
    _, feeds = sample_inputs("bag_list", 64, (1, 6), exporter="ts11")
    data = tmp_path / "sample.npz"     # updlrm.datasets layout: offsets with N+1 entries
    np.savez(data, dense_x=feeds["dense_x"],
             **{f"indices_{k}": feeds[f"indices_{k}"] for k in range(3)},
             **{f"offsets_{k}": np.append(feeds[f"offsets_{k}"], len(feeds[f"indices_{k}"])) for k in range(3)})
    out = tmp_path / "plan.json"
    rc = main(["plan", str(path), "--dpus", "16", "--data", str(data), "--level", "cache", "--batch-size", "64",
               "--no-cpu", "-o", str(out), "--png-dir", str(tmp_path / "png"), "--profile-out", str(tmp_path / "prof.json")])
    captured = capsys.readouterr()
    text = captured.out
    assert rc == 0
    for level in Level:
        assert f"level {level.value}" in text
        assert f"planning the {level.value} level on 16 DPUs" in captured.err   # progress lines
    assert "MODELLED" in text and "imbalance" in text and "replicas split each batch by" in text
    assert "M lookups/s: MEASURED here on the profiled requests)" in text      # the CPU baseline, on --data
    assert sorted(p.name for p in (tmp_path / "png").iterdir()) == [f"load_{lvl.value}.png" for lvl in
                                                                    sorted(Level, key=lambda x: x.value)]
    plan = Plan.load(out)
    assert plan.level == "cache" and plan.nr_dpus == 16
    assert (tmp_path / "prof.json").exists()
    with updlrm.load(path, backend="pim", plan=out, cpu_fallback=False) as sess:
        (got,) = sess.run(None, feeds)
        with updlrm.load(path) as ref:
            np.testing.assert_allclose(got, ref.run(None, feeds)[0], atol=1e-6, rtol=0)
    assert main(["profile", str(path), str(data), "-o", str(tmp_path / "prof2.json"), "--batch-size", "16"]) == 0
    text = capsys.readouterr().out
    assert "profile of 4 batches" in text and "M lookups/s at dim 64 (MEASURED here" in text
    assert AccessProfile.load(tmp_path / "prof2.json").cpu_rates.lookups_per_s > 0
    assert main(["plan", str(path), "--dpus", "16", "--profile", str(tmp_path / "prof2.json"), "--level", "uniform",
                 "-o", str(tmp_path / "p2.json"), "-q", "--cpu-rate", "5"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "(at 5.0 M lookups/s: given (--cpu-rate))" in captured.out
    assert Plan.load(tmp_path / "p2.json").level == "uniform"
    assert main(["plan", str(path), "--dpus", "16", "--level", "uniform", "-q"]) == 0    # no profile
    assert "MEASURED here on uniform synthetic batches" in capsys.readouterr().out
