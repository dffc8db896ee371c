"""Partitioner and plans: capacity, row coverage, balance, cache correctness, persistence.

The end-to-end check replays a plan in NumPy the way a PIM executor must (route, read tile rows,
sum partials per tile and bag, reduce on the host) and compares with a direct embedding-bag sum.
"""
import dataclasses

import numpy as np
import pytest

from updlrm.errors import CapacityError, InvalidInputError
from updlrm.pim.partitioner import Level, PlannerConfig, compare_levels, make_plan, report
from updlrm.pim.plan import Plan, TableSpec
from updlrm.pim.profile import build_profile
from updlrm.datasets.synthetic import sample_rows

ROWS = [20000, 5000, 300, 12000]
DIM, BATCH, POOL, NR_DPUS = 16, 256, 20, 16
SPECS = [TableSpec(f"t{i}", n, DIM) for i, n in enumerate(ROWS)]
# 1 MiB table region per DPU: the big tables must be cut by rows, so popularity matters
SMALL_MRAM = dict(mram_bytes=(8 << 20) + (1 << 20), mram_reserve=8 << 20)


def make_batches(seed, n, skewed=True):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = [sample_rows(r, BATCH * POOL, rng, skewed=skewed, salt=t) for t, r in enumerate(ROWS)]
        out.append((idx, [np.arange(0, BATCH * POOL + 1, POOL) for _ in ROWS]))
    return out


@pytest.fixture(scope="module")
def profile():
    return build_profile(make_batches(1, 40), ROWS)


@pytest.fixture(scope="module")
def trace():
    return make_batches(2, 20)


def config(level=Level.POPULARITY, **kw):
    base = dict(nr_dpus=NR_DPUS, level=level, batch_size=BATCH, allow_cpu=False, max_col_parts=1, **SMALL_MRAM)
    base.update(kw)
    return PlannerConfig(**base)


@pytest.fixture(scope="module")
def plans(profile):
    return {lvl: make_plan(SPECS, profile, config(lvl)) for lvl in Level}


def trace_reads(plan, trace):
    reads = np.zeros(plan.nr_dpus)
    for idx, off in trace:
        work, _ = plan.work(idx, off)
        reads += work.rows
    return reads


# ---- capacity ----------------------------------------------------------------------------------

@pytest.mark.parametrize("level", list(Level))
def test_tiles_fit_their_dpus(plans, level):
    plan = plans[level]
    plan.validate()      # offsets 8-aligned, inside the region, no overlaps, coherent group tables
    used = np.zeros(plan.nr_dpus, np.int64)
    for t in plan.tiles:
        used[t.dpu] += t.nbytes
        assert t.row_stride == DIM * 4 and t.nbytes == t.num_rows * t.row_stride
    assert used.max() <= plan.table_region_bytes
    np.testing.assert_array_equal(plan.mram_used() >= used, True)
    arrays = plan.tile_arrays()
    np.testing.assert_array_equal(np.bincount(arrays["dpu"], weights=arrays["num_rows"] * arrays["row_stride"],
                                              minlength=plan.nr_dpus), used)


def test_capacity_error_says_which_table_and_by_how_much():
    huge = SPECS + [TableSpec("huge", 400_000, DIM)]       # 25.6 MB > 16 DPUs x 1 MiB
    with pytest.raises(CapacityError, match=r"short by [0-9.]+ MiB; largest: 'huge'"):
        make_plan(huge, None, config("uniform"))
    # with the CPU fallback allowed, the table that does not fit stays on the CPU instead
    plan = make_plan(huge, None, config("uniform", allow_cpu=True, value_mode="int32", batch_size=4096))
    assert plan.tables[-1].placement == "cpu"
    plan.validate()
    wide = [TableSpec("wide", 10, 80_000)]                  # one row (320 KB) > a tile's 256 KiB
    with pytest.raises(CapacityError, match=r"'wide'.*exceeds"):
        make_plan(wide, None, config("uniform"))


# ---- every row mapped exactly once, replicas complete --------------------------------------------

@pytest.mark.parametrize("level", [Level.POPULARITY, Level.CACHE])
def test_replication_never_makes_a_fitting_plan_fail(profile, level):
    # 192 KiB per DPU: one copy of every row fits (the uniform plan), the replicas the hot groups
    # want do not; they must be trimmed to the room left, not make the plan fail
    tight = dict(mram_bytes=(8 << 20) + (192 << 10))
    without = make_plan(SPECS, profile, config(Level.UNIFORM, **tight))
    one_copy = sum(t.nbytes for t in without.tiles)
    plan = make_plan(SPECS, profile, config(level, **tight))
    plan.validate()
    assert plan.mram_used().max() <= plan.table_region_bytes
    assert sum(t.nbytes for t in plan.tiles) <= 0.9 * plan.table_region_bytes * NR_DPUS
    assert sum(t.nbytes for t in plan.tiles) >= one_copy    # every row still stored at least once


@pytest.mark.parametrize("level", list(Level))
def test_every_row_is_mapped_once_and_every_replica_has_its_tiles(plans, level):
    plan = plans[level]
    seen = {}
    for i, tile in enumerate(plan.tiles):
        key = (tile.table, tile.group, tile.replica, tile.col_start)
        assert key not in seen
        seen[key] = i
    for t, tp in enumerate(plan.tables):
        n_all = tp.spec.rows + tp.n_cache
        sizes = np.bincount(tp.row_group, minlength=tp.n_groups)
        for g in range(tp.n_groups):
            locals_g = np.sort(tp.row_local[tp.row_group == g])
            np.testing.assert_array_equal(locals_g, np.arange(sizes[g]))     # a numbering, no row twice
            for rep in range(tp.group_replicas[g]):
                tile = plan.tiles[seen[(t, g, rep, 0)]]
                assert tile.num_rows == sizes[g]
        assert sizes.sum() == n_all
    n_replica_tiles = sum(int(tp.group_replicas.sum()) for tp in plan.tables)
    assert n_replica_tiles == len(plan.tiles)


def test_uniform_level_cuts_contiguous_row_ranges(plans):
    for tp in plans[Level.UNIFORM].tables:
        assert np.all(np.diff(tp.row_group) >= 0)
        assert np.all(tp.group_replicas == tp.group_replicas[0])


# ---- balance -------------------------------------------------------------------------------------

def test_popularity_aware_balances_expected_accesses(plans, trace):
    imb = {lvl: (lambda r: r.max() / r.mean())(trace_reads(plans[lvl], trace)) for lvl in Level}
    assert imb[Level.POPULARITY] <= 1.05, imb
    assert imb[Level.CACHE] <= 1.05, imb
    assert imb[Level.UNIFORM] > imb[Level.POPULARITY] + 0.05, imb


def test_whole_bag_shares_round_towards_the_lighter_dpus():
    """Two groups of two replicas, each group on DPUs 0 and 1, both wanting 1.5 of 3 bags per
    replica: rounding each group on its own would give both left-over bags to DPU 0."""
    from updlrm.pim.partitioner import _whole_bag_shares
    unit = np.ones((4, 1))                  # tiles = replicas 0..3, all equally costly per bag
    dpu, rep, rep_group = np.array([0, 1, 0, 1]), np.arange(4), np.array([0, 0, 1, 1])
    share = _whole_bag_shares(unit, dpu, rep, rep_group, np.full(4, 0.5), 3, 2)
    np.testing.assert_allclose(share * 3, np.round(share * 3))                  # whole bags
    np.testing.assert_allclose(np.bincount(rep_group, weights=share), [1, 1])  # every bag served
    np.testing.assert_allclose(np.bincount(dpu, weights=share * 3), [3, 3])    # DPUs even


def test_popularity_beats_uniform_in_modelled_latency(plans):
    assert plans[Level.POPULARITY].predicted["total"] < plans[Level.UNIFORM].predicted["total"]


# ---- cache ---------------------------------------------------------------------------------------

def test_cache_entries_are_sums_of_their_rows(plans):
    plan = plans[Level.CACHE]
    rng = np.random.default_rng(3)
    weights = [rng.standard_normal((n, DIM)).astype(np.float32) for n in ROWS]
    checked = 0
    for tile_id, tile in enumerate(plan.tiles):
        tp = plan.tables[tile.table]
        if tp.n_cache == 0:
            continue
        image = plan.tile_image(tile_id, weights[tile.table])
        in_tile = np.flatnonzero(tp.row_group == tile.group)
        for r in in_tile[in_tile >= tp.spec.rows]:
            e = r - tp.spec.rows
            members = tp.cache_rows[tp.cache_ptr[e]:tp.cache_ptr[e + 1]]
            assert len(members) >= 2 and np.all(tp.row_cache[members] == e)
            np.testing.assert_allclose(image[tp.row_local[r]], weights[tile.table][members].sum(axis=0), rtol=1e-6)
            checked += 1
    assert checked > 0


def test_cache_saves_reads_on_the_trace(plans, trace):
    saved = hits = 0
    for idx, off in trace:
        _, stats = plans[Level.CACHE].work(idx, off)
        saved += stats["reads_saved"]
        hits += stats["cache_hits"]
    assert hits > 0 and saved == hits            # pairs: each use replaces two reads by one
    assert trace_reads(plans[Level.CACHE], trace).sum() == sum(len(i) for b in trace for i in b[0]) - saved


# ---- the plan replayed end to end ----------------------------------------------------------------

def replay(plan, weights, idx, off):
    """NumPy executor: route, read tile images, partial sums per (tile, bag), host rows, host reduction."""
    images = {i: plan.tile_image(i, weights[t.table]) for i, t in enumerate(plan.tiles)}
    out = []
    for t, tp in enumerate(plan.tables):
        res = np.zeros((len(off[t]) - 1, tp.spec.dim))
        if tp.placement != "pim":              # CPU-resident: pooled on the host
            np.add.at(res, np.repeat(np.arange(len(off[t]) - 1), np.diff(off[t])), weights[t][idx[t]])
            out.append(res)
            continue
        r = plan.route(t, idx[t], off[t])
        for tile_id in np.unique(r.tile):
            sel = r.tile == tile_id
            tile = plan.tiles[tile_id]
            partial = np.zeros((len(off[t]) - 1, tile.width))
            np.add.at(partial, r.bag[sel], images[tile_id][r.local_row[sel]])
            res[:, tile.col_start:tile.col_stop] += partial
        # host-resident rows of a hybrid table: pooled on the host and added
        np.add.at(res, np.repeat(np.arange(len(off[t]) - 1), np.diff(r.host_offsets)), weights[t][r.host_rows])
        out.append(res)
    return out


@pytest.mark.parametrize("level, col_parts", [(Level.UNIFORM, 1), (Level.POPULARITY, 2), (Level.CACHE, 4)])
def test_plan_replay_equals_embedding_bag(profile, trace, level, col_parts):
    plan = make_plan(SPECS, profile, config(level, max_col_parts=4, col_parts={s.name: col_parts for s in SPECS}))
    assert all(tp.n_slices == col_parts for tp in plan.tables)
    rng = np.random.default_rng(4)
    weights = [rng.standard_normal((n, DIM)).astype(np.float32) for n in ROWS]
    idx, off = trace[0]
    got = replay(plan, weights, idx, off)
    for t in range(len(ROWS)):
        want = np.add.reduceat(weights[t][idx[t]].astype(np.float64), off[t][:-1], axis=0)
        np.testing.assert_allclose(got[t], want, rtol=1e-5, atol=1e-5)


# ---- persistence and model checks ----------------------------------------------------------------

def test_plan_json_round_trip(plans, tmp_path, trace):
    plan = plans[Level.CACHE]
    plan.save(tmp_path / "plan")
    back = Plan.load(tmp_path / "plan.json")
    assert back.tiles == plan.tiles and back.predicted == plan.predicted and back.level == "cache"
    for a, b in zip(plan.tables, back.tables):
        assert a.spec == b.spec and a.col_bounds == b.col_bounds
        np.testing.assert_array_equal(a.row_group, b.row_group)
        np.testing.assert_array_equal(a.cache_rows, b.cache_rows)
    idx, off = trace[0]
    for t in range(len(ROWS)):
        ra, rb = plan.route(t, idx[t], off[t]), back.route(t, idx[t], off[t])
        np.testing.assert_array_equal(ra.tile, rb.tile)
        np.testing.assert_array_equal(ra.local_row, rb.local_row)
    back.check(SPECS)


@pytest.mark.parametrize("change", [dict(rows=20001), dict(dim=8), dict(name="other"), dict(dtype="float16"),
                                    dict(weighted=True)])
def test_check_rejects_a_mismatched_model(plans, change):
    tables = list(SPECS)
    tables[0] = dataclasses.replace(SPECS[0], **change)
    with pytest.raises(InvalidInputError, match="table #0"):
        plans[Level.UNIFORM].check(tables)
    with pytest.raises(InvalidInputError, match="the model has 3"):
        plans[Level.UNIFORM].check(SPECS[:3])


def test_check_accepts_embedding_tables(plans):
    from updlrm.tables import EmbeddingTable
    tables = [EmbeddingTable(s.name, np.zeros((s.rows, s.dim), np.float32)) for s in SPECS]
    plans[Level.POPULARITY].check(tables)


# ---- CPU fallback and report ----------------------------------------------------------------------

def test_small_batches_stay_on_the_cpu(profile):
    plan = make_plan(SPECS, profile, config("popularity", batch_size=4, allow_cpu=True))
    assert all(tp.placement == "cpu" for tp in plan.tables) and not plan.tiles
    assert plan.predicted["total"] == pytest.approx(plan.predicted["cpu_tables"])


def test_fallback_never_predicts_slower_than_cpu(profile):
    for batch in (16, 256, 4096):
        plan = make_plan(SPECS, profile, config("cache", batch_size=batch, allow_cpu=True, value_mode="int32"))
        rep = report(plan)
        assert rep.speedup_vs_cpu >= 1.0 - 1e-9


def test_report_and_pngs(profile, tmp_path):
    res = compare_levels(SPECS, profile, config("uniform"), out_dir=str(tmp_path))
    for level, (plan, rep) in res.items():
        png = (tmp_path / f"load_{level}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"IDAT" in png and b"imbalance" in png
        assert rep.nr_dpus == NR_DPUS and rep.tiles == len(plan.tiles)
        assert rep.imbalance_reads == pytest.approx(rep.reads.max() / rep.reads.mean())
        assert set(rep.stages_s) >= {"h2d", "launch", "kernel", "d2h", "total"}
        assert rep.split_by == plan.tables[0].split_by and f"split each batch by {rep.split_by}" in rep.format()
    assert res["cache"][1].cache_hit_rate > 0 and res["uniform"][1].cache_hit_rate == 0


def test_route_rejects_bad_indices_and_offsets(plans):
    plan = plans[Level.POPULARITY]
    with pytest.raises(InvalidInputError, match="indices must lie"):
        plan.route(0, np.array([0, ROWS[0]]), np.array([0, 2]))
    with pytest.raises(InvalidInputError, match="offsets must rise"):
        plan.route(0, np.array([0, 1]), np.array([0, 2, 1]))


def test_replicas_serve_contiguous_bag_ranges_given_by_their_cuts(plans, trace):
    plan = plans[Level.POPULARITY]
    idx, off = trace[0]
    checked = 0
    for t, tp in enumerate(plan.tables):
        r = plan.route(t, idx[t], off[t])
        tiles = plan.tiles
        for tile_id in np.unique(r.tile):
            tile = tiles[tile_id]
            lo_cut = 0.0 if tile.replica == 0 else tp.replica_cut[tp.replica_ptr[tile.group] + tile.replica - 1]
            hi_cut = tp.replica_cut[tp.replica_ptr[tile.group] + tile.replica]
            assert tp.split_by == "bags"        # fixed-size bags: splitting by lookups is the same
            pos = (r.bag[r.tile == tile_id] + 0.5) / BATCH
            assert np.all((pos >= lo_cut) & (pos < hi_cut))
            assert tile.bag_share == pytest.approx(hi_cut - lo_cut)
            assert round(tile.bag_share * BATCH) == pytest.approx(tile.bag_share * BATCH)   # whole bags
            checked += tp.group_replicas[tile.group] > 1
    assert checked > 0


def uneven_batch(seed):
    """One batch of BATCH bags of 1-60 indices per table (power law)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 61, size=(len(ROWS), BATCH))
    off = [np.concatenate([[0], np.cumsum(n)]) for n in lengths]
    return [sample_rows(r, int(o[-1]), rng, skewed=True, salt=t) for t, (r, o) in enumerate(zip(ROWS, off))], off


def replica_loads(plan, batch):
    """Per replica of a group with siblings: (share, reads, bags served, the group's reads) on
    ``batch``."""
    idx, off = batch
    out = []
    for t, tp in enumerate(plan.tables):
        r = plan.route(t, idx[t], off[t])
        for g in np.flatnonzero(tp.group_replicas > 1):
            tiles = [int(tp.group_tiles[tp.group_ptr[g] + j * tp.n_slices]) for j in range(tp.group_replicas[g])]
            group_reads = int(np.isin(r.tile, tiles).sum())
            for i in tiles:
                mine = r.tile == i
                out.append((plan.tiles[i].bag_share, int(mine.sum()), len(np.unique(r.bag[mine])), group_reads))
    return out


def test_replicas_split_by_lookups_read_their_share_of_the_lookups(profile):
    """Split by lookups, a replica reads its share of its group's reads to within one bag,
    whatever the bag sizes; split by bags, it serves its share of the bags. (Room for whole,
    replicated tables: every bag then reaches one replica of every table.)"""
    batch = uneven_batch(5)
    roomy = dict(mram_bytes=24 << 20, level=Level.UNIFORM)
    by_lookups = replica_loads(make_plan(SPECS, profile, config(split_by="lookups", **roomy)), batch)
    by_bags = replica_loads(make_plan(SPECS, profile, config(split_by="bags", **roomy)), batch)
    assert len(by_lookups) > 10 and len(by_bags) > 10
    off_by_lookups = [abs(reads - share * group) for share, reads, _, group in by_lookups]
    assert max(off_by_lookups) <= 60
    assert all(abs(bags - share * BATCH) <= 1 for share, _, bags, _ in by_bags)
    assert max(abs(reads - share * group) for share, reads, _, group in by_bags) > 2 * max(off_by_lookups)


def test_split_follows_the_stage_that_batch_noise_would_slow():
    """``split_by="auto"``: by lookups when the DPU kernel sets the batch time (its reads must not
    vary), by bags when the pull of partial sums does; by bags for fixed-size bags."""
    from updlrm.pim.partitioner import _batch_noise
    uneven = build_profile([uneven_batch(s) for s in (6, 7)], ROWS)
    plan = make_plan(SPECS, uneven, config(Level.POPULARITY))
    split, extra = _batch_noise(plan, uneven)
    assert plan.notes["batch_noise_s"] == pytest.approx(extra) and extra > 0   # what the plan was chosen on
    assert {tp.split_by for tp in plan.tables} == {split}
    kernel_bound = {"kernel": 5e-3, "cpu_tables": 0.0, "h2d": 0.3e-3, "d2h": 0.8e-3}
    pull_bound = {"kernel": 1e-3, "cpu_tables": 4e-3, "h2d": 0.3e-3, "d2h": 3e-3}
    plan.predicted = dict(kernel_bound)
    split, extra = _batch_noise(plan, uneven)
    assert split == "lookups" and 0 < extra < 0.5 * 0.8e-3
    assert _batch_noise(plan, uneven, "bags")[1] > extra       # a forced split costs what it costs
    plan.predicted = dict(pull_bound)
    assert _batch_noise(plan, uneven)[0] == "bags"
    plan.predicted = dict(kernel_bound)
    assert _batch_noise(plan, build_profile(make_batches(1, 2), ROWS)) == ("bags", 0.0)   # fixed-size bags
    assert _batch_noise(plan, None) == ("bags", 0.0)


# ---- hybrid tables: hot rows on the DPUs, the cold tail on the host ---------------------------------

def test_planner_puts_the_hot_rows_of_a_table_too_big_for_the_dpus_on_them():
    rows = ROWS + [400_000]              # 25.6 MB: more than 16 DPUs x 1 MiB hold
    specs = SPECS + [TableSpec("big", rows[-1], DIM)]
    rng = np.random.default_rng(5)

    def sample(n):
        return [([sample_rows(r, BATCH * POOL, rng, skewed=True, salt=t) for t, r in enumerate(rows)],
                 [np.arange(0, BATCH * POOL + 1, POOL)] * len(rows)) for _ in range(n)]

    prof = build_profile(sample(8), rows)
    # a slow host (5 M lookups/s) and the planner's batch of 4,096 bags: the DPUs are worth using
    kw = dict(allow_cpu=True, value_mode="int32", batch_size=4096,
              cost=PlannerConfig().cost.with_(cpu={"lookups_per_s": 5e6}))
    whole = make_plan(specs, prof, config("popularity", hybrid=False, **kw))
    hybrid = make_plan(specs, prof, config("popularity", **kw))
    assert whole.tables[-1].placement == "cpu"
    big = hybrid.tables[-1]
    assert big.placement == "pim" and 0 < big.n_host_rows < big.spec.rows
    assert big.spec.rows - big.n_host_rows in {round(s * big.spec.rows) for s in PlannerConfig().hybrid_row_shares}
    assert hybrid.predicted["total"] < whole.predicted["total"]            # the cut is kept because it is faster
    hybrid.validate()
    # the DPU rows are the most profiled ones
    counts = prof[len(rows) - 1].expected_counts()
    on_dpus = big.row_group >= 0
    assert counts[on_dpus].min() >= counts[~on_dpus].max()
    # replayed as an executor must (host rows pooled on the host) it equals the embedding bag
    weights = [np.random.default_rng(t).standard_normal((r, DIM)).astype(np.float32) for t, r in enumerate(rows)]
    for idx, off in sample(1):
        r = hybrid.route(len(rows) - 1, idx[-1], off[-1])
        assert 0 < len(r.host_rows) < len(idx[-1])
        for t, (got, w) in enumerate(zip(replay(hybrid, weights, idx, off), weights)):
            want = np.add.reduceat(w[idx[t]].astype(np.float64), off[t][:-1])
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)


def test_forced_hybrid_plan_round_trips_and_is_checked(profile, tmp_path):
    plan = make_plan(SPECS, profile, config("cache", hybrid_tables={"t0": 0.05, "t3": 0.2}))
    assert [tp.n_host_rows for tp in plan.tables] == [19000, 0, 0, 9600]
    assert plan.tables[0].n_cache == 0 and plan.needs_row_map(0)
    assert report(plan).hybrid_tables == {"t0": 1000, "t3": 2400} and "t0 (1,000 rows)" in report(plan).format()
    plan.save(tmp_path / "p")
    again = Plan.load(tmp_path / "p")
    np.testing.assert_array_equal(again.tables[0].row_group, plan.tables[0].row_group)
    assert again.tables[3].n_host_rows == 9600
    again.tables[0].n_host_rows = 5                       # the count must match the -1 marks
    with pytest.raises(InvalidInputError, match="host-resident"):
        again.validate()
    with pytest.raises(InvalidInputError, match="cannot be hybrid"):
        make_plan(SPECS, profile, config("uniform", hybrid_tables={"t0": 0.05}))
    with pytest.raises(InvalidInputError, match="unknown tables"):
        make_plan(SPECS, profile, config("cache", hybrid_tables={"nope": 0.05}))
    with pytest.raises(InvalidInputError, match="hybrid_row_shares"):
        make_plan(SPECS, profile, config("cache", hybrid_row_shares=(0.0, 0.1)))


def test_fewer_dpus_kept_when_modelled_faster(profile, trace):
    """With ``fewer_dpus`` the planner also plans on 1/2 and 1/4 of the DPUs (whole ranks) and
    keeps the modelled-fastest; the plan still covers the DPUs it was given, the rest idle."""
    base = config("popularity", nr_dpus=64, dpus_per_rank=4, fewer_dpus=False)
    candidates = {n: make_plan(SPECS, profile, dataclasses.replace(base, nr_dpus=n)) for n in (64, 32, 16)}
    best_n = min(candidates, key=lambda n: candidates[n].predicted["total"])
    plan = make_plan(SPECS, profile, dataclasses.replace(base, fewer_dpus=True))
    assert plan.nr_dpus == 64 and plan.notes["dpus_planned"] == best_n
    assert plan.predicted["total"] == pytest.approx(candidates[best_n].predicted["total"])
    assert max(t.dpu for t in plan.tiles) < best_n
    # every lookup of a batch is read once, on the DPUs the plan uses
    work, _ = plan.work(*trace[0])
    assert work.rows.shape == (64,) and work.rows[best_n:].sum() == 0
    assert work.rows.sum() == sum(len(i) for i in trace[0][0])


def test_fewer_dpus_selection(monkeypatch, profile):
    """The choice itself: the fastest of the counts tried wins and is widened back to the DPUs
    given; a count too small to hold the tables ends the search."""
    from updlrm.pim import partitioner
    real = partitioner._plan_on_count
    modelled_ms = {64: 3.0, 32: 2.0, 16: 2.5}
    tried = []

    def plan_on_count(tables, prof, cfg):
        tried.append(cfg.nr_dpus)
        plan = real(tables, prof, cfg)
        plan.predicted["total"] = modelled_ms[cfg.nr_dpus] * 1e-3
        return plan

    monkeypatch.setattr(partitioner, "_plan_on_count", plan_on_count)
    cfg = config("popularity", nr_dpus=64, dpus_per_rank=4)
    plan = make_plan(SPECS, profile, cfg)
    assert tried == [64, 32, 16]
    assert plan.nr_dpus == 64 and plan.notes["dpus_planned"] == 32
    assert plan.predicted["total"] == 2.0e-3 and max(t.dpu for t in plan.tiles) < 32

    def no_room_below_64(tables, prof, cfg):
        if cfg.nr_dpus < 64:
            raise CapacityError("does not fit")
        return plan_on_count(tables, prof, cfg)

    tried.clear()
    monkeypatch.setattr(partitioner, "_plan_on_count", no_room_below_64)
    assert make_plan(SPECS, profile, cfg).notes["dpus_planned"] == 64
    assert make_plan(SPECS, profile, dataclasses.replace(cfg, fewer_dpus=False)).notes["dpus_planned"] == 64



@pytest.mark.parametrize("level", ["uniform", "cache"])
def test_column_slices_are_weighed_against_the_scatter_they_cost(level):
    """Each column slice of a routed table is one more read for the host to route. Here (a
    93k-row, 64-column table on 640 DPUs) two slices would cut the DPUs' load, and a planner
    that ignores the scatter picks them; weighing the scatter it keeps one slice, and the whole
    batch is modelled faster."""
    from updlrm.pim.cost_model import CostModel
    rows, batch = 93145, 4096
    spec = [TableSpec("w", rows, 64)]
    rng = np.random.default_rng(0)
    samples = []
    for _ in range(4):
        off = np.concatenate([[0], np.cumsum(rng.integers(20, 81, size=batch))])
        samples.append(([sample_rows(rows, int(off[-1]), rng, skewed=True, salt=9)], [off]))
    prof = build_profile(samples, [rows])
    cost = CostModel()
    free_scatter = cost.with_(scatter_s_per_read=0.0, copy_s_per_lookup=0.0, scatter_s_per_partial=0.0)
    cfg = PlannerConfig(nr_dpus=640, level=level, batch_size=batch, value_mode="int32", allow_cpu=False,
                        fewer_dpus=False, cost=cost)
    blind = make_plan(spec, prof, dataclasses.replace(cfg, cost=free_scatter))
    weighed = make_plan(spec, prof, cfg)
    assert blind.tables[0].n_slices == 2 and weighed.tables[0].n_slices == 1
    assert cost.stages(weighed.expected_work()).total < 0.95 * cost.stages(blind.expected_work()).total


def test_a_big_table_on_the_dpus_keeps_its_cold_tail_on_the_host_when_that_is_faster():
    """A table cut into many row groups spreads each bag over many groups, so many partial sums;
    with a steep skew the planner pools its cold tail on the host instead (the hybrid search
    covers the big tables on the DPUs, not only those left on the CPU)."""
    rows = ROWS + [60_000]               # 3.8 MB: 15 tiles of at most 256 KiB
    specs = SPECS + [TableSpec("big", rows[-1], DIM)]
    rng = np.random.default_rng(5)
    prof = build_profile([([sample_rows(r, BATCH * POOL, rng, skewed=True, salt=t, top1_share=0.8)
                            for t, r in enumerate(rows)], [np.arange(0, BATCH * POOL + 1, POOL)] * len(rows))
                          for _ in range(8)], rows)
    # a host this slow keeps no table on the CPU
    kw = dict(allow_cpu=True, value_mode="int32", batch_size=4096,
              cost=PlannerConfig().cost.with_(cpu={"lookups_per_s": 1e6}))
    all_on_dpus = make_plan(specs, prof, config("popularity", hybrid=False, **kw))
    hybrid = make_plan(specs, prof, config("popularity", **kw))
    assert all_on_dpus.tables[-1].placement == "pim" and all_on_dpus.tables[-1].n_host_rows == 0
    big = hybrid.tables[-1]
    assert big.placement == "pim" and 0 < big.n_host_rows < big.spec.rows
    assert hybrid.predicted["total"] < 0.95 * all_on_dpus.predicted["total"]
    hybrid.validate()


def _paired_batches(seed, n, rows=1000, pairs=8):
    """Bags of 20 rows that each hold one of ``pairs`` fixed row pairs: strong co-occurrence."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = rng.integers(0, rows, size=(BATCH, POOL))
        k = rng.integers(0, pairs, size=BATCH)
        idx[:, 0], idx[:, 1] = 2 * k, 2 * k + 1
        out.append(([idx.ravel()], [np.arange(0, BATCH * POOL + 1, POOL)]))
    return out


def test_a_cache_the_host_cannot_afford_is_dropped_unless_kept():
    """A table small enough to be copied whole loses its cache (routing every index would cost
    the host more than the DPU reads it saves); ``keep_caches`` keeps it, and then the pairs are
    read once and the results stay exact."""
    spec = [TableSpec("paired", 1000, DIM)]
    prof = build_profile(_paired_batches(1, 10), [1000])
    # int32 values: a DPU read is cheap (in fp32 soft-float adds make it worth the routing)
    dropped = make_plan(spec, prof, config("cache", value_mode="int32"))
    kept = make_plan(spec, prof, config("cache", value_mode="int32", keep_caches=True))
    assert dropped.tables[0].cache_ptr is None and dropped.is_whole(0)
    assert kept.tables[0].cache_ptr is not None and not kept.is_whole(0)
    weights = [np.random.default_rng(0).standard_normal((1000, DIM)).astype(np.float32)]
    for idx, off in _paired_batches(2, 1):
        route = kept.route(0, idx[0], off[0])
        assert route.reads_saved >= BATCH          # every bag holds a cached pair
        got = replay(kept, weights, idx, off)[0]
        want = np.add.reduceat(weights[0][idx[0]].astype(np.float64), off[0][:-1])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
