"""What one benchmark run measures: shape, dtype, cells, modes, and how it is timed."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .workloads import CELLS, DTYPES, MODES


@dataclass(frozen=True)
class BenchConfig:
    """One run. Shapes follow torch.nn: input ``[T, B, I]``, hidden size ``H``, 1 layer, 1 direction."""

    T: int = 100
    B: int = 32
    I: int = 256  # noqa: E741  (the input size, named as everywhere in fastrnn)
    H: int = 256
    dtype: str = "float32"
    cells: tuple[str, ...] = tuple(CELLS)
    modes: tuple[str, ...] = MODES
    repeats: int = 20  # timed calls per (cell, mode, implementation)
    warmup: int = 3  # untimed calls of each first
    block: int = 5  # timed calls per run; runs alternate between the implementations
    settle_ms: float = 250.0  # idle time before each run, for the previous one's threads to stop
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("T", "B", "I", "H", "repeats", "block"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("warmup", "settle_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be at least 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        _check_names("cells", self.cells, tuple(CELLS))
        _check_names("modes", self.modes, MODES)

    def replace(self, **changes) -> BenchConfig:
        return dataclasses.replace(self, **changes)


def _check_names(field: str, names: tuple[str, ...], known: tuple[str, ...]) -> None:
    if not names:
        raise ValueError(f"{field} must name at least one of {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {field} {', '.join(unknown)}; known: {', '.join(known)}")


PRESETS = {
    # The default run: under a minute on 2 idle cores.
    "default": BenchConfig(),
    # CI: a tiny shape that checks the whole path end to end in a few seconds; its times mean little.
    "smoke": BenchConfig(T=5, B=3, I=8, H=8, repeats=2, warmup=1, block=1, settle_ms=0.0),
}
