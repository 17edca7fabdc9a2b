"""Plots of gradient flow through time, from the norms a module records with
``record_grad_norms=True``.

``grad_norms(norms_by_label, path)`` draws the norm of dL/dh_t against the distance from the loss
(in time steps back from the last step, where a many-to-one loss reads the state), on a log
scale, one line per label, so that gradients which vanish or explode geometrically draw straight
lines::

    model = fastrnn.LSTM(2, 64, record_grad_norms=True)
    output, _ = model(x)                        # x [T, B, 2]
    loss_fn(head(output[-1]), y).backward()     # a loss on the last step only
    fastrnn.plot.grad_norms({"LSTM": model.grad_norms[-1]}, "flow.png")

matplotlib is optional: it is imported when a plot is drawn, never by ``import fastrnn``, and a
missing matplotlib raises ``ImportError`` saying ``pip install matplotlib``. Rendering uses the
Agg canvas, so no display is needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

MISSING = "fastrnn.plot needs matplotlib, which is not installed: pip install matplotlib"
# The smallest normal float32 (1.2e-38): the kernels record the norms in float32, and below it a
# float32 gradient has lost its precision (denormal) or underflowed to 0.
FLOAT32_TINY = torch.finfo(torch.float32).tiny


def figure_classes():
    """(Figure, FigureCanvasAgg) from matplotlib, or ImportError saying how to install it."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(MISSING) from e
    return Figure, FigureCanvasAgg


def _per_step(label: str, norms) -> Tensor:
    """``norms`` as a 1-D float64 tensor of one value per time step, or ValueError."""
    values = torch.as_tensor(norms).detach().to("cpu", torch.float64)
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(f"fastrnn.plot.grad_norms: the norms of {label!r} must be one value per "
                         f"time step (1-D, not empty, e.g. a row of module.grad_norms), got shape "
                         f"{tuple(values.shape)}")
    if (values < 0).any():
        raise ValueError(f"fastrnn.plot.grad_norms: the norms of {label!r} have negative values, "
                         "which are no norms")
    return values


def grad_norms(norms_by_label: Mapping[str, Tensor | Sequence[float]], path: str | Path | None = None,
               *, title: str | None = None, styles: Mapping[str, dict] | None = None,
               ylabel: str = "||dL/dh_t||", floor: float = FLOAT32_TINY):
    """Plot gradient norms against the distance from the loss, one line per label.

    Args:
        norms_by_label: label -> the norm at each time step t = 0..T-1 (a 1-D tensor or
            sequence, such as a row of ``module.grad_norms``, or its mean over batches); the
            loss is taken to be on the last step, so step t is drawn at distance T-1-t (0: the
            step the loss reads). The sequences may differ in length.
        path: where to write the figure (its format from the extension: .png, .svg, .pdf); None
            writes nothing and only returns the figure.
        title: the figure's title.
        styles: label -> matplotlib line keyword arguments (``color``, ``linestyle``, ...) for
            the labels that need them, e.g. to draw a clipped run dashed in its model's colour.
        ylabel: the y axis's label.
        floor: norms below it are not drawn: by default float32's smallest normal number
            (1.2e-38), below which the recorded float32 norms are rounding noise or 0 (which a
            log scale cannot show either). A line ends where its norms fall below the floor.

    Returns:
        The matplotlib ``Figure``.

    Raises:
        ImportError: matplotlib is not installed (``pip install matplotlib``).
        ValueError: no labels, a label's norms are not 1-D or have negative values, or a style
            names a label that is not plotted.
    """
    if not norms_by_label:
        raise ValueError("fastrnn.plot.grad_norms: nothing to plot (norms_by_label is empty)")
    styles = dict(styles or {})
    unknown = [label for label in styles if label not in norms_by_label]
    if unknown:
        raise ValueError(f"fastrnn.plot.grad_norms: styles for labels that are not plotted: "
                         f"{', '.join(map(repr, unknown))}")
    curves = {label: _per_step(label, norms) for label, norms in norms_by_label.items()}
    Figure, FigureCanvasAgg = figure_classes()

    fig = Figure(figsize=(8, 5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for label, values in curves.items():
        distance = torch.arange(values.numel() - 1, -1, -1)  # step t is T-1-t steps back
        shown = values.masked_fill(values < floor, math.nan)  # a gap, not a point at the edge
        ax.plot(distance.numpy(), shown.numpy(), label=label, **styles.get(label, {}))
    ax.set_yscale("log")
    ax.set_xlim(left=0)
    ax.set_xlabel("distance from the loss (time steps back from the last step)")
    ax.set_ylabel(ylabel)
    ax.grid(which="major", linewidth=0.3)
    ax.legend(fontsize="small")
    if title:
        ax.set_title(title)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
    return fig


__all__ = ["grad_norms", "figure_classes", "FLOAT32_TINY", "MISSING"]
