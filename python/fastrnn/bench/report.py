"""What a run prints: a header with the machine and config, the results table, and a footer."""

from __future__ import annotations

import textwrap

from .config import BenchConfig
from .environment import Environment
from .results import Result


def format_header(config: BenchConfig, env: Environment) -> str:
    threads = f"{env.torch_threads} (torch.get_num_threads; fastrnn runs on torch's thread pool)"
    lines = [
        "fastrnn benchmark",
        f"  cpu       {env.cpu}, {env.logical_cpus} logical cpus",
        f"  threads   {threads}",
        f"  versions  fastrnn {env.fastrnn}, torch {env.torch}, python {env.python}",
        f"  platform  {env.platform}",
        f"  load      {format_load(env.load_average)} (1, 5, 15 min averages, at start)",
        f"  shape     T={config.T} B={config.B} I={config.I} H={config.H}, {config.dtype}, "
        f"1 layer, unidirectional, h0 = zeros",
        f"  cells     {', '.join(config.cells)}; modes {', '.join(config.modes)}",
        f"  timing    {config.warmup} warmup + {config.repeats} timed calls each, in runs of "
        f"{config.block} back-to-back calls",
        f"            alternating between implementations, {config.settle_ms:g} ms idle before "
        f"each run; seed {config.seed}",
    ]
    return "\n".join(lines)


def format_load(load: tuple[float, float, float] | None) -> str:
    return "unknown" if load is None else " ".join(f"{x:.2f}" for x in load)


def _row(result: Result) -> list[str]:
    speedup = "" if result.speedup is None else f"{result.speedup:.2f}x"
    return [result.cell, result.mode, result.impl, f"{result.median_ms:.3f}",
            f"{result.min_ms:.3f}", f"{result.max_ms:.3f}", f"{result.gflops:.2f}", speedup]


def format_table(results: list[Result], baseline: str) -> str:
    header = ["cell", "mode", "impl", "median ms", "min ms", "max ms", "GFLOP/s",
              f"vs {baseline}"]
    rows = [_row(r) for r in results]
    widths = [max(len(cells[i]) for cells in [header, *rows]) for i in range(len(header))]
    numeric_from = 3  # the columns from here on are right-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < numeric_from else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    body, previous = [], None
    for result, cells in zip(results, rows):
        if previous is not None and (result.cell, result.mode) != previous:
            body.append("")
        body.append(line(cells))
        previous = (result.cell, result.mode)
    return "\n".join([line(header), rule, *body, rule])


def format_footer(config: BenchConfig, env: Environment, baseline: str, flop_model: str,
                  width: int = 100) -> str:
    lines = [
        f"vs {baseline} = {baseline} median / this median (above 1: faster than {baseline}).",
        "inference = forward under torch.inference_mode; train = forward + backward of a loss on "
        "output and h_n (input and all parameters get gradients; no optimizer step).",
        flop_model + ".",
        "Runs are separated by idle time because a thread pool still spinning after a call slows "
        "whatever runs next; --settle-ms 0 leaves it out.",
    ]
    if env.mkldnn and config.dtype == "float32" and "lstm" in config.cells:
        lines.append("torch.nn.LSTM on CPU in float32 runs through oneDNN (aten::mkldnn_rnn_layer); "
                     "torch.nn.GRU and RNN run step by step through ATen ops.")
    return "\n".join(textwrap.fill(line, width, subsequent_indent="  ") for line in lines)
