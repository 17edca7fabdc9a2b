"""One-step calls against torch.nn: the cells, and the modules at T = 1, as a decoder (teacher
forcing, scheduled sampling, generation) makes them once per step.

    .venv/bin/python benchmarks/one_step.py [--threads 2] [--H 256] [--blocks 10] [--calls 200]

For each case (cell or module, batch 1 and 32, inference under torch.inference_mode or train:
forward and backward of a sum, the input requiring grad, no initial state given), the two
implementations alternate in blocks of --calls calls; the figure is each one's median call time
over all blocks, and the ratio is torch's over fastrnn's (above 1: fastrnn is faster).
"""

import argparse
import statistics
import time

import torch

import fastrnn

NAMES = ("LSTMCell", "GRUCell", "RNNCell", "LSTM", "GRU", "RNN")


def call_times(step, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--H", type=int, default=256, help="input and hidden size (default 256)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per implementation")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per block")
    args = parser.parse_args()
    if min(args.threads, args.H, args.blocks, args.calls) < 1:
        parser.error("--threads, --H, --blocks and --calls must be positive")
    torch.set_num_threads(args.threads)
    H = args.H
    print(f"{args.threads} threads, I = H = {H}, medians of {args.blocks} x {args.calls} calls, "
          "implementations alternating; ratio = torch / fastrnn")
    for name in NAMES:
        for B in (1, 32):
            for mode in ("inference", "train"):
                cell = name.endswith("Cell")
                x = torch.randn((B, H) if cell else (1, B, H), requires_grad=mode == "train")
                steps = []
                for namespace in (fastrnn, torch.nn):
                    torch.manual_seed(0)
                    module = getattr(namespace, name)(H, H)

                    def step(module=module):
                        if mode == "train":
                            out = module(x)
                            (out[0] if isinstance(out, tuple) else out).sum().backward()
                        else:
                            with torch.inference_mode():
                                module(x)
                    steps.append(step)
                times = ([], [])
                for step in steps:
                    call_times(step, args.calls // 4 + 1)  # warm-up
                for _ in range(args.blocks):
                    for k, step in enumerate(steps):
                        times[k].extend(call_times(step, args.calls))
                ours, theirs = (statistics.median(t) * 1e6 for t in times)
                print(f"{name:8s} B={B:<3d} {mode:9s}  fastrnn {ours:8.1f} us  "
                      f"torch {theirs:8.1f} us  ratio {theirs / ours:5.2f}")


if __name__ == "__main__":
    main()
