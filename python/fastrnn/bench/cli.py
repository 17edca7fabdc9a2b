"""The command line: ``python -m fastrnn.bench [--preset NAME] [overrides] [--json PATH]
[--csv PATH] [--plot PATH]``.

Console script: ``fastrnn-bench = "fastrnn.bench.cli:main"``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

import torch

from .check import Check, check_parity, check_parity_half, upcast
from .config import PRESETS, BenchConfig
from .environment import Environment, load_average
from .gpu import GPU_PRESETS, describe_runs, run_cuda
from .memory import SavedBytes, saved_for_backward
from .peak import Peak, measure_peak
from .plot import require_matplotlib, write_plot
from .report import format_footer, format_header, format_load, format_table, plot_title
from .results import Result, add_speedups, write_csv, write_json
from .timing import TIMERS, time_interleaved
from .workloads import (BASELINE, CELLS, CUDA_DTYPES, DEVICES, DTYPES, EXPERIMENTAL_CUDA,
                        FLOP_MODEL, HALF_DTYPES, IMPLS, MODES, STEPS, Case, Workload, check_device, exact_fp32,
                        flop_count, length_distribution, make_workload)

CASE_FIELDS = ("T", "B", "I", "H", "layers")  # flags that override every case of the preset


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(n) for n in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _length_distribution(text: str) -> str:
    try:
        return length_distribution(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    default = PRESETS["default"]
    p = argparse.ArgumentParser(
        prog="python -m fastrnn.bench",
        description="Time fastrnn against torch.nn on the CPU (with --device cuda or a gpu "
                    "preset, on the GPU against cuDNN and torch.nn without it; fastrnn there "
                    "needs FASTRNN_EXPERIMENTAL_CUDA=1). "
                    "A run is a list of cases (cell, shape, layers) from a preset; flags left out "
                    "take the preset's value.")
    p.add_argument("--preset", choices=(*PRESETS, *GPU_PRESETS), default="default",
                   help="default: every cell at T=100 B=32 I=H=256; smoke: a tiny shape, 2 repeats "
                        "(CI); readme: the cases of the performance table; float64: issue 20's "
                        "float64 cases, one steps to T=200; gpu (cuda): LSTM, GRU "
                        "and RNN tanh at T=100, B 1..256, H=I 256..1024, packed, bidirectional "
                        "and proj_size cases, float32 and bfloat16; gpu-quick: a subset of gpu "
                        "with fewer calls (.ci/gpu-check) (default: default)")
    p.add_argument("--list", action="store_true",
                   help="print the cases the run would time and exit (no GPU needed)")
    p.add_argument("--smoke", action="store_true", help="same as --preset smoke")
    p.add_argument("--json", metavar="PATH", help="also write config, machine and results here")
    p.add_argument("--csv", metavar="PATH",
                   help="also write one row per case, mode, thread count and implementation here")
    p.add_argument("--plot", metavar="PATH",
                   help=f"also draw the speedups over {BASELINE} here (bars per case and mode, one "
                        f"per other implementation; a panel per thread count); the format follows "
                        f"the extension (.png, .svg, .pdf); needs matplotlib")
    p.add_argument("--impls", type=_names,
                   help=f"comma-separated, from {','.join(IMPLS)}; must include {BASELINE}; "
                        f"reference is slow, for small shapes only (default "
                        f"{','.join(default.impls)})")
    p.add_argument("--T", type=int, help="sequence length, in every case")
    p.add_argument("--B", type=int, help="batch size, in every case")
    p.add_argument("--I", type=int, help="input size, in every case")
    p.add_argument("--H", type=int, help="hidden size, in every case")
    p.add_argument("--layers", type=int, help="num_layers, in every case")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional, in every case")
    p.add_argument("--batch-first", action="store_true",
                   help="batch-first input [B, T, I] (module built with batch_first=True), in "
                        "every case")
    p.add_argument("--packed", metavar="DIST", type=_length_distribution,
                   help="packed input, in every case: B sequences, the longest T, the others of "
                        "lengths drawn (seeded) uniformly on 1..T (DIST 'uniform') or on "
                        "ceil(DIST*T)..T (DIST a fraction in (0, 1]), packed inside each timed "
                        "call with pack_padded_sequence(enforce_sorted=False); torch.nn then runs "
                        "without oneDNN, which has no packed path")
    p.add_argument("--dtype", choices=tuple(CUDA_DTYPES),
                   help=f"(default {default.dtype}; the gpu presets run "
                        f"{' and '.join(GPU_PRESETS['gpu'].dtypes)}, this keeps one); bfloat16 "
                        f"is checked against float32 at twice torch.nn's own error")
    p.add_argument("--device", choices=DEVICES,
                   help=f"where the cases run; on cuda torch is cuDNN, torch-native is torch.nn "
                        f"without cuDNN, times come from CUDA events and float32 runs without "
                        f"TF32; fastrnn runs on cuda only with {EXPERIMENTAL_CUDA}=1 on a CUDA "
                        f"build (its drivers are experimental until they have passed on a GPU); "
                        f"else pass --impls torch,torch-native (default {default.device}; the gpu "
                        f"presets: cuda)")
    p.add_argument("--cells", type=_names,
                   help=f"comma-separated, from {','.join(CELLS)}: keep only the preset's cases "
                        f"of these cells (default all)")
    p.add_argument("--modes", type=_names,
                   help=f"comma-separated, from {','.join(MODES)} (default both)")
    p.add_argument("--repeats", type=int,
                   help=f"timed calls per case, mode and implementation (default {default.repeats})")
    p.add_argument("--warmup", type=int,
                   help=f"untimed calls of each first (default {default.warmup})")
    p.add_argument("--block", type=int,
                   help=f"timed calls per run; runs alternate between implementations "
                        f"(default {default.block})")
    p.add_argument("--settle-ms", type=float,
                   help=f"idle time before each run, for the thread pools of the previous run to "
                        f"go to sleep (default {default.settle_ms:g})")
    p.add_argument("--rewarm-ms", type=float,
                   help=f"after the idle time, untimed calls of the run's step for this long (at "
                        f"least one), so the timed calls run as in a loop and not in the "
                        f"machine's wake-up transient (default {default.rewarm_ms:g})")
    p.add_argument("--threads", type=_ints,
                   help="comma-separated thread counts, each timed in turn with "
                        "torch.set_num_threads (default: torch's own)")
    p.add_argument("--no-peak", action="store_true",
                   help="skip the GEMM peak measured first (OpenBLAS sgemm and torch.mm; on cuda "
                        "torch.mm)")
    p.add_argument("--seed", type=int, help=f"(default {default.seed})")
    return p.parse_args(argv)


def _cases(base: tuple[Case, ...], args: argparse.Namespace) -> tuple[Case, ...]:
    """The preset's cases, filtered by --cells, with the shape flags applied, duplicates dropped."""
    cases = base
    if args.cells is not None:
        unknown = [c for c in args.cells if c not in CELLS]
        if unknown:
            raise ValueError(f"unknown cells {', '.join(unknown)}; known: {', '.join(CELLS)}")
        cases = tuple(c for c in cases if c.cell in args.cells)
        if not cases:
            raise ValueError(f"the preset has no case of cells {', '.join(args.cells)}")
    changes = {name: getattr(args, name) for name in CASE_FIELDS if getattr(args, name) is not None}
    if args.bidirectional:
        changes["bidirectional"] = True
    if args.batch_first:
        changes["batch_first"] = True
    if args.packed is not None:
        changes["packed"] = args.packed
    return tuple(dict.fromkeys(dataclasses.replace(c, **changes) for c in cases))


def configs_from_args(args: argparse.Namespace) -> list[BenchConfig]:
    """The run's configs: one, or for a gpu preset one per dtype (--dtype keeps one)."""
    if args.preset not in GPU_PRESETS:
        return [config_from_args(args)]
    preset = GPU_PRESETS[args.preset]
    if args.device == "cpu":
        raise ValueError(f"--preset {args.preset} runs on --device cuda")
    dtypes = preset.dtypes if args.dtype is None else (args.dtype,)
    return [config_from_args(args, preset.config.replace(dtype=d), dtype=d) for d in dtypes]


def config_from_args(args: argparse.Namespace, base: BenchConfig | None = None,
                     **fixed) -> BenchConfig:
    """The config of ``args`` over its preset (or ``base``), with ``fixed`` fields set; checked
    against this machine's devices unless --list."""
    if args.smoke and args.preset not in ("default", "smoke"):
        raise ValueError(f"--smoke is --preset smoke; it does not combine with --preset {args.preset}")
    if base is None:
        base = PRESETS["smoke" if args.smoke else args.preset]
    overrides = {name: getattr(args, name)
                 for name in ("dtype", "device", "modes", "impls", "repeats", "warmup", "block",
                              "settle_ms", "rewarm_ms", "threads", "seed")
                 if getattr(args, name) is not None and name not in fixed}
    if args.no_peak:
        overrides["peak"] = False
    config = base.replace(cases=_cases(base.cases, args), **overrides, **fixed)
    if not getattr(args, "list", False):
        check_device(config.device, config.impls)
    return config


def _workloads(config: BenchConfig) -> list[Workload]:
    return [make_workload(case, DTYPES[case.dtype or config.dtype], config.seed, config.device)
            for case in config.cases]


def run_checks(config: BenchConfig, workloads: list[Workload]) -> list[Check]:
    checks = []
    for workload in workloads:
        runners = {impl: IMPLS[impl](workload) for impl in config.impls}
        dtype = workload.case.dtype or config.dtype
        exact = upcast(workload) if dtype in HALF_DTYPES else None
        for mode in config.modes:
            if exact is None:
                checks += check_parity(workload, mode, runners, BASELINE, dtype)
            else:
                checks += check_parity_half(workload, mode, runners, BASELINE, exact,
                                            IMPLS[BASELINE](exact))
    return checks


def measure_saved(config: BenchConfig, workload: Workload) -> dict[str, SavedBytes]:
    """Bytes saved for backward per implementation, once per case (outside the timed loop);
    empty without train mode."""
    if "train" not in config.modes:
        return {}
    return {impl: saved_for_backward(IMPLS[impl](workload), workload) for impl in config.impls}


def time_workload(config: BenchConfig, workload: Workload, mode: str, peaks: dict[str, Peak],
                  saved: dict[str, SavedBytes]) -> list[Result]:
    """Time ``mode`` of every implementation; train results carry ``saved`` (measure_saved)."""
    steps = {impl: STEPS[mode](IMPLS[impl](workload), workload) for impl in config.impls}
    times = time_interleaved(steps, config.repeats, config.warmup, config.block,
                             config.settle_ms / 1e3, TIMERS[config.device],
                             config.rewarm_ms / 1e3)
    flop = flop_count(workload.case, mode, workload.rows)
    threads = torch.get_num_threads()
    # % of the peak GEMM of the case's dtype (float32, bfloat16); float64 runs get none.
    peak = peaks.get(workload.case.dtype or config.dtype)
    peak_gflops = peak.gflops if peak is not None else None
    return [Result.from_times(threads, workload.case, mode, impl, t, flop, peak_gflops,
                              saved.get(impl) if mode == "train" else None)
            for impl, t in times.items()]


class Progress:
    """``[k/n] what`` on stderr: rewritten in place on a terminal, one line per item elsewhere."""

    def __init__(self, total: int, stream=None):
        self.total, self.done, self.stream = total, 0, stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._width = 0

    def start(self, what: str) -> None:
        if self.tty:
            text = f"[{self.done + 1}/{self.total}] {what}"
            self.stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
            self.stream.flush()

    def finish(self, summary: str) -> None:
        self.done += 1
        if not self.tty:
            print(f"  [{self.done}/{self.total}] {summary}", file=self.stream, flush=True)
        elif self.done == self.total:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()


def _summary(results: list[Result]) -> str:
    first = results[0]
    timed = ", ".join(f"{r.impl} {r.median_ms:.3f} ms" for r in results)
    return (f"thr {first.threads} {first.cell} {first.shape} L{first.layers} {first.layout} "
            f"{first.mode}: {timed}")


def _report_checks(checks: list[Check]) -> bool:
    """Print the parity verdict; False when some tensor differs (details on stderr)."""
    failed = [c for c in checks if not c.ok]
    if failed:
        print(f"\nparity check FAILED: {len(failed)} of {len(checks)} tensors differ from "
              f"{BASELINE}; no timings reported.", file=sys.stderr)
        for c in failed:
            print("  " + c.describe(), file=sys.stderr)
        return False
    if not checks:
        print(f"  check     only {BASELINE} runs: nothing to compare", flush=True)
        return True
    worst = max(checks, key=lambda c: c.max_abs_err / c.scale if c.scale else 0.0)
    print(f"  check     {len(checks)} tensors (outputs; gradients in train) agree with {BASELINE}")
    print(f"            worst: {worst.describe()}", flush=True)
    return True


def _thread_counts(config: BenchConfig) -> tuple[int, ...]:
    return config.threads if config.threads is not None else (torch.get_num_threads(),)


def _peaks(config: BenchConfig) -> dict[int, dict[str, Peak]]:
    """Per thread count, the GEMM peak of float32 and (when a case runs in it) of bfloat16."""
    dtypes = ["float32"]
    if any((case.dtype or config.dtype) == "bfloat16" for case in config.cases):
        dtypes.append("bfloat16")
    peaks = {}
    for threads in _thread_counts(config):
        torch.set_num_threads(threads)
        peaks[threads] = {dtype: measure_peak(config.peak_size, config.peak_repeats,
                                              config.settle_ms / 1e3, config.device,
                                              DTYPES[dtype])
                          for dtype in dtypes}
    return peaks


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        configs = configs_from_args(args)
        config = configs[0]
        if args.list:
            print(describe_runs(configs, "smoke" if args.smoke else args.preset))
            return 0
        if args.plot and config.device == "cuda":
            raise ValueError("--plot is drawn for cpu runs only")
        if args.plot:
            if config.impls == (BASELINE,):
                raise ValueError(f"--plot draws speedups over {BASELINE}: --impls must name "
                                 f"another implementation too")
            require_matplotlib()
    except (ValueError, ImportError) as e:
        print(f"fastrnn.bench: {e}", file=sys.stderr)
        return 2
    if config.threads is not None:
        torch.set_num_threads(config.threads[0])
    with exact_fp32(config.device):
        if config.device == "cuda":
            return run_cuda(configs, args)
        return run(config, args)


def run(config: BenchConfig, args: argparse.Namespace) -> int:
    """The run itself: header, parity check, timing, table and footer, then the files that
    ``args`` ask for."""
    env = Environment.collect(config.device)
    peaks = _peaks(config) if config.peak else {}
    all_peaks = [p for by_dtype in peaks.values() for p in by_dtype.values()]
    print(format_header(config, env, all_peaks), flush=True)

    workloads = _workloads(config)
    checks = run_checks(config, workloads)
    if not _report_checks(checks):
        return 1

    saved = [measure_saved(config, workload) for workload in workloads]
    results = []
    thread_counts = _thread_counts(config)
    progress = Progress(len(thread_counts) * len(workloads) * len(config.modes))
    for threads in thread_counts:
        torch.set_num_threads(threads)
        for workload, saved_by_impl in zip(workloads, saved):
            for mode in config.modes:
                progress.start(f"thr {threads} {workload.case.describe()} {mode}")
                timed = time_workload(config, workload, mode, peaks.get(threads, {}),
                                      saved_by_impl)
                progress.finish(_summary(timed))
                results += timed
    add_speedups(results, BASELINE)

    print()
    print(format_table(results, BASELINE))
    print(format_footer(config, env, BASELINE, FLOP_MODEL))
    load_at_end = load_average()
    print(f"load averages at end: {format_load(load_at_end)} (at start: "
          f"{format_load(env.load_average)}); other load on the machine widens min..max.")
    if args.json:
        write_json(args.json, config=config, environment=env, peaks=all_peaks,
                   load_average_end=load_at_end, baseline=BASELINE, flop_model=FLOP_MODEL,
                   checks=checks, results=results)
        print(f"results written to {args.json}")
    if args.csv:
        write_csv(args.csv, results)
        print(f"results written to {args.csv}")
    if args.plot:
        write_plot(args.plot, results, BASELINE, plot_title(config, env, BASELINE))
        print(f"plot written to {args.plot}")
    return 0
