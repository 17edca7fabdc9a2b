"""The GPU benchmark: ``python -m fastrnn.bench --device cuda [--preset gpu]``.

Every ``--device cuda`` run comes here (cli.main): the cases of its config, once per dtype of
the run (the gpu presets: float32 and bfloat16), fastrnn against torch.nn with cuDNN (``torch``)
and torch.nn with cuDNN disabled (``torch-native``: ATen's CUDA kernels, a loop over time steps
of a GEMM and a fused cell kernel), in inference and training, timed by CUDA events
(timing.time_call_cuda); TFLOP/s by the CPU runs' FLOP model (workloads.flop_count) and GB/s by
workloads.BYTES_MODEL; TF32 pinned off for the run (workloads.exact_fp32) and reported.

What ran is checked, not assumed: one forward of each implementation is profiled first
(workloads.ops_run), so a fastrnn that fell back to torch.nn is an error rather than cuDNN's time
under fastrnn's name, and the table says whether torch.nn ran cuDNN. fastrnn on CUDA tensors needs
FASTRNN_EXPERIMENTAL_CUDA=1 until its drivers have passed on a GPU (workloads.fastrnn_cuda_path);
a dtype its op does not take (its error starts with "fastrnn:") is listed as not run for that
case, and the others still run.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

import torch

from .check import Check, check_parity, check_parity_half, upcast
from .config import BenchConfig
from .environment import Environment
from .memory import saved_for_backward
from .peak import Peak, measure_peak
from .report import format_columns, format_load
from .results import CSV_COLUMNS, Result, add_speedups, write_csv, write_json
from .timing import TIMERS, time_interleaved
from .workloads import (BASELINE, BYTES_MODEL, CUDA_DTYPES, CUDNN_OP, EXPERIMENTAL_CUDA,
                        FASTRNN_OP, FLOP_MODEL, FLOP_MODEL_PROJ, IMPLS, STEPS, Case, Runner,
                        Workload, bytes_moved, fastrnn_cuda_path, flop_count, make_workload,
                        ops_run)

# ---- the case table of the gpu presets ---------------------------------------------------------
GPU_CELLS = ("lstm", "gru", "rnn_tanh")
GPU_T = 100
GPU_BATCHES = (1, 8, 32, 64, 256)
GPU_SIZES = (256, 512, 1024)  # H = I
GPU_DTYPES = ("float32", "bfloat16")
GPU_IMPLS = ("torch", "fastrnn", "torch-native")


def gpu_cases(batches: tuple[int, ...], sizes: tuple[int, ...],
              extra_batches: tuple[int, ...], extra_size: int) -> tuple[Case, ...]:
    """The grid (every GPU_CELLS cell at T = GPU_T, each batch and each H = I), then at each of
    ``extra_batches`` and H = I = ``extra_size``: packed input (lengths uniform on 1..T) for LSTM
    and GRU, bidirectional LSTM and GRU, and an LSTM with proj_size H/4."""
    grid = [Case(cell, GPU_T, B, H, H) for cell in GPU_CELLS for H in sizes for B in batches]
    H = extra_size
    extras = [case for B in extra_batches for case in (
        Case("lstm", GPU_T, B, H, H, packed="uniform"),
        Case("gru", GPU_T, B, H, H, packed="uniform"),
        Case("lstm", GPU_T, B, H, H, bidirectional=True),
        Case("gru", GPU_T, B, H, H, bidirectional=True),
        Case("lstm", GPU_T, B, H, H, proj_size=H // 4),
    )]
    return tuple(grid + extras)


@dataclass(frozen=True)
class GpuPreset:
    """A gpu preset: ``config`` (device cuda; its dtype is replaced by each of ``dtypes``)."""

    config: BenchConfig
    dtypes: tuple[str, ...]

    def configs(self) -> list[BenchConfig]:
        return [self.config.replace(dtype=dtype) for dtype in self.dtypes]


# No idle time between runs (no CPU thread pool to wind down), but 20 ms of untimed calls before
# each run, so the GPU's clocks are up when timing starts.
_GPU_TIMING = dict(device="cuda", impls=GPU_IMPLS, settle_ms=0.0, rewarm_ms=20.0, peak_size=4096)

GPU_PRESETS = {
    # The table: 45 grid cases and 10 packed, bidirectional and proj_size ones, x 2 dtypes.
    "gpu": GpuPreset(BenchConfig(cases=gpu_cases(GPU_BATCHES, GPU_SIZES, (8, 64), 512),
                                 **_GPU_TIMING), GPU_DTYPES),
    # .ci/gpu-check's (a time cap on the whole script): batch 1 and 64 at H = 256 and 1024, the
    # extra cases at batch 64 only, fewer calls.
    "gpu-quick": GpuPreset(BenchConfig(cases=gpu_cases((1, 64), (256, 1024), (64,), 512),
                                       repeats=5, warmup=2, block=5, peak_repeats=3,
                                       **_GPU_TIMING), GPU_DTYPES),
}


def describe_runs(configs: list[BenchConfig], preset: str) -> str:
    """What a run would do, without doing it (``--list``; no GPU needed): one line per case and
    dtype."""
    first = configs[0]
    cases = sum(len(c.cases) for c in configs)
    lines = [f"preset {preset}: {cases} runs ({len(first.cases)} cases x "
             f"{', '.join(c.dtype for c in configs)}) on {first.device}; modes "
             f"{', '.join(first.modes)}; impls {', '.join(first.impls)}; "
             f"{first.warmup} warmup + {first.repeats} timed calls each"]
    for config in configs:
        lines += [f"  {config.dtype:<9} {case.describe()}" for case in config.cases]
    return "\n".join(lines)


# ---- one run -----------------------------------------------------------------------------------
@dataclass
class CudaResult(Result):
    """A Result with what a GPU run adds: its dtype (runs of several dtypes share a table), the
    projection, the bytes model and what ran."""

    dtype: str = "float32"
    proj_size: int = 0
    gbyte: float = 0.0  # per step, by BYTES_MODEL
    gbps: float = 0.0  # GB/s at the median
    via: str = ""  # what ran: cuDNN or ATen (torch.nn), kernels (fastrnn's op)

    @property
    def group(self) -> tuple:
        return (*super().group, self.dtype, self.proj_size)


CUDA_CSV_COLUMNS = (*CSV_COLUMNS, "dtype", "proj_size", "gbyte", "gbps", "via")


@dataclass
class NotRun:
    """An implementation left out of one case (and dtype), and why."""

    case: str
    dtype: str
    impl: str
    reason: str


def _via(impl: str, ops: set[str]) -> str:
    """What ran, from the profiled forward; RuntimeError when fastrnn did not run its op."""
    if impl == "fastrnn":
        if FASTRNN_OP not in ops:
            raise RuntimeError(f"fastrnn did not run {FASTRNN_OP} on CUDA (it fell back to "
                               f"torch.nn?): refusing to report torch.nn's times as fastrnn's")
        return "kernels"
    if impl in ("torch", "torch-native"):
        return "cuDNN" if CUDNN_OP in ops else "ATen"
    return "python"  # reference: ATen ops step by step


def refused(reason: str) -> bool:
    """Whether a NotRun's reason is fastrnn's op declining a case it does not serve (its own
    checks' errors start "fastrnn:"), as opposed to an error or a failed parity check."""
    return reason.startswith("fastrnn:")


def _runners(config: BenchConfig, workload: Workload,
             not_run: list[NotRun]) -> tuple[dict[str, Runner], dict[str, str]]:
    """The runners of ``config.impls`` that ran one forward of ``workload``, and what each ran.
    One that raised goes to ``not_run`` with its error (fastrnn's op declining a case: its
    message; anything else: the exception's type too), so one case cannot end a long GPU run;
    without the baseline nothing of the case runs. A fastrnn that fell back to torch.nn raises."""
    runners, via = {}, {}
    for impl in config.impls:
        runner = IMPLS[impl](workload)
        try:
            ops = ops_run(runner, workload)
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
            message = str(e).splitlines()[0] if str(e) else ""
            if not refused(message):
                message = f"{type(e).__name__}: {message}"
            not_run.append(NotRun(workload.case.describe(), config.dtype, impl, message))
            if impl == BASELINE:
                return {}, {}
            continue
        runners[impl], via[impl] = runner, _via(impl, ops)
    return runners, via


def _checks(config: BenchConfig, workload: Workload, runners: dict[str, Runner],
            not_run: list[NotRun]) -> list[Check]:
    """Parity of every runner with the baseline, per mode, one runner at a time; a runner that
    fails it or raises is taken out (and listed in ``not_run``)."""
    checks, failed = [], {}
    exact = upcast(workload) if config.dtype not in ("float32", "float64") else None
    for impl in [i for i in runners if i != BASELINE]:
        pair, found = {BASELINE: runners[BASELINE], impl: runners[impl]}, []
        try:
            for mode in config.modes:
                if exact is None:
                    found += check_parity(workload, mode, pair, BASELINE, config.dtype)
                else:
                    found += check_parity_half(workload, mode, pair, BASELINE, exact,
                                               IMPLS[BASELINE](exact))
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
            failed[impl] = f"{type(e).__name__} in the parity check: {str(e).splitlines()[0]}"
            continue
        checks += found
    for impl in {c.impl for c in checks if not c.ok}:
        failed.setdefault(impl, "parity check FAILED (see the checks above)")
    for impl, reason in failed.items():
        del runners[impl]
        not_run.append(NotRun(workload.case.describe(), config.dtype, impl, reason))
    return checks


def _time_case(config: BenchConfig, workload: Workload, runners: dict[str, Runner],
               via: dict[str, str], peak: Peak | None) -> list[CudaResult]:
    """Time every runner in every mode on the workload's device (CUDA events on cuda; the tests
    run it on the CPU), with FLOPs and bytes by the models."""
    case, element_size = workload.case, workload.input.element_size()
    saved = ({impl: saved_for_backward(r, workload) for impl, r in runners.items()}
             if "train" in config.modes else {})
    results = []
    for mode in config.modes:
        steps = {impl: STEPS[mode](runner, workload) for impl, runner in runners.items()}
        times = time_interleaved(steps, config.repeats, config.warmup, config.block,
                                 config.settle_ms / 1e3, TIMERS[workload.input.device.type],
                                 config.rewarm_ms / 1e3)
        flop = flop_count(case, mode, workload.rows)
        nbytes = bytes_moved(case, mode, element_size, workload.rows)
        for impl, t in times.items():
            r = CudaResult.from_times(torch.get_num_threads(), case, mode, impl, t, flop,
                                      peak.gflops if peak else None,
                                      saved.get(impl) if mode == "train" else None)
            r.dtype, r.proj_size, r.via = config.dtype, case.proj_size, via[impl]
            r.gbyte = nbytes / 1e9
            r.gbps = r.gbyte / (r.median_ms / 1e3)
            results.append(r)
    return results


def _row(r: CudaResult) -> list[str]:
    return [r.dtype, r.cell, r.shape, str(r.layers), "2" if r.bidirectional else "1",
            str(r.proj_size or "-"), r.layout, r.mode, r.impl, r.via, f"{r.median_ms:.3f}",
            f"{r.min_ms:.3f}", f"{r.max_ms:.3f}", f"{r.gflops / 1e3:.2f}",
            "" if r.pct_peak is None else f"{r.pct_peak:.1f}", f"{r.gbps:.0f}",
            "" if r.speedup is None else f"{r.speedup:.2f}x",
            "" if r.saved_bytes is None else f"{r.saved_bytes / 2**20:.1f}"]


def format_cuda_table(results: list[CudaResult]) -> str:
    header = ["dtype", "cell", "TxBxIxH", "L", "D", "P", "input", "mode", "impl", "via",
              "median ms", "min ms", "max ms", "TFLOP/s", "% peak", "GB/s", f"vs {BASELINE}",
              "saved MiB"]
    return format_columns(header, [_row(r) for r in results], [r.group for r in results],
                          numeric_from=10)


def tf32_settings() -> str:
    """The TF32 flags as they are now (exact_fp32 pins them off for the run)."""
    return (f"torch.backends.cuda.matmul.allow_tf32 = {torch.backends.cuda.matmul.allow_tf32}, "
            f"torch.backends.cudnn.allow_tf32 = {torch.backends.cudnn.allow_tf32}")


def fastrnn_line(impls: tuple[str, ...]) -> str:
    path = fastrnn_cuda_path()
    if "fastrnn" not in impls:
        return "not timed (--impls leaves it out)"
    if path == "modules":
        return "fastrnn's modules on CUDA tensors (fastrnn.cuda_available())"
    return (f"its CUDA drivers through fastrnn.functional.rnn_stack, the op its modules call "
            f"({EXPERIMENTAL_CUDA}=1: the drivers are experimental until they have passed on a "
            f"GPU; without it fastrnn's modules fall back to torch.nn and the bench refuses to "
            f"time them)")


def format_cuda_header(configs: list[BenchConfig], env: Environment,
                       peaks: dict[str, Peak]) -> str:
    first = configs[0]
    cells = list(dict.fromkeys(c.cell for c in first.cases))
    lines = [
        "fastrnn benchmark on CUDA",
        f"  gpu       {env.gpu}",
        f"  versions  fastrnn {env.fastrnn}, torch {env.torch}, python {env.python}",
        f"  cpu       {env.cpu}, {env.logical_cpus} logical cpus; load "
        f"{format_load(env.load_average)}",
        f"  fastrnn   {fastrnn_line(first.impls)}",
        f"  tf32      off, pinned for the run: {tf32_settings()}",
        f"  cases     {len(first.cases)} ({', '.join(cells)}) x {', '.join(c.dtype for c in configs)}"
        f", h0 = zeros; modes {', '.join(first.modes)}",
        f"  impls     {', '.join(first.impls)}",
        *(f"  peak      torch.mm {dtype} {p.torch_mm_gflops / 1e3:.1f} TFLOP/s ({p.size}^3, "
          f"CUDA events)" for dtype, p in peaks.items()),
        f"  timing    {first.warmup} warmup + {first.repeats} timed calls each, in runs of "
        f"{first.block}, alternating between implementations, {first.rewarm_ms:g} ms of untimed "
        f"calls before each run; each call timed by CUDA events with the GPU idle before it",
    ]
    return "\n".join(lines)


def format_cuda_footer(configs: list[BenchConfig], width: int = 100) -> str:
    cases = configs[0].cases
    lines = [
        f"vs {BASELINE} = {BASELINE} median / this median (above 1: faster than {BASELINE}).",
        "torch = torch.nn with cuDNN enabled (torch.backends.cudnn.enabled = True); "
        "torch-native = torch.nn with cuDNN disabled: ATen's CUDA RNN, step by step (a GEMM and a "
        "fused cell kernel per step), not a Python loop. via = what the profiled forward ran: "
        f"cuDNN ({CUDNN_OP}), ATen (torch.nn without it: torch sends some cases, such as some "
        f"dtypes, there even with cuDNN enabled), kernels (fastrnn's own op, {FASTRNN_OP}).",
        "inference = forward under torch.inference_mode; train = forward + backward of a loss on "
        "output and h_n (input and all parameters get gradients; no optimizer step).",
        "TxBxIxH = sequence length x batch x input size x hidden size; L = layers; D = "
        "directions; P = proj_size; input = padded [T, B, I] or packed(DIST), packed inside each "
        "timed call.",
        "TFLOP/s: " + FLOP_MODEL + ".",
        *([FLOP_MODEL_PROJ + "."] if any(c.proj_size for c in cases) else []),
        "% peak = TFLOP/s / the header's torch.mm TFLOP/s in the run's dtype.",
        BYTES_MODEL + ".",
        "float32 parity: allclose with the CPU runs' tolerances; bfloat16: each tensor's error "
        "against torch.nn in float32 at most 2x that of torch.nn in bfloat16.",
    ]
    if "train" in configs[0].modes:
        lines.append("saved MiB (train) = what one forward saves for backward besides the input "
                     "and parameters.")
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)


def _report_checks(checks: list[Check], not_run: list[NotRun]) -> None:
    failed = [c for c in checks if not c.ok]
    if checks:
        worst = max(checks, key=lambda c: c.max_abs_err / c.scale if c.scale else 0.0)
        print(f"  check     {len(checks) - len(failed)} of {len(checks)} tensors agree with "
              f"{BASELINE}; worst: {worst.describe()}")
    for c in failed:
        print("  MISMATCH  " + c.describe(), file=sys.stderr)
    reasons = {}
    for n in not_run:
        reasons.setdefault((n.impl, n.dtype, n.reason), []).append(n.case)
    for (impl, dtype, reason), cases in reasons.items():
        print(f"  not run   {impl} in {dtype}, {len(cases)} case{'s' * (len(cases) != 1)}: {reason}")


def run_cuda(configs: list[BenchConfig], args) -> int:
    """Every config (one per dtype) on the GPU: header, then per case the runners, parity,
    timing; one table; footer; files. 1 when a parity check failed or an implementation raised
    (those are not timed, the others are); fastrnn's op declining a dtype is not a failure."""
    env = Environment.collect("cuda")
    first = configs[0]
    peaks = {}
    if first.peak:
        for dtype in dict.fromkeys(c.dtype for c in configs):
            peaks[dtype] = measure_peak(first.peak_size, first.peak_repeats, 0.0, "cuda",
                                        CUDA_DTYPES[dtype])
    print(format_cuda_header(configs, env, peaks), flush=True)

    results, checks, not_run = [], [], []
    total = sum(len(c.cases) for c in configs)
    done = 0
    for config in configs:
        for case in config.cases:
            workload = make_workload(case, CUDA_DTYPES[config.dtype], config.seed, "cuda")
            runners, via = _runners(config, workload, not_run)
            done += 1
            if BASELINE not in runners:  # (listed in not_run)
                continue
            try:
                checks += _checks(config, workload, runners, not_run)
                timed = _time_case(config, workload, runners, via, peaks.get(config.dtype))
            except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
                # (the baseline's, or a CUDA error): the case is lost, not the run
                not_run.append(NotRun(case.describe(), config.dtype, ", ".join(runners),
                                      f"{type(e).__name__}: {str(e).splitlines()[0]}"))
                continue
            results += timed
            print(f"  [{done}/{total}] {config.dtype} {case.describe()}: " + ", ".join(
                f"{r.impl} {r.mode} {r.median_ms:.3f} ms" for r in timed), file=sys.stderr,
                flush=True)
            del workload, runners
    add_speedups(results, BASELINE)

    _report_checks(checks, not_run)
    print()
    print(format_cuda_table(results))
    print(format_cuda_footer(configs))
    if args.json:
        write_json(args.json, configs=configs, environment=env, peaks=list(peaks.values()),
                   tf32=tf32_settings(), fastrnn=fastrnn_line(first.impls), baseline=BASELINE,
                   flop_model=FLOP_MODEL, bytes_model=BYTES_MODEL, checks=checks,
                   not_run=not_run, results=results)
        print(f"results written to {args.json}")
    if args.csv:
        write_csv(args.csv, results, CUDA_CSV_COLUMNS)
        print(f"results written to {args.csv}")
    return 1 if any(not c.ok for c in checks) or any(not refused(n.reason) for n in not_run) else 0

