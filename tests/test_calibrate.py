"""The CPU baseline: measured on the model's tables, carried by profile and plan, used by the
planner's CPU-vs-DPU decisions and by the PIM backend's per-batch fallback."""
import dataclasses

import numpy as np
import pytest

from updlrm.datasets.synthetic import random_batch
from updlrm.datasets.traces import extract_profile
from updlrm.errors import InvalidInputError
from updlrm.pim.backend import PimBackend
from updlrm.pim.calibrate import measure_cpu_rates
from updlrm.pim.cost_model import DEFAULT_CPU_LOOKUPS_PER_S, CostModel, CpuModel, CpuRates
from updlrm.pim.partitioner import PlannerConfig, make_plan, planner_cost, report
from updlrm.pim.plan import Plan
from updlrm.pim.profile import AccessProfile, build_profile
from updlrm.tables import EmbeddingTable

BATCH = 64


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    return [EmbeddingTable(f"t{i}", rng.standard_normal((n, d)).astype(np.float32))
            for i, (n, d) in enumerate([(3000, 16), (500, 32), (40, 16)])]


@pytest.fixture(scope="module")
def batches(tables):
    rng = np.random.default_rng(1)
    return [random_batch(tables, BATCH, pooling=(1, 12), skewed=True, rng=rng) for _ in range(6)]


@pytest.fixture(scope="module")
def profile(tables, batches):
    return build_profile(batches, [t.rows for t in tables], names=[t.name for t in tables])


def config(**kw):
    return PlannerConfig(nr_dpus=8, batch_size=BATCH, mram_bytes=(8 << 20) + (256 << 10), mram_reserve=8 << 20, **kw)


def test_batch_units_weigh_lookups_by_width_or_by_a_tables_own_rate(tables, batches):
    b = batches[0]
    n = [b.indices[t].size for t in range(3)]
    assert CpuModel(ref_dim=16).batch_units(b, tables) == n[0] + 2 * n[1] + n[2]
    assert CpuModel(ref_dim=16).batch_units(b, tables, [1]) == 2 * n[1]
    # t0 measured 4x slower per lookup than the overall rate: 4 units per lookup
    own = CpuModel(lookups_per_s=100.0, ref_dim=16, table_rates={"t0": 25.0})
    assert own.batch_units(b, tables) == pytest.approx(4 * n[0] + 2 * n[1] + n[2])
    assert own.seconds_units(own.units(tables[0], 50)) == pytest.approx(2.0)      # 50 lookups at 25/s
    cost = CostModel().with_cpu_rates(CpuRates(100.0, {"t0": 25.0}))
    assert cost.cpu == CpuModel(100.0, 64, {"t0": 25.0}) and cost.with_cpu_rates(None) is cost
    assert cost.with_cpu_rates(CpuRates(50.0)).cpu.table_rates == {}     # new rates replace the old per-table ones
    for bad in ((0.0, {}), (100.0, {"t0": -1.0})):
        with pytest.raises(InvalidInputError, match="must be > 0"):
            CpuRates(*bad)


def test_measured_rates_split_the_whole_time_by_each_tables_own(tables, batches, monkeypatch):
    import updlrm.pim.calibrate as calibrate
    # a fake clock: a warm-up and 3 passes over all tables take 1 s each, then 3 passes over
    # table t alone take (t + 1) / 2 s each
    ticks, now = [], 0.0
    for span in [1.0] * 4 + [0.5] * 3 + [1.0] * 3 + [1.5] * 3:
        ticks += [now, now + span]
        now += span
    monkeypatch.setattr(calibrate, "perf_counter", iter(ticks).__next__)
    rates = calibrate.measure_cpu_rates(tables, iter(batches), max_batches=4, ref_dim=16)
    units = sum(CpuModel(ref_dim=16).batch_units(b, tables) for b in batches[:4])
    assert rates.lookups_per_s == pytest.approx(units / 1.0)
    lookups = [sum(b.indices[t].size for b in batches[:4]) for t in range(3)]
    shares = [1 / 6, 2 / 6, 3 / 6]                    # of the whole second, in proportion 1 : 2 : 3
    for t, table in enumerate(tables):
        assert rates.table_rates[table.name] == pytest.approx(lookups[t] / shares[t])
    # the model's time for the whole sample is the measured whole
    model = CpuModel(lookups_per_s=rates.lookups_per_s, ref_dim=16, table_rates=rates.table_rates)
    assert sum(model.seconds_units(model.batch_units(b, tables)) for b in batches[:4]) == pytest.approx(1.0)


def test_measured_rates_on_the_real_kernel_are_finite(tables, batches):
    rates = measure_cpu_rates(tables, batches, repeats=2)
    assert np.isfinite(rates.lookups_per_s) and rates.lookups_per_s > 0
    assert sorted(rates.table_rates) == ["t0", "t1", "t2"] and min(rates.table_rates.values()) > 0


def test_measurement_rejects_bad_samples(tables, batches):
    with pytest.raises(InvalidInputError, match="at least one batch"):
        measure_cpu_rates(tables, [])
    with pytest.raises(InvalidInputError, match="repeats"):
        measure_cpu_rates(tables, batches, repeats=0)
    bad = random_batch(tables, 4, pooling=2, rng=np.random.default_rng(2))
    bad.indices[0][0] = tables[0].rows            # out of range: validated before timing
    with pytest.raises(InvalidInputError):
        measure_cpu_rates(tables, [bad])


def test_extract_profile_records_the_measured_rates(tables, batches, tmp_path):
    prof = extract_profile(batches, [t.rows for t in tables], batch_size=BATCH, cpu_tables=tables)
    assert prof.cpu_rates.lookups_per_s > 0 and len(prof.cpu_rates.table_rates) == 3
    prof.save(tmp_path / "p")
    assert AccessProfile.load(tmp_path / "p").cpu_rates == prof.cpu_rates
    assert extract_profile(batches, [t.rows for t in tables], batch_size=BATCH).cpu_rates is None


def test_planner_rate_precedence(profile):
    measured = dataclasses.replace(profile, cpu_rates=CpuRates(123e6, {"t0": 50e6}, "on the sample"))
    cost, rates = planner_cost(config(cpu_rates=CpuRates(7e6)), measured)       # the config's win
    assert cost.cpu.lookups_per_s == 7e6 and cost.cpu.table_rates == {} and rates.source == "given"
    cost, rates = planner_cost(config(), measured)                              # then the profile's
    assert cost.cpu.lookups_per_s == 123e6 and cost.cpu.table_rates == {"t0": 50e6}
    assert rates.source == "on the sample"
    cost, rates = planner_cost(config(), profile)                               # else the reference
    assert cost.cpu.lookups_per_s == rates.lookups_per_s == DEFAULT_CPU_LOOKUPS_PER_S
    assert "not measured" in rates.source


def test_a_fast_cpu_keeps_tables_on_the_host_and_the_plan_remembers_its_rate(tables, profile, tmp_path):
    slow = make_plan(tables, profile, config(cpu_rates=CpuRates(1e3)))
    fast = make_plan(tables, profile, config(cpu_rates=CpuRates(1e15, {"t1": 2e15})))
    assert all(tp.placement == "pim" for tp in slow.tables)
    assert all(tp.placement != "pim" for tp in fast.tables)
    fast.save(tmp_path / "plan")
    back = Plan.load(tmp_path / "plan.json")
    assert back.cpu_rates == CpuRates(1e15, {"t1": 2e15}, "given")
    rep = report(back)                                  # the plan's own rates by default
    assert rep.cpu_lookups_per_s == 1e15 and "given" in rep.format()
    assert report(back, CostModel()).cpu_rate_source == "given to the report"


def test_backend_falls_back_against_the_plans_rate(tables, profile, batches):
    # the plan puts every table on the DPUs; its (measured) CPU rate then decides each batch
    for rate, on_host in ((1e15, 1), (1e3, 0)):
        plan = make_plan(tables, profile, config(allow_cpu=False, cpu_rates=CpuRates(rate)))
        backend = PimBackend(plan=plan)
        backend.load(tables)
        assert backend.cost.cpu.lookups_per_s == rate
        backend.lookup(batches[0])
        assert backend.stats().extra["cpu_fallback_batches"] == on_host
        backend.close()


def test_a_backend_that_plans_itself_measures_the_cpu_without_a_profiles_rates(tables, profile):
    backend = PimBackend(nr_dpus=8)
    backend.load(tables, profile=profile)                   # a profile without rates
    rates = backend.plan.cpu_rates
    assert "uniform synthetic" in rates.source and sorted(rates.table_rates) == ["t0", "t1", "t2"]
    assert backend.cost.cpu.lookups_per_s == rates.lookups_per_s
    backend.close()
    measured = dataclasses.replace(profile, cpu_rates=CpuRates(5e6, {}, "on the sample"))
    backend = PimBackend(nr_dpus=8)
    backend.load(tables, profile=measured)
    assert backend.plan.cpu_rates.source == "on the sample" and backend.cost.cpu.lookups_per_s == 5e6
    backend.close()
