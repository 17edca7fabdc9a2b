"""The command line: ``python -m fastrnn.bench [--smoke] [--json PATH] [overrides]``."""

from __future__ import annotations

import argparse
import sys

import torch

from .check import Check, check_parity
from .config import PRESETS, BenchConfig
from .environment import Environment, load_average
from .report import format_footer, format_header, format_load, format_table
from .results import Result, add_speedups, write_json
from .timing import time_interleaved
from .workloads import (BASELINE, CELLS, DTYPES, FLOP_MODEL, IMPLS, MODES, STEPS, Workload,
                        flop_count, make_workload)


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default = PRESETS["default"]
    p = argparse.ArgumentParser(
        prog="python -m fastrnn.bench",
        description="Time fastrnn against torch.nn (1 layer, unidirectional) on the CPU. "
                    "Flags left out take the preset's value (--smoke, or the default run).")
    p.add_argument("--smoke", action="store_true",
                   help="tiny shape and 2 repeats: checks the whole path in seconds (CI)")
    p.add_argument("--json", metavar="PATH", help="also write config, machine and results here")
    p.add_argument("--T", type=int, help=f"sequence length (default {default.T})")
    p.add_argument("--B", type=int, help=f"batch size (default {default.B})")
    p.add_argument("--I", type=int, help=f"input size (default {default.I})")
    p.add_argument("--H", type=int, help=f"hidden size (default {default.H})")
    p.add_argument("--dtype", choices=tuple(DTYPES), help=f"(default {default.dtype})")
    p.add_argument("--cells", type=_names,
                   help=f"comma-separated, from {','.join(CELLS)} (default all)")
    p.add_argument("--modes", type=_names,
                   help=f"comma-separated, from {','.join(MODES)} (default both)")
    p.add_argument("--repeats", type=int,
                   help=f"timed calls per cell, mode and implementation (default {default.repeats})")
    p.add_argument("--warmup", type=int,
                   help=f"untimed calls of each first (default {default.warmup})")
    p.add_argument("--block", type=int,
                   help=f"timed calls per run; runs alternate between implementations "
                        f"(default {default.block})")
    p.add_argument("--settle-ms", type=float,
                   help=f"idle time before each run, for the thread pools of the previous run to "
                        f"go to sleep (default {default.settle_ms:g})")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--seed", type=int, help=f"(default {default.seed})")
    return p.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    base = PRESETS["smoke" if args.smoke else "default"]
    overrides = {name: getattr(args, name)
                 for name in ("T", "B", "I", "H", "dtype", "cells", "modes", "repeats", "warmup",
                              "block", "settle_ms", "threads", "seed")
                 if getattr(args, name) is not None}
    return base.replace(**overrides)


def _workloads(config: BenchConfig) -> list[Workload]:
    dtype = DTYPES[config.dtype]
    return [make_workload(CELLS[name], config.T, config.B, config.I, config.H, dtype, config.seed)
            for name in config.cells]


def run_checks(config: BenchConfig, workloads: list[Workload]) -> list[Check]:
    checks = []
    for workload in workloads:
        forwards = {impl: make(workload) for impl, make in IMPLS.items()}
        for mode in config.modes:
            checks += check_parity(workload, mode, forwards, BASELINE, config.dtype)
    return checks


def time_workload(config: BenchConfig, workload: Workload, mode: str) -> list[Result]:
    steps = {impl: STEPS[mode](make(workload), workload) for impl, make in IMPLS.items()}
    times = time_interleaved(steps, config.repeats, config.warmup, config.block,
                             config.settle_ms / 1e3)
    flop = flop_count(workload.cell, mode, config.T, config.B, config.I, config.H)
    return [Result.from_times(workload.cell.name, mode, impl, t, flop) for impl, t in times.items()]


def _progress(results: list[Result]) -> str:
    first = results[0]
    timed = ", ".join(f"{r.impl} {r.median_ms:.3f} ms" for r in results)
    return f"  {first.cell} {first.mode}: {timed}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"fastrnn.bench: {e}", file=sys.stderr)
        return 2
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    env = Environment.collect()
    print(format_header(config, env), flush=True)

    workloads = _workloads(config)
    checks = run_checks(config, workloads)
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"\nparity check FAILED: {len(failed)} of {len(checks)} tensors differ from "
              f"{BASELINE}; no timings reported.", file=sys.stderr)
        for c in failed:
            print("  " + c.describe(), file=sys.stderr)
        return 1
    worst = max(checks, key=lambda c: c.max_abs_err / c.scale if c.scale else 0.0)
    print(f"  check     {len(checks)} tensors (outputs; gradients in train) agree with {BASELINE}")
    print(f"            worst: {worst.describe()}", flush=True)

    results = []
    for workload in workloads:
        for mode in config.modes:
            timed = time_workload(config, workload, mode)
            print(_progress(timed), file=sys.stderr, flush=True)
            results += timed
    add_speedups(results, BASELINE)

    print()
    print(format_table(results, BASELINE))
    print(format_footer(config, env, BASELINE, FLOP_MODEL))
    load_at_end = load_average()
    print(f"load averages at end: {format_load(load_at_end)} (at start: "
          f"{format_load(env.load_average)}); other load on the machine widens min..max.")
    if args.json:
        write_json(args.json, config=config, environment=env, load_average_end=load_at_end,
                   baseline=BASELINE, flop_model=FLOP_MODEL, checks=checks, results=results)
        print(f"results written to {args.json}")
    return 0
