"""One Result per (cell, mode, implementation), and the JSON file of a run."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
from dataclasses import dataclass


@dataclass
class Result:
    cell: str
    mode: str
    impl: str
    times_ms: list[float]  # every timed run, in the order run
    median_ms: float
    min_ms: float
    max_ms: float
    gflop: float  # per step, by the FLOP model
    gflops: float  # GFLOP/s at the median
    speedup: float | None = None  # baseline median / this median; None until compared

    @classmethod
    def from_times(cls, cell: str, mode: str, impl: str, times_s: list[float],
                   flop: float) -> Result:
        times_ms = [t * 1e3 for t in times_s]
        median_ms = statistics.median(times_ms)
        return cls(cell, mode, impl, times_ms, median_ms, min(times_ms), max(times_ms),
                   gflop=flop / 1e9, gflops=flop / 1e9 / (median_ms / 1e3))


def add_speedups(results: list[Result], baseline: str) -> None:
    """Set each result's speedup against the baseline's result of the same cell and mode."""
    base = {(r.cell, r.mode): r.median_ms for r in results if r.impl == baseline}
    for r in results:
        if (r.cell, r.mode) in base:
            r.speedup = base[(r.cell, r.mode)] / r.median_ms


def write_json(path: str, **sections) -> None:
    """Write ``sections`` (dataclasses, lists of them, or plain values) as one JSON object."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump({name: plain(value) for name, value in sections.items()}, f, indent=2)
        f.write("\n")
