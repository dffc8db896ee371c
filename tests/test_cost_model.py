"""The UPMEM cost model against published figures (upmem.md §4, §7), each within +-25%.

Every figure compared here is a MODELLED number against a published measurement.
"""
import numpy as np
import pytest

from updlrm.pim.cost_model import (LIGHT_GIBPS, LIGHT_NR_DPUS, LIGHT_SIZES, BatchWork, CostModel, CpuModel,
                                   DpuModel, TransferModel, pel_cloud8_work)

TOL = 0.25


def close(model: float, published: float, tol: float = TOL) -> bool:
    return abs(model - published) <= tol * published


# ---- DPU side --------------------------------------------------------------------------------

@pytest.mark.parametrize("write, published_mbps", [(False, 628.23), (True, 633.22)])
def test_mram_bandwidth_2048_byte_dma_matches_prim(write, published_mbps):
    # PrIM: sustained MRAM bandwidth with 2,048-byte DMAs (upmem.md §4.2)
    model = DpuModel().mram_bandwidth(2048, write=write) / 1e6
    assert close(model, published_mbps), model


def test_mram_bandwidth_grows_with_dma_size_towards_two_bytes_per_cycle():
    d = DpuModel()
    sizes = [8, 16, 32, 64, 128, 256, 512, 1024, 2048]
    bw = [d.mram_bandwidth(s) for s in sizes]
    assert all(a < b for a, b in zip(bw, bw[1:]))
    # theoretical maximum 2 B/cycle = 700 MB/s at 350 MHz (upmem.md §4.2); small DMAs are latency-bound
    assert bw[-1] < 2 * d.freq_hz and bw[0] < 0.06 * 2 * d.freq_hz


def test_dma_over_2048_bytes_is_split_into_several_calls():
    d = DpuModel()
    assert d.dma_cycles(4096) == pytest.approx(2 * d.dma_alpha_read + d.dma_beta * 4096)
    assert d.dma_cycles(12) == pytest.approx(d.dma_alpha_read + d.dma_beta * 16)   # padded to 8 bytes


@pytest.mark.parametrize("mode, published_mops", [("int32", 58.56), ("fp32", 4.91)])
def test_add_throughput_matches_prim_arithmetic(mode, published_mops):
    # PrIM Fig. 4: INT32 ADD 58.56 MOPS, FLOAT ADD 4.91 MOPS at 350 MHz, >= 11 tasklets
    assert close(DpuModel().add_throughput(mode, 16) / 1e6, published_mops)


def test_issue_rate_saturates_at_eleven_tasklets():
    d = DpuModel()
    rates = [d.add_throughput("int32", t) for t in range(1, 25)]
    assert rates[10] == pytest.approx(rates[23])               # 11 tasklets already saturate
    assert rates[0] == pytest.approx(rates[10] / 11)            # 1 tasklet: 1/11 of the peak


# ---- host <-> DPU transfers ------------------------------------------------------------------

@pytest.mark.parametrize("direction", ["to_dpu", "from_dpu"])
def test_32_rank_push_bandwidth_reproduces_light(direction):
    tm = TransferModel()
    for size, gibps in zip(LIGHT_SIZES, LIGHT_GIBPS[direction]):
        model = LIGHT_NR_DPUS * size / tm.seconds(size, LIGHT_NR_DPUS, direction) / 2**30
        assert close(model, gibps), (size, model, gibps)


@pytest.mark.parametrize("direction", ["to_dpu", "from_dpu"])
def test_32_rank_push_bandwidth_between_calibration_points(direction):
    # leave one LIGHT point out, calibrate on the others, predict it
    sizes, measured = list(LIGHT_SIZES), list(LIGHT_GIBPS[direction])
    for k in range(2, len(sizes) - 1):
        gibps = dict(TransferModel().gibps)
        gibps[direction] = tuple(measured[:k] + measured[k + 1:])
        tm = TransferModel(sizes=tuple(sizes[:k] + sizes[k + 1:]), gibps=gibps)
        model = LIGHT_NR_DPUS * sizes[k] / tm.seconds(sizes[k], LIGHT_NR_DPUS, direction) / 2**30
        assert close(model, measured[k]), (sizes[k], model, measured[k])


@pytest.mark.parametrize("size, published_ms", [(("to_dpu", 1024), 0.56), (("from_dpu", 1024), 1.06),
                                                 (("to_dpu", 65536), 8.8), (("from_dpu", 65536), 15.3)])
def test_32_rank_per_call_time_matches_light(size, published_ms):
    direction, per_dpu = size
    assert close(TransferModel().seconds(per_dpu, 2048, direction) * 1e3, published_ms)


@pytest.mark.parametrize("direction, published_gbps", [("to_dpu", 6.68), ("from_dpu", 4.74)])
def test_one_rank_push_bandwidth_matches_prim(direction, published_gbps):
    # PrIM Fig. 10: one rank of 64 DPUs, 32 MB per DPU
    model = 64 * 32e6 / TransferModel().seconds(32e6, 64, direction) / 1e9
    assert close(model, published_gbps)


def test_transfer_time_has_a_per_call_floor_and_grows_with_bytes():
    tm = TransferModel()
    small = tm.seconds(8, 2048, "to_dpu")
    assert small == pytest.approx(tm.call_cost("to_dpu"), rel=0.05)
    assert tm.seconds(8, 64, "to_dpu") < small < tm.seconds(4096, 2048, "to_dpu")
    assert tm.seconds(0, 2048, "to_dpu") == 0.0


# ---- whole batches ---------------------------------------------------------------------------

def test_pim_embedding_lookup_logged_batch_time():
    # logged: 3.3-4.6 ms per batch (upmem.md §7.1); the model must land within 25% of that range
    total_ms = CostModel().stages(pel_cloud8_work()).total * 1e3
    assert 3.3 * (1 - TOL) <= total_ms <= 4.6 * (1 + TOL), total_ms


def test_kernel_time_is_max_of_dma_and_issue():
    cm = CostModel()
    d = cm.dpu
    w = BatchWork.zeros(2, "int32")
    w.rows[:] = 100
    w.elements[:] = 100 * 64
    w.dma_read_calls[:] = 100
    w.dma_read_bytes[:] = 100 * 256
    w.bags[:] = [16, 2]            # DPU 1 has 2 bags -> only 2 tasklets issue
    k = cm.kernel_seconds(w)
    instr = 100 * (d.instr_per_lookup + 64 * 6.0) + w.bags * (d.instr_per_bag + 64 * d.instr_per_zero_element)
    dma = 100 * (d.dma_alpha_read + 0.5 * 256)
    assert k[0] == pytest.approx(max(dma, instr[0]) / d.freq_hz)
    assert k[1] == pytest.approx(max(dma, instr[1] * 11 / 2) / d.freq_hz)
    w.value_mode = "fp32"          # soft-float adds: ~12x the int32 instruction count per element
    assert cm.kernel_seconds(w)[0] > 8 * k[0]


def test_from_counters_uses_emulator_dma_and_transfer_records():
    counters = pytest.importorskip("updlrm.pim.counters")
    c = np.zeros(3, dtype=counters.DPU_COUNTERS)
    c["dma"]["read_calls"] = [10, 20, 0]
    c["dma"]["read_bytes"] = [640, 1280, 0]
    c["to_dpu_calls"] = 1
    c["to_dpu_bytes"] = [64, 64, 64]
    c["from_dpu_calls"] = 1
    c["from_dpu_bytes"] = [32, 32, 32]
    w = BatchWork.from_counters(c, rows=[10, 20, 0], elements=[160, 320, 0], bags=[4, 4, 0], value_mode="int32")
    cm = CostModel()
    k = cm.kernel_seconds(w)
    assert k[2] == 0 and k[1] > k[0] > 0
    st = cm.stages(w)
    assert st.h2d == pytest.approx(cm.transfer.seconds(64, 3, "to_dpu"))
    assert st.d2h == pytest.approx(cm.transfer.seconds(32, 3, "from_dpu"))


def test_cpu_tables_overlap_the_kernel():
    cm = CostModel(cpu=CpuModel(lookups_per_s=1e6, ref_dim=64))
    w = pel_cloud8_work()
    base = cm.stages(w)
    w.cpu_lookup_units = 100.0          # 0.1 ms of CPU work, hidden behind the ~1 ms kernel
    assert cm.stages(w).total == pytest.approx(base.total)
    w.cpu_lookup_units = 10_000.0       # 10 ms: now the CPU tables set the pace
    assert cm.stages(w).total == pytest.approx(base.total - base.kernel + 0.01)


def test_host_scatter_counts_lookups_and_partial_sums():
    cm = CostModel(scatter_s_per_read=2e-9, copy_s_per_lookup=1e-9, scatter_s_per_partial=30e-9)
    w = BatchWork.zeros(2, "int32")
    w.rows[:], w.bags[:] = 10, 4
    w.host_routed_reads, w.host_copy_lookups, w.host_partials = 1000, 500, 8
    assert cm.stages(w).scatter == pytest.approx(1000 * 2e-9 + 500 * 1e-9 + 8 * 30e-9)
    w.host_partials = 0                    # partial sums the DPUs write are not host scatter work
    assert cm.stages(w).scatter == pytest.approx(1000 * 2e-9 + 500 * 1e-9)
