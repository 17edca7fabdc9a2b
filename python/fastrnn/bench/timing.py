"""Timing of steps (wall clock on the CPU, CUDA events on the GPU), implementations interleaved
run by run.

A run is ``block`` back-to-back timed calls of one step, after ``settle_s`` seconds of idling and
then ``rewarm_s`` seconds of untimed calls of the same step.
Runs alternate between the steps, in an order rotated every round, so drift of the machine (other
load, clocks, caches) reaches every step alike and no step always goes first. The idle time is there
because a thread pool that keeps spinning after a call takes the cores from whatever runs next: when
fastrnn's GEMMs ran on OpenBLAS's own workers (2**28 cycles of spinning, about 0.1 s), torch right
after measured twice its time on 2 cores. fastrnn now runs on torch's own pool (OpenBLAS stays
single-threaded inside it); the idle time keeps any such effect of either library out of the
figures. A run's calls are back to back, as a training loop's are.

The untimed calls after the idle time bring the machine back to the state a loop of calls runs
in: on the 2-vCPU VMs of this project, after 250 ms idle, the next ten fastrnn LSTM calls at
T=100 B=1 H=256 took 4.1, 2.7, 2.5, ... 2.0 ms (medians of 5) where back-to-back calls settle at
1.4 ms, and torch.nn's went 6.9, 5.0, ... 4.4 ms where they settle at 3.5: a transient of a few
ms after each idle, the same for both, that weighs most on the shortest calls.

On CUDA a call is timed from a CUDA event recorded just before it to one recorded after it, with
the queue drained first, so no call is charged another's work; gaps while the CPU launches kernels
count, as they do in a training loop that waits on each step.
"""

from __future__ import annotations

import gc
import time
from typing import Callable, Mapping

import torch

Step = Callable[[], None]
Timer = Callable[[Step], float]  # seconds one call of a step takes


def time_call(step: Step) -> float:
    """Seconds one call of ``step`` takes (CPU work is synchronous: nothing to wait for after)."""
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def time_call_cuda(step: Step) -> float:
    """Seconds one call of ``step`` takes on the current CUDA stream, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()  # what earlier calls queued is not this call's
    start.record()
    step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3  # elapsed_time is in ms


TIMERS: dict[str, Timer] = {"cpu": time_call, "cuda": time_call_cuda}


def _rotated(names: list[str], by: int) -> list[str]:
    by %= len(names)
    return names[by:] + names[:by]


def time_interleaved(steps: Mapping[str, Step], repeats: int, warmup: int, block: int = 1,
                     settle_s: float = 0.0, timer: Timer = time_call,
                     rewarm_s: float = 0.0) -> dict[str, list[float]]:
    """Seconds per call of each step by ``timer``, ``repeats`` calls each, in runs of up to
    ``block`` calls, each run after ``settle_s`` idle and then untimed calls of its step for
    ``rewarm_s`` (at least one call when it is above 0).

    ``warmup`` untimed calls of each step come first, interleaved call by call. The garbage
    collector is paused while timing, so a collection triggered by one step is not charged to it.
    """
    names = list(steps)
    for r in range(warmup):
        for name in _rotated(names, r):
            steps[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(-(-repeats // block)):
            for name in _rotated(names, r):
                if settle_s > 0:
                    time.sleep(settle_s)
                if rewarm_s > 0:
                    start = time.perf_counter()
                    steps[name]()
                    while time.perf_counter() - start < rewarm_s:
                        steps[name]()
                for _ in range(min(block, repeats - len(times[name]))):
                    times[name].append(timer(steps[name]))
    finally:
        if gc_was_enabled:
            gc.enable()
    return times
