"""The ``--plot`` figure: each implementation's speedup over the baseline, per case and mode.

Grouped bars, one group per (case, mode) in the order run and one bar per implementation other
than the baseline, drawn from the line at 1.0 (the baseline) up when faster and down when slower,
on a log scale so that 2x faster and 2x slower look alike; one panel per thread count. matplotlib
is optional (``pip install 'fastrnn[bench]'``): imported here only, rendering with Agg.
"""

from __future__ import annotations

from .results import Result, make_parent_dir

MISSING = ("--plot needs matplotlib, which is not installed: pip install matplotlib "
           "(or pip install 'fastrnn[bench]')")


def _matplotlib():
    """(Figure, FigureCanvasAgg), or ImportError with MISSING."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(MISSING) from e
    return Figure, FigureCanvasAgg


def require_matplotlib() -> None:
    """Raise ImportError with MISSING now, rather than after a long run."""
    _matplotlib()


def _label(r: Result) -> str:
    """Three short lines (cell with a case's own dtype, shape, mode), so that neighbouring labels
    do not overlap."""
    shape = r.shape
    if r.layers > 1:
        shape += f" L{r.layers}"
    if r.bidirectional:
        shape += " bi"
    if r.layout != "padded":
        shape += f" {r.layout}"
    cell = r.cell if r.dtype is None else f"{r.cell}({r.dtype})"
    return f"{cell}\n{shape}\n{r.mode}"


def speedup_figure(results: list[Result], baseline: str, title: str):
    """The matplotlib Figure of ``results`` (speedups set by add_speedups)."""
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    compared = [r for r in results if r.impl != baseline and r.speedup is not None]
    if not compared:
        raise ValueError(f"nothing to plot: no implementation other than {baseline} was timed")
    threads = list(dict.fromkeys(r.threads for r in compared))
    impls = list(dict.fromkeys(r.impl for r in compared))
    groups = list(dict.fromkeys(r.group[1:] for r in compared))  # all but the thread count
    labels = {r.group[1:]: _label(r) for r in compared}
    speedups = [r.speedup for r in compared]
    # headroom on the log scale for the labels at the bars' ends
    low, high = min(min(speedups), 1.0) / 2.0, max(max(speedups), 1.0) * 2.0

    group_inches = max(1.4, 0.45 * (len(impls) + 1))  # room for the bars and the label
    fig = Figure(figsize=(max(6.0, 1.0 + group_inches * len(groups)), 1.5 + 3.2 * len(threads)),
                 layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(threads), 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    width = 0.8 / len(impls)
    colors = [f"C{i}" for i in range(len(impls))]
    for ax, t in zip(axes, threads):
        for i, impl in enumerate(impls):
            by_group = {r.group[1:]: r.speedup for r in compared if r.threads == t and r.impl == impl}
            xs = [g + (i - (len(impls) - 1) / 2) * width for g, key in enumerate(groups)
                  if key in by_group]
            values = [by_group[key] for key in groups if key in by_group]
            bars = ax.bar(xs, [v - 1.0 for v in values], width, bottom=1.0, color=colors[i],
                          label=impl)
            ax.bar_label(bars, labels=[f"{v:.2f}x" for v in values], fontsize=7, padding=2)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log", base=2)
        ax.set_ylim(low, high)
        ax.yaxis.set_major_locator(LogLocator(base=2))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_ylabel(f"speedup over {baseline}")
        ax.grid(axis="y", linewidth=0.3)
        if len(threads) > 1:
            ax.set_title(f"{t} thread{'s' * (t != 1)}", fontsize=10)
    axes[-1].set_xticks(range(len(groups)), [labels[key] for key in groups], fontsize=8)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(impls),
               fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def write_plot(path: str, results: list[Result], baseline: str, title: str) -> None:
    """Draw speedup_figure into ``path``; the format follows its extension (png, svg, pdf)."""
    fig = speedup_figure(results, baseline, title)
    make_parent_dir(path)
    fig.savefig(path, dpi=120)
