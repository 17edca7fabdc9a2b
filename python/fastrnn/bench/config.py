"""What one benchmark run measures: the cases, dtype, modes, implementations, and how it is timed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .workloads import (BASELINE, CELLS, DEFAULT_IMPLS, DEVICES, DTYPES, IMPLS, MODES,
                        Case)


def grid(cells: tuple[str, ...], T: int, B: int, I: int, H: int,  # noqa: E741
         layers: int = 1) -> tuple[Case, ...]:
    """Every cell in ``cells`` at one shape."""
    return tuple(Case(cell, T, B, I, H, layers) for cell in cells)


@dataclass(frozen=True)
class BenchConfig:
    """One run: every case x mode x thread count x implementation."""

    cases: tuple[Case, ...] = grid(tuple(CELLS), T=100, B=32, I=256, H=256)
    dtype: str = "float32"
    device: str = "cpu"  # "cuda": whether it can run here is workloads.check_device's to say
    modes: tuple[str, ...] = MODES
    impls: tuple[str, ...] = DEFAULT_IMPLS
    repeats: int = 20  # timed calls per (case, mode, implementation)
    warmup: int = 3  # untimed calls of each first
    block: int = 5  # timed calls per run; runs alternate between the implementations
    settle_ms: float = 250.0  # idle time before each run, for the previous one's threads to stop
    rewarm_ms: float = 50.0  # then untimed calls of the run's step, out of the idle's transient
    threads: tuple[int, ...] | None = None  # torch.set_num_threads, each in turn; None: torch's default
    seed: int = 0
    peak: bool = True  # measure the GEMM peak first
    peak_size: int = 2048  # M = N = K of the peak GEMM
    peak_repeats: int = 5

    def __post_init__(self) -> None:
        if not self.cases:
            raise ValueError("no case to run")
        for name in ("repeats", "block", "peak_size", "peak_repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "settle_ms", "rewarm_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.threads is not None:
            if not self.threads:
                raise ValueError("threads must name at least one thread count")
            if min(self.threads) < 1:
                raise ValueError(f"threads must be at least 1, got {min(self.threads)}")
        if self.device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {self.device!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        _check_names("modes", self.modes, MODES)
        _check_names("impls", self.impls, tuple(IMPLS))
        if BASELINE not in self.impls:
            raise ValueError(f"impls must include {BASELINE}, the baseline every other "
                             f"implementation is checked and compared against")

    def replace(self, **changes) -> BenchConfig:
        return dataclasses.replace(self, **changes)


def _check_names(field: str, names: tuple[str, ...], known: tuple[str, ...]) -> None:
    if not names:
        raise ValueError(f"{field} must name at least one of {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {field} {', '.join(unknown)}; known: {', '.join(known)}")


PRESETS = {
    # The default run: every cell at one shape, under a minute on 2 idle cores.
    "default": BenchConfig(),
    # CI: a tiny shape that checks the whole path end to end in a few seconds; its times mean little.
    "smoke": BenchConfig(cases=grid(tuple(CELLS), T=5, B=3, I=8, H=8), repeats=2, warmup=1,
                         block=1, settle_ms=0.0, rewarm_ms=0.0, peak_size=256,
                         peak_repeats=1),
    # The table of the performance issue: (T, B, I=H) per cell, 1 layer unless stated; then
    # packed batches of lengths uniform on 1..T, where torch.nn's LSTM has no oneDNN path.
    "readme": BenchConfig(cases=(
        Case("lstm", 100, 32, 256, 256),
        Case("lstm", 100, 1, 256, 256),
        Case("gru", 100, 32, 256, 256),
        Case("gru", 100, 1, 256, 256),
        Case("rnn_tanh", 100, 32, 256, 256),
        Case("lstm", 20, 256, 1024, 1024),
        Case("lstm", 50, 64, 512, 512, layers=2),
        Case("lstm", 100, 32, 256, 256, packed="uniform"),
        Case("gru", 100, 32, 256, 256, packed="uniform"),
        Case("lstm", 100, 32, 256, 256, layers=2, bidirectional=True, batch_first=True,
             packed="uniform"),
        Case("lstm", 100, 32, 256, 256, dtype="float64"),
        # issue 19's bfloat16 rows (torch.nn's LSTM runs them through oneDNN)
        Case("lstm", 100, 32, 256, 256, dtype="bfloat16"),
        Case("gru", 100, 32, 256, 256, dtype="bfloat16"),
        Case("rnn_tanh", 100, 32, 256, 256, dtype="bfloat16"),
        Case("lstm", 20, 256, 1024, 1024, dtype="bfloat16"),
    )),
    # float64 at the sizes of issue 20 (scientific and time-series models): one step of the
    # time-series example's LSTMCell(1, 51) and (51, 51) at B = 97 as T = 1 calls, then whole
    # sequences at small and moderate sizes (the three cells at T = 100, B = 32, H = 256: the
    # issue's 1.2x target for modules).
    "float64": BenchConfig(dtype="float64", cases=(
        Case("lstm", 1, 97, 1, 51),
        Case("lstm", 1, 97, 51, 51),
        Case("lstm", 1, 32, 256, 256),
        Case("lstm", 200, 8, 64, 64),
        Case("lstm", 100, 32, 256, 256),
        Case("gru", 100, 32, 256, 256),
        Case("rnn_tanh", 100, 32, 256, 256),
        Case("gru", 200, 8, 64, 64),
        Case("rnn_tanh", 200, 8, 64, 64),
    )),
}
