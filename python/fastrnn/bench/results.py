"""One Result per (thread count, case, mode, implementation), and the JSON and CSV files of a run."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import statistics
from dataclasses import dataclass

from .memory import SavedBytes
from .workloads import Case, layout_name


@dataclass
class Result:
    threads: int  # torch.get_num_threads while timed
    cell: str
    T: int
    B: int
    I: int  # noqa: E741
    H: int
    layers: int
    bidirectional: bool
    batch_first: bool
    packed: str | None  # Case.packed: the length distribution of a packed input, or None
    mode: str
    impl: str
    times_ms: list[float]  # every timed run, in the order run
    median_ms: float
    min_ms: float
    max_ms: float
    gflop: float  # per step, by the FLOP model (packed: the rows of the sequences only)
    gflops: float  # GFLOP/s at the median
    pct_peak: float | None = None  # gflops / the OpenBLAS sgemm peak at this thread count, in %
    speedup: float | None = None  # baseline median / this median; None until compared
    # train only (None in inference, which saves nothing): bytes autograd saved for backward in
    # one forward, without and with the input and the parameters (see memory)
    saved_bytes: int | None = None
    saved_bytes_all: int | None = None
    dtype: str | None = None  # Case.dtype: the case's own dtype, or None for the run's

    @classmethod
    def from_times(cls, threads: int, case: Case, mode: str, impl: str, times_s: list[float],
                   flop: float, peak_gflops: float | None,
                   saved: SavedBytes | None = None) -> Result:
        times_ms = [t * 1e3 for t in times_s]
        median_ms = statistics.median(times_ms)
        gflops = flop / 1e9 / (median_ms / 1e3)
        pct_peak = None if not peak_gflops else 100.0 * gflops / peak_gflops
        return cls(threads, case.cell, case.T, case.B, case.I, case.H, case.layers,
                   case.bidirectional, case.batch_first, case.packed, mode, impl, times_ms,
                   median_ms, min(times_ms), max(times_ms), gflop=flop / 1e9, gflops=gflops, pct_peak=pct_peak,
                   saved_bytes=None if saved is None else saved.extra,
                   saved_bytes_all=None if saved is None else saved.all, dtype=case.dtype)

    @property
    def group(self) -> tuple:
        """What results compared with each other share: all but the implementation."""
        return (self.threads, self.cell, self.T, self.B, self.I, self.H, self.layers,
                self.bidirectional, self.batch_first, self.packed, self.mode, self.dtype)

    @property
    def shape(self) -> str:
        return f"{self.T}x{self.B}x{self.I}x{self.H}"

    @property
    def layout(self) -> str:
        return layout_name(self.batch_first, self.packed)


def add_speedups(results: list[Result], baseline: str) -> None:
    """Set each result's speedup against the baseline's result of the same group."""
    base = {r.group: r.median_ms for r in results if r.impl == baseline}
    for r in results:
        if r.group in base:
            r.speedup = base[r.group] / r.median_ms


def make_parent_dir(path: str) -> None:
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)


def write_json(path: str, **sections) -> None:
    """Write ``sections`` (dataclasses, lists of them, or plain values) as one JSON object."""
    def plain(value):
        if dataclasses.is_dataclass(value):
            return dataclasses.asdict(value)
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    make_parent_dir(path)
    with open(path, "w") as f:
        json.dump({name: plain(value) for name, value in sections.items()}, f, indent=2)
        f.write("\n")


CSV_COLUMNS = ("threads", "cell", "T", "B", "I", "H", "layers", "bidirectional", "batch_first",
               "packed", "mode", "impl",
               "median_ms", "min_ms", "max_ms", "gflop", "gflops", "pct_peak", "speedup",
               "saved_bytes", "saved_bytes_all", "dtype")


def write_csv(path: str, results: list[Result], columns: tuple[str, ...] = CSV_COLUMNS) -> None:
    """One row per result, ``columns``; empty cells where a value is None (speedup: no baseline;
    saved bytes: inference; packed: a padded input)."""
    make_parent_dir(path)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for r in results:
            writer.writerow(["" if getattr(r, c) is None else getattr(r, c) for c in columns])
