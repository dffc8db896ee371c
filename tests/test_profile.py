"""AccessProfile: exact and sketched counts, co-occurring pairs, persistence."""
import itertools
import json

import numpy as np
import pytest

from updlrm.errors import InvalidInputError
from updlrm.pim.profile import AccessProfile, CountMinSketch, build_profile
from updlrm.sparse import SparseBatch
from updlrm.datasets.synthetic import sample_rows

ROWS = [3000, 60000]      # table 1 is sketched (exact_limit below)
BAGS, POOL = 200, 12


def make_samples(seed=0, n=6):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        idx = [sample_rows(r, BAGS * POOL, rng, skewed=True, salt=t) for t, r in enumerate(ROWS)]
        off = [np.arange(0, BAGS * POOL + 1, POOL) for _ in ROWS]
        out.append((idx, off))
    return out


@pytest.fixture(scope="module")
def samples():
    return make_samples()


@pytest.fixture(scope="module")
def profile(samples):
    return build_profile(samples, ROWS, names=["small", "big"], exact_limit=10_000, top_k=256, pair_rows=64,
                         max_pairs=500, sketch_width=1 << 12, sketch_depth=4)


def true_counts(samples, t):
    return np.bincount(np.concatenate([s[0][t] for s in samples]), minlength=ROWS[t])


def test_exact_counts_match_bincount(samples, profile):
    p = profile[0]
    assert p.exact
    np.testing.assert_array_equal(p.counts, true_counts(samples, 0))
    assert p.lookups == sum(len(s[0][0]) for s in samples) and p.bags == BAGS * len(samples)
    assert p.mean_pooling == POOL
    truth = np.sort(true_counts(samples, 0))[::-1]
    assert p.top_share(30) == pytest.approx(truth[:30].sum() / truth.sum())
    np.testing.assert_array_equal(p.hot_counts[:50], truth[:50])


def test_sketch_never_undercounts_and_respects_its_error_bound(samples, profile):
    p = profile[1]
    assert not p.exact
    truth = true_counts(samples, 1)
    est = p.estimate(np.arange(ROWS[1]))
    assert np.all(est >= truth)
    bound = p.sketch.error_bound(p.lookups)
    # count-min: P(error > e/w * N) <= exp(-depth) per row
    assert np.mean(est - truth > bound) <= np.exp(-p.sketch.depth)
    # the heaviest rows are found, with estimates within the bound
    top_true = np.argsort(-truth)[:20]
    assert set(top_true) <= set(p.hot_rows.tolist())
    assert np.all(p.estimate(top_true) - truth[top_true] <= bound)


def test_expected_counts_keep_total_and_hot_rows(profile):
    for p in profile.tables:
        e = p.expected_counts()
        assert e.shape == (p.num_rows,)
        assert e.sum() == pytest.approx(p.lookups, rel=0.02)


def test_pair_counts_are_bags_containing_both(samples, profile):
    for t, p in enumerate(profile.tables):
        assert len(p.pairs) > 0
        bags = [set(s[0][t][b * POOL:(b + 1) * POOL].tolist()) for s in samples for b in range(BAGS)]
        for (a, b), c in zip(p.pairs[:40].tolist(), p.pair_counts[:40].tolist()):
            assert c == sum(1 for bag in bags if a in bag and b in bag)
        assert np.all(np.diff(p.pair_counts) <= 0)
        # the most frequent pair among the pool's rows is the first one reported
        pool = p.hot_rows[:64].tolist()
        brute = max(itertools.combinations(pool, 2), key=lambda ab: sum(1 for g in bags if ab[0] in g and ab[1] in g))
        best = sum(1 for g in bags if brute[0] in g and brute[1] in g)
        assert p.pair_counts[0] == best
        # nothing outside the pool co-occurs more often than the stated bound allows
        outside = set(np.argsort(-true_counts(samples, t))[80:200].tolist()) - set(pool)
        counts = true_counts(samples, t)
        assert all(counts[r] <= p.pair_untracked_bound for r in outside)


def test_sparse_batches_and_torch_style_offsets_give_the_same_profile(samples, profile):
    batches = [SparseBatch.from_jagged(idx, off, include_last_offset=True) for idx, off in samples]
    torch_style = [(idx, [o[:-1] for o in off]) for idx, off in samples]
    kwargs = dict(names=["small", "big"], exact_limit=10_000, top_k=256, pair_rows=64, max_pairs=500,
                  sketch_width=1 << 12, sketch_depth=4)
    for other in (build_profile(batches, ROWS, **kwargs), build_profile(torch_style, ROWS, **kwargs)):
        np.testing.assert_array_equal(other[0].counts, profile[0].counts)
        np.testing.assert_array_equal(other[1].sketch.table, profile[1].sketch.table)
        np.testing.assert_array_equal(other[1].pairs, profile[1].pairs)


def test_save_load_round_trip(tmp_path, profile):
    profile.save(tmp_path / "prof")
    back = AccessProfile.load(tmp_path / "prof.json")
    assert back.summary() == profile.summary() and back.names == ["small", "big"]
    for a, b in zip(profile.tables, back.tables):
        np.testing.assert_array_equal(a.hot_rows, b.hot_rows)
        np.testing.assert_array_equal(a.pairs, b.pairs)
        np.testing.assert_array_equal(a.estimate(np.arange(a.num_rows)), b.estimate(np.arange(b.num_rows)))
        assert a.pair_untracked_bound == b.pair_untracked_bound
        assert a.bag_length_sq == b.bag_length_sq == a.bags * POOL ** 2


def test_bag_length_variation(tmp_path):
    # bags of 1 and 3 indices: mean 2, standard deviation 1
    prof = build_profile([([np.array([0, 1, 2, 3])], [np.array([0, 1, 4])])], [4])
    assert prof[0].mean_pooling == 2
    assert prof[0].bag_length_cv == pytest.approx(0.5)
    prof.save(tmp_path / "prof")
    assert AccessProfile.load(tmp_path / "prof")[0].bag_length_cv == pytest.approx(0.5)
    fixed = build_profile([([np.arange(4)], [np.array([0, 2, 4])])], [4])
    assert fixed[0].bag_length_cv == 0


def test_load_rejects_other_versions(tmp_path, profile):
    profile.save(tmp_path / "prof")
    meta = json.loads((tmp_path / "prof.json").read_text())
    meta["version"] = 999
    (tmp_path / "prof.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidInputError, match="version 999"):
        AccessProfile.load(tmp_path / "prof")


def test_bad_samples_are_rejected():
    with pytest.raises(InvalidInputError, match="out of range"):
        build_profile([([np.array([0, 5])], [np.array([0, 2])])], [5])
    with pytest.raises(InvalidInputError, match="one per table"):
        build_profile([([np.array([0])], [np.array([0, 1])])], [5, 5])
    with pytest.raises(InvalidInputError, match="power of two"):
        CountMinSketch.empty(1000, 4)
    with pytest.raises(InvalidInputError, match="re-iterable"):
        build_profile(iter([([np.array([0])], [np.array([0, 1])])]), [5])
