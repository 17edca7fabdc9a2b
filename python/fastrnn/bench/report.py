"""What a run prints: a header with the machine and config, the results table, and a footer."""

from __future__ import annotations

import textwrap

from .config import BenchConfig
from .environment import Environment
from .peak import Peak, format_peak
from .results import Result


_ENGINES = {"torch": "torch.mm (MKL)", "openblas": "OpenBLAS"}


def format_header(config: BenchConfig, env: Environment, peaks: list[Peak]) -> str:
    if config.threads is None:
        threads = f"{env.torch_threads} (torch.get_num_threads; fastrnn runs on torch's thread pool)"
    else:
        threads = (f"{', '.join(map(str, config.threads))} (torch.set_num_threads, each in turn; "
                   f"fastrnn runs on torch's thread pool)")
    cells = sorted({c.cell for c in config.cases}, key=[c.cell for c in config.cases].index)
    lines = [
        "fastrnn benchmark",
        f"  cpu       {env.cpu}, {env.logical_cpus} logical cpus",
        *([f"  gpu       {env.gpu} (the cases run here)"] if env.gpu else []),
        f"  threads   {threads}",
        f"  versions  fastrnn {env.fastrnn}, torch {env.torch}, python {env.python}",
        f"  platform  {env.platform}",
        f"  load      {format_load(env.load_average)} (1, 5, 15 min averages, at start)",
        f"  cases     {len(config.cases)} ({', '.join(cells)}), {config.dtype}"
        f"{' (a cell named cell(dtype): that dtype)' if any(c.dtype for c in config.cases) else ''}"
        f", h0 = zeros; "
        f"modes {', '.join(config.modes)}",
        f"  impls     {', '.join(config.impls)}",
        *([f"  kernels   fastrnn CPU kernels on {env.cpu_isa}; whole-sequence GEMMs through "
           f"{_ENGINES.get(env.gemm_engine, env.gemm_engine)}"] if env.device == "cpu" else []),
        *(f"  peak      {format_peak(p)}" for p in peaks),
        f"  timing    {config.warmup} warmup + {config.repeats} timed calls each, in runs of "
        f"{config.block} back-to-back calls",
        f"            alternating between implementations, {config.settle_ms:g} ms idle and "
        f"{config.rewarm_ms:g} ms of untimed calls before each run; seed {config.seed}",
    ]
    return "\n".join(lines)


def plot_title(config: BenchConfig, env: Environment, baseline: str) -> str:
    """The --plot figure's title: what was compared, on which machine, threads and dtype."""
    machine = f"{env.gpu} (cuda)" if env.gpu else f"{env.cpu} ({env.logical_cpus} logical cpus)"
    threads = config.threads if config.threads is not None else (env.torch_threads,)
    thread_text = f"{', '.join(map(str, threads))} thread{'s' * (threads != (1,))}"
    return (f"fastrnn benchmark: speedup over {baseline} ({baseline} median / median)\n"
            f"{machine}, {thread_text}, {config.dtype}"
            f"{' (cell(dtype): that dtype)' if any(c.dtype for c in config.cases) else ''}, "
            f"fastrnn {env.fastrnn}, torch {env.torch}")


def format_load(load: tuple[float, float, float] | None) -> str:
    return "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)


def _row(result: Result) -> list[str]:
    speedup = "" if result.speedup is None else f"{result.speedup:.2f}x"
    pct_peak = "" if result.pct_peak is None else f"{result.pct_peak:.1f}"
    saved = "" if result.saved_bytes is None else f"{result.saved_bytes / 2**20:.3f}"
    cell = result.cell if result.dtype is None else f"{result.cell}({result.dtype})"
    return [str(result.threads), cell, result.shape, str(result.layers),
            "2" if result.bidirectional else "1", result.layout, result.mode, result.impl,
            f"{result.median_ms:.3f}", f"{result.min_ms:.3f}", f"{result.max_ms:.3f}",
            f"{result.gflops:.2f}", pct_peak, speedup, saved]


def format_table(results: list[Result], baseline: str) -> str:
    header = ["thr", "cell", "TxBxIxH", "L", "D", "input", "mode", "impl", "median ms", "min ms", "max ms",
              "GFLOP/s", "% peak", f"vs {baseline}", "saved MiB"]
    return format_columns(header, [_row(r) for r in results], [r.group for r in results],
                          numeric_from=8)


def format_columns(header: list[str], rows: list[list[str]], groups: list, numeric_from: int) -> str:
    """A table: the header, a rule, the rows (a blank line where ``groups`` changes), a rule;
    the columns from ``numeric_from`` on right-aligned."""
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < numeric_from else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    body, previous = [], None
    for group, cells in zip(groups, rows):
        if previous is not None and group != previous:
            body.append("")
        body.append(line(cells))
        previous = group
    return "\n".join([line(header), rule, *body, rule])


def format_footer(config: BenchConfig, env: Environment, baseline: str, flop_model: str,
                  width: int = 100) -> str:
    lines = [
        f"vs {baseline} = {baseline} median / this median (above 1: faster than {baseline}).",
        "inference = forward under torch.inference_mode; train = forward + backward of a loss on "
        "output and h_n (input and all parameters get gradients; no optimizer step).",
        "thr = torch threads; TxBxIxH = sequence length x batch x input size x hidden size; "
        "L = layers; D = directions; input = padded [T, B, I], or packed(DIST): a PackedSequence "
        "packed inside each timed call by pack_padded_sequence(enforce_sorted=False) from "
        "lengths drawn once per case, the longest T, the others uniform on 1..T (DIST uniform) "
        "or on ceil(DIST*T)..T; \",bf\" = batch-first [B, T, I].",
        flop_model + ".",
        "Runs are separated by idle time because a thread pool still spinning after a call slows "
        "whatever runs next; --settle-ms 0 leaves it out. The untimed calls after it take the "
        "machine out of its wake-up transient (a few ms, slowest calls first); --rewarm-ms 0 "
        "leaves them out.",
    ]
    if config.device == "cuda":
        lines += [
            "% peak = GFLOP/s / the torch.mm GFLOP/s of the header (cuBLAS, fp32 without TF32); "
            "empty with --no-peak and in float64.",
            "On cuda each call is timed by CUDA events, the GPU idle before it; torch = torch.nn "
            "through cuDNN; float32 runs without TF32 (torch.backends.cudnn.allow_tf32 and "
            "cuda.matmul.allow_tf32 off), as the other implementations compute.",
        ]
    else:
        lines.append("% peak = GFLOP/s / the machine's GEMM peak: the faster of OpenBLAS sgemm "
                     "and torch.mm in the header at the same thread count (fastrnn calls both); "
                     "empty with --no-peak and in float64.")
    if "train" in config.modes:
        lines.append("saved MiB (train) = what one forward saves for backward (distinct "
                     "storages seen by torch.autograd.graph.saved_tensors_hooks), not counting the "
                     "input and the parameters, which exist anyway; the json and csv also give the "
                     "count with them.")
    if (config.device == "cpu" and env.mkldnn and config.dtype == "float32"
            and any(c.cell == "lstm" for c in config.cases)):
        lines.append("torch.nn.LSTM on CPU in float32 runs through oneDNN (aten::mkldnn_rnn_layer) "
                     "on padded input and step by step through ATen ops on packed input; "
                     "torch.nn.GRU and RNN run step by step through ATen ops.")
    if "torch-native" in config.impls:
        module, name = {"cpu": ("mkldnn", "oneDNN"), "cuda": ("cudnn", "cuDNN")}[config.device]
        lines.append(f"torch-native = torch.nn under torch.backends.{module}.flags(enabled=False): "
                     f"ATen's own kernels, no {name}.")
    if "reference" in config.impls:
        lines.append("reference = fastrnn.reference.rnn_stack, plain PyTorch step by step (the "
                     "ground truth of the tests; slow).")
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
