"""Contenders timed in turns, the way the benchmarks here compare updlrm with its baselines.

This VM's memory is fast at some moments and slow at others, and other processes come and go,
so contenders timed one after the other can see different machines. In turns, round by round,
they see the same ones; speedups are then taken per round.
"""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable

#: Pause before each turn: torch's OpenMP threads, onnxruntime's workers and the gather loop's
#: OpenMP team spin-wait for milliseconds after a call and would take the next contender's
#: cores (without it, updlrm measured up to 3x slower at B = 64 right after torch).
CONTENDER_GAP_S = 0.05


def interleaved_times(runs: dict[str, Callable[[], object]], repeats: int, calls: int = 1) -> dict[str, list[float]]:
    """Seconds per call, per contender, one entry per round.

    Every round each contender makes ``calls`` calls, in an order shuffled every round (seeded),
    so no contender always runs right after the same other one: that mattered (in-process A/B of
    one kernel against itself, the copy that ran right after torch was slower in 5 of 6 rounds,
    by up to 13%). The first round is a warm-up.
    """
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    shuffle = random.Random(0).shuffle
    for round_ in range(repeats + 1):
        shuffle(order)
        for name in order:
            fn = runs[name]
            time.sleep(CONTENDER_GAP_S)
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            if round_:
                times[name].append((time.perf_counter() - start) / calls)
    return times


def paired_speedup(times: dict[str, list[float]], name: str, baseline: str) -> float:
    """Median over rounds of baseline's time / name's time in the same round: steadier than a
    ratio of medians when the machine changes between rounds (run to run, the ratio of medians
    of the kernel at B = 1024, pooling 20-80 ranged 0.76-1.24 on this VM)."""
    return statistics.median(b / t for t, b in zip(times[name], times[baseline]))
