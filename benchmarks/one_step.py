"""One-step calls against torch.nn: the cells, and the modules at T = 1, as a decoder (teacher
forcing, scheduled sampling, generation) makes them once per step.

    .venv/bin/python benchmarks/one_step.py [--threads 2] [--H 256] [--I I] [--B 1,32]
        [--dtype float32] [--names LSTMCell,GRU] [--hx] [--blocks 10] [--calls 200]
    .venv/bin/python benchmarks/one_step.py --small [--hx]

For each case (cell or module, input size I (default H), each batch of --B, inference under
torch.inference_mode or train: forward and backward of a sum, the input requiring grad; no
initial state given, or with --hx a random one, as a decoder's later steps pass), the two implementations alternate in blocks of --calls calls; the figure
is each one's median call time over all blocks, and the ratio is torch's over fastrnn's (above 1:
fastrnn is faster). --small runs the small sizes of issue 20 instead: float64 LSTMCell(1, 51)
and (51, 51) at B = 97 (the time-series example's), LSTMCell(256, 256) at B = 32, and the
float32 cells at H = 51 and 64, B = 1, 8, 32, 128.
"""

import argparse
import statistics
import time

import torch

import fastrnn

NAMES = ("LSTMCell", "GRUCell", "RNNCell", "LSTM", "GRU", "RNN")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def small_cases():
    """(name, I, H, B, dtype) of issue 20's one-step table and its float32 small-H targets."""
    cases = [("LSTMCell", 1, 51, 97, "float64"), ("LSTMCell", 51, 51, 97, "float64"),
             ("LSTMCell", 256, 256, 32, "float64")]
    for H in (51, 64):
        for name in ("LSTMCell", "GRUCell", "RNNCell"):
            cases += [(name, H, H, B, "float32") for B in (1, 8, 32, 128)]
    return cases


def call_times(step, calls):
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def measure(name, I, H, B, dtype, mode, args):  # noqa: E741
    """Median call times (fastrnn, torch.nn) in microseconds of one case."""
    cell = name.endswith("Cell")
    x = torch.randn((B, I) if cell else (1, B, I), dtype=DTYPES[dtype],
                    requires_grad=mode == "train")
    hx = None
    if args.hx:
        h = torch.randn((B, H) if cell else (1, B, H), dtype=DTYPES[dtype])
        hx = (h, torch.randn_like(h)) if name.startswith("LSTM") else h
    steps = []
    for namespace in (fastrnn, torch.nn):
        torch.manual_seed(0)
        module = getattr(namespace, name)(I, H).to(DTYPES[dtype])

        def step(module=module):
            if mode == "train":
                out = module(x, hx)
                (out[0] if isinstance(out, tuple) else out).sum().backward()
            else:
                with torch.inference_mode():
                    module(x, hx)
        steps.append(step)
    times = ([], [])
    for step in steps:
        call_times(step, args.calls // 4 + 1)  # warm-up
    for _ in range(args.blocks):
        for k, step in enumerate(steps):
            times[k].extend(call_times(step, args.calls))
    return tuple(statistics.median(t) * 1e6 for t in times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--H", type=int, default=256, help="hidden size (default 256)")
    parser.add_argument("--I", type=int, help="input size (default: H)")
    parser.add_argument("--B", default="1,32", help="comma-separated batches (default 1,32)")
    parser.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    parser.add_argument("--names", default=",".join(NAMES),
                        help=f"comma-separated, from {','.join(NAMES)} (default: all)")
    parser.add_argument("--small", action="store_true",
                        help="issue 20's small sizes instead of --H --I --B --dtype --names")
    parser.add_argument("--hx", action="store_true",
                        help="pass a random initial state (default: none, i.e. zeros)")
    parser.add_argument("--blocks", type=int, default=10, help="blocks per implementation")
    parser.add_argument("--calls", type=int, default=200, help="timed calls per block")
    args = parser.parse_args()
    names = args.names.split(",")
    if any(n not in NAMES for n in names):
        parser.error(f"--names must be from {','.join(NAMES)}")
    batches = [int(b) for b in args.B.split(",")]
    I = args.I or args.H  # noqa: E741
    if min(args.threads, args.H, I, args.blocks, args.calls, *batches) < 1:
        parser.error("--threads, --H, --I, --B, --blocks and --calls must be positive")
    torch.set_num_threads(args.threads)
    cases = small_cases() if args.small else [
        (name, I, args.H, B, args.dtype) for name in names for B in batches]
    sizes = ("issue 20's small sizes" if args.small else
             f"I = H = {args.H}" if I == args.H else f"I = {I}, H = {args.H}")
    sizes += ", initial state given" if args.hx else ", no initial state"
    print(f"{args.threads} threads, {sizes}, medians of {args.blocks} x {args.calls} calls, "
          "implementations alternating; ratio = torch / fastrnn")
    for name, I, H, B, dtype in cases:  # noqa: E741
        for mode in ("inference", "train"):
            ours, theirs = measure(name, I, H, B, dtype, mode, args)
            print(f"{name:8s} {dtype:7s} I={I:<3d} H={H:<3d} B={B:<3d} {mode:9s}  "
                  f"fastrnn {ours:8.1f} us  torch {theirs:8.1f} us  ratio {theirs / ours:5.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
