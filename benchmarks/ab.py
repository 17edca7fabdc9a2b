"""A/B two builds of fastrnn on this machine, for changes smaller than the machine's noise.

Each build runs in a worker process of its own (PYTHONPATH = a directory holding that build's
`fastrnn` package, e.g. an unpacked wheel), both alive for the whole run. Every round asks
each worker in turn (the order alternates) for the median of a few calls of each case, so
drift in the machine's speed hits both builds alike; the verdict is the median over rounds
of the per-round time ratio A / B (above 1: B is faster).

    .venv/bin/pip wheel --no-build-isolation --no-deps OLD_CHECKOUT -w /tmp/wa
    unzip -q /tmp/wa/fastrnn-*.whl -d /tmp/site_a      # and the same for B
    .venv/bin/python benchmarks/ab.py /tmp/site_a /tmp/site_b --rounds 30 \\
        "lstm 100 32 256 inference" "gru 100 32 256 train"

A case is "cell T B H mode": cell lstm, lstm_proj (proj_size = H/2), gru, rnn_tanh or
rnn_relu; I = H; input and weights in --dtype (float32 unless given); mode inference (under
torch.inference_mode), forward (autograd recording), train (forward and backward of
output.sum(), the input requiring grad) or train_params (the same with an input that does not:
gradients of the parameters only).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

CELLS = ("lstm", "lstm_proj", "gru", "rnn_tanh", "rnn_relu")
MODES = ("inference", "forward", "train", "train_params")


def parse_case(text):
    fields = text.split()
    if len(fields) != 5 or fields[0] not in CELLS or fields[4] not in MODES:
        raise argparse.ArgumentTypeError(
            f"case {text!r}: want 'cell T B H mode', cell in {CELLS}, mode in {MODES}")
    try:
        T, B, H = (int(v) for v in fields[1:4])
    except ValueError:
        raise argparse.ArgumentTypeError(f"case {text!r}: T, B and H must be integers") from None
    if min(T, B, H) < 1:
        raise argparse.ArgumentTypeError(f"case {text!r}: T, B and H must be positive")
    return fields[0], T, B, H, fields[4]


def worker(threads, dtype):
    """Reads 'cell T B H mode calls' lines on stdin, answers each with a median time in ms."""
    import torch

    import fastrnn

    dtype = getattr(torch, dtype)
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    made = {}
    for line in sys.stdin:
        cell, T, B, H, mode = parse_case(line.rsplit(maxsplit=1)[0])
        calls = int(line.split()[-1])
        if (cell, T, B, H) not in made:
            if cell.startswith("lstm"):
                module = fastrnn.LSTM(H, H, proj_size=H // 2 if cell == "lstm_proj" else 0)
            elif cell == "gru":
                module = fastrnn.GRU(H, H)
            else:
                module = fastrnn.RNN(H, H, nonlinearity=cell[4:])
            module.to(dtype)
            x = torch.randn(T, B, H, dtype=dtype)
            made[cell, T, B, H] = module, x, x.clone().requires_grad_()
        module, x, x_grad = made[cell, T, B, H]

        def call():
            if mode == "inference":
                with torch.inference_mode():
                    module(x)
            elif mode == "forward":
                module(x_grad)
            elif mode == "train":
                module(x_grad)[0].sum().backward()
            else:
                module(x)[0].sum().backward()

        call()  # warm-up: the first call of a shape allocates
        times = []
        for _ in range(calls):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        print(f"{statistics.median(times) * 1e3:.4f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("site_a", help="directory holding build A's fastrnn package")
    parser.add_argument("site_b", help="directory holding build B's fastrnn package")
    parser.add_argument("cases", nargs="+", type=parse_case, metavar="CASE",
                        help='"cell T B H mode", e.g. "lstm 100 32 256 train"')
    parser.add_argument("--rounds", type=int, default=20, help="(default 20)")
    parser.add_argument("--calls", type=int, default=7,
                        help="timed calls per case, build and round (default 7)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--dtype", choices=("float32", "float64", "bfloat16", "float16"),
                        default="float32", help="of the input and the weights (default float32)")
    args = parser.parse_args()
    for site in (args.site_a, args.site_b):
        if not os.path.isdir(os.path.join(site, "fastrnn")):
            parser.error(f"{site} holds no fastrnn package")
    if args.rounds < 1 or args.calls < 1 or args.threads < 1:
        parser.error("--rounds, --calls and --threads must be positive")

    import scipy_openblas32

    workers = []
    for site in (args.site_a, args.site_b):
        # an unpacked wheel finds OpenBLAS through the library path, not through site-packages
        library_path = os.pathsep.join(
            p for p in (scipy_openblas32.get_lib_dir(), os.environ.get("LD_LIBRARY_PATH")) if p)
        env = dict(os.environ, PYTHONPATH=os.path.abspath(site), LD_LIBRARY_PATH=library_path)
        workers.append(subprocess.Popen(
            [sys.executable, __file__, "--worker", str(args.threads), args.dtype], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
    times = {case: ([], []) for case in args.cases}
    try:
        for r in range(args.rounds):
            for case in args.cases:
                for w in ((0, 1) if r % 2 == 0 else (1, 0)):
                    workers[w].stdin.write(" ".join(map(str, case)) + f" {args.calls}\n")
                    workers[w].stdin.flush()
                    answer = workers[w].stdout.readline()
                    if not answer:
                        sys.exit(f"worker {'AB'[w]} ended (its stderr is above)")
                    times[case][w].append(float(answer))
    finally:
        for w in workers:
            w.stdin.close()
            w.wait()
    print(f"{args.rounds} rounds, {args.calls} calls per case, build and round, "
          f"{args.threads} threads, {args.dtype}; ratio = A / B per round (above 1: B faster)")
    for case, (a, b) in times.items():
        ratios = [x / y for x, y in zip(a, b)]
        print(f"{' '.join(map(str, case)):28s} A {statistics.median(a):9.3f} ms  "
              f"B {statistics.median(b):9.3f} ms  ratio median {statistics.median(ratios):.3f} "
              f"(min {min(ratios):.3f}, max {max(ratios):.3f})")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), sys.argv[3])
    else:
        main()
