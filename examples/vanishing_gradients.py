"""Vanishing gradients, measured: ||dL/dh_t|| against the distance from the loss, per model.

The task is the adding problem of examples/adding_problem.py at T = 300 steps: the loss (MSE of
a linear read-out of the last hidden state) is on the last step only, so the gradient reaching
the state of step t has crossed T-1-t steps of the recurrence, and how it shrinks (or grows)
with that distance decides whether a model can learn that the answer depends on step t at all.

For a tanh RNN, an IRNN (a ReLU RNN with fastrnn.init.irnn_: W_hh = I, zero biases), an LSTM
(with fastrnn.init.forget_bias_) and a GRU, each without clipping and with the modules' in-kernel
grad_clip (--grad-clip: each gate pre-activation's gradient clamped to [-G, G] at every step of
backward), the modules record with record_grad_norms=True the norm of dL/dh_t of every step
inside the fused backward kernel. The norms are averaged over --batches batches at
initialisation (no training: the gradient a model starts from), printed as a table at distances
0, 1, 10, 100, ... and drawn, one line per run, by fastrnn.plot.grad_norms (--plot, needs
matplotlib). Clipping bounds the gradients that are large, near the loss; it does nothing for
the ones that vanish far from it.

    python examples/vanishing_gradients.py                   # T=300, 8 runs, a few seconds
    python examples/vanishing_gradients.py --seq-len 1000 --plot long.png
    python examples/vanishing_gradients.py --models lstm,gru --grad-clip 0   # no clipped runs
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

import fastrnn
from adding_problem import MODELS, Regressor, adding_batch, model_kinds
from progress import Progress


def recorded_norms(kind: str, grad_clip: float | None, args) -> torch.Tensor:
    """||dL/dh_t|| per step t [T] of one model (fresh, seeded: the same weights per kind),
    averaged over args.batches batches (the same batches for every run)."""
    torch.manual_seed(args.seed)
    model = Regressor(kind, args.hidden_size, grad_clip=grad_clip, record_grad_norms=True)
    gen = torch.Generator().manual_seed(args.seed + 1)
    label = f"{MODELS[kind]}, " + (f"grad_clip {grad_clip:g}" if grad_clip else "no clipping")
    progress, total = Progress(args.batches, f"{label:26s}"), torch.zeros(args.seq_len)
    for batch in range(1, args.batches + 1):
        x, y = adding_batch(args.batch_size, args.seq_len, gen)
        loss = nn.functional.mse_loss(model(x), y)
        model.zero_grad()
        loss.backward()
        total += model.rnn.grad_norms[0]  # the one layer's row
        progress.update(batch, loss=loss.item())
    progress.close()
    return total / args.batches


def distances(seq_len: int) -> list[int]:
    """0, 1, 10, 100, ... below seq_len, and seq_len - 1 (the first step)."""
    shown, d = [0], 1
    while d < seq_len - 1:
        shown.append(d)
        d *= 10
    return shown + [seq_len - 1] if seq_len > 1 else shown


def norm_text(norm: torch.Tensor) -> str:
    """A norm for the table; '<1e-38' where float32 has no precision left."""
    if norm < fastrnn.plot.FLOAT32_TINY:
        return f"<{fastrnn.plot.FLOAT32_TINY:.0e}"
    return f"{norm:.2e}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seq-len", type=int, default=300)
    parser.add_argument("--batches", type=int, default=8, help="batches averaged per run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--grad-clip", type=float, default=1e-3,
                        help="in-kernel grad_clip of the clipped runs; 0: only unclipped runs")
    parser.add_argument("--models", default="rnn,irnn,lstm,gru",
                        help="comma-separated, from: " + ", ".join(MODELS))
    parser.add_argument("--plot", metavar="PATH", default="vanishing_gradients.png",
                        help="where to draw the norms (matplotlib); '' for no plot")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kinds = model_kinds(parser, args.models)
    if args.seq_len < 2:
        parser.error("--seq-len must be at least 2 (one marker in each half)")
    if args.batches < 1:
        parser.error("--batches must be at least 1")
    if args.grad_clip < 0:
        parser.error("--grad-clip must be >= 0")
    if args.plot:
        fastrnn.plot.figure_classes()  # no matplotlib: say so now, not after the runs

    clips = [None, args.grad_clip] if args.grad_clip else [None]
    norms, styles = {}, {}
    for i, kind in enumerate(kinds):
        for clip in clips:
            label = f"{MODELS[kind]}" + (f", grad_clip {clip:g}" if clip else "")
            norms[label] = recorded_norms(kind, clip, args)
            styles[label] = {"color": f"C{i}", "linestyle": "--" if clip else "-"}

    shown = distances(args.seq_len)
    print(f"||dL/dh_t|| at initialisation, adding problem, T = {args.seq_len}, loss on the last "
          f"step; mean over {args.batches} batches of {args.batch_size}, hidden "
          f"{args.hidden_size}")
    print(f"{'distance from the loss':28s}" + "".join(f"{d:>10d}" for d in shown))
    for label, values in norms.items():
        print(f"{label:28s}" + "".join(f"{norm_text(values[args.seq_len - 1 - d]):>10s}"
                                       for d in shown))
    print(f"(<{fastrnn.plot.FLOAT32_TINY:.0e}: below float32's smallest normal number, the "
          "precision of the recorded norms)")
    if args.plot:
        fastrnn.plot.grad_norms(
            norms, args.plot, styles=styles,
            title=f"Gradient flow at initialisation: adding problem, T = {args.seq_len}, "
                  f"loss on the last step")
        print(f"plot written to {args.plot}")


if __name__ == "__main__":
    main()
