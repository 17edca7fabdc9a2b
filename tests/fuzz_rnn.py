"""The fuzz driver of tests/test_fuzz.py, run as a script in a subprocess (a crash is then a
failed test, not the end of the run): random valid and invalid calls of the op, rnn_stack, the
one-layer functions and the modules, through hypothesis.

Each case draws a stack (mode, T, B, I, H, layers, directions, projection, bias, dtype, padded
or packed with random lengths, trailing empty steps included), its tensors' memory (contiguous,
strided views of a larger NaN-filled buffer, overlapping rows made by expand), the cells'
options, and at most one corruption (a hostile integer: 0, negative, 2^62 + 1, 2^63 - 1 for
num_layers or proj_size; a weight of the wrong shape or missing; a tensor of another dtype or on
the meta device; bad batch_sizes; a bad option). A valid call must match fastrnn.reference
(outputs, states and, in float64, every gradient; all-meta calls: the shapes); a corrupted one
must raise ValueError, TypeError, RuntimeError or IndexError. Modules are compared with
torch.nn's, which must raise where they raise.

Environment: FASTRNN_FUZZ_EXAMPLES (default 300), FASTRNN_FUZZ_SEED (default 0; "random" for a
new seed each run). Local long run: FASTRNN_FUZZ_EXAMPLES=5000 FASTRNN_FUZZ_SEED=random
python tests/fuzz_rnn.py
"""

from __future__ import annotations

import os
import random
import sys

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fastrnn  # noqa: E402
from tolerances import TOLERANCES  # noqa: E402

MODES = ("lstm", "gru", "rnn_tanh", "rnn_relu")
CLASSES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
ERRORS = (ValueError, TypeError, RuntimeError, IndexError)
HOSTILE = (0, -1, -(2**63), 2**62 + 1, 2**63 - 1)
CORRUPTIONS = ("num_layers", "proj_size", "weight_shape", "weight_missing", "dtype", "device",
               "hx_shape", "batch_sizes", "option", "input_rank", "dropout_masks")


def place(values: torch.Tensor, layout: str) -> torch.Tensor:
    """values in the memory layout named: contiguous, a strided view of a NaN-filled buffer, or
    (for read-only arguments) a view whose rows overlap (expand of one row)."""
    if layout == "strided" and values.dim() >= 1:
        buffer = torch.full((*values.shape[:-1], 2 * values.shape[-1] + 1), float("nan"),
                            dtype=values.dtype)
        view = buffer[..., 1::2]
        view.copy_(values)
        return view
    if layout == "overlap" and values.dim() >= 2 and values.shape[0] > 0:
        return values[:1].expand_as(values)
    return values.clone()


@st.composite
def cases(draw):
    mode = draw(st.sampled_from(MODES))
    T, B, I, H = (draw(st.integers(1, n)) for n in (4, 3, 4, 5))
    L = draw(st.integers(1, 2))
    bidirectional = draw(st.booleans())
    proj = draw(st.integers(1, H - 1)) if mode == "lstm" and H > 1 and draw(st.booleans()) else 0
    case = dict(mode=mode, T=T, B=B, I=I, H=H, L=L, bidirectional=bidirectional, proj=proj,
                bias=draw(st.booleans()), packed=draw(st.booleans()), hx=draw(st.booleans()),
                masks=L > 1 and draw(st.booleans()),
                dtype=draw(st.sampled_from((torch.float32, torch.float64))),
                layouts=draw(st.lists(st.sampled_from(("contiguous", "strided", "overlap")),
                                      min_size=5, max_size=5)),
                lengths=sorted(draw(st.lists(st.integers(1, T), min_size=B, max_size=B)),
                               reverse=True),
                empty_steps=draw(st.integers(0, 2)),
                grad_clip=draw(st.one_of(st.none(), st.floats(0.05, 5))),
                cell_clip=draw(st.one_of(st.none(), st.floats(0.05, 5))) if mode == "lstm"
                else None,
                all_meta=draw(st.integers(0, 9)) == 7,
                path=draw(st.sampled_from(("op", "stack", "functional", "module"))),
                corruption=draw(st.one_of(st.none(), st.none(), st.sampled_from(CORRUPTIONS))),
                hostile=draw(st.sampled_from(HOSTILE)),
                pick=draw(st.integers(0, 10**6)),
                seed=draw(st.integers(0, 2**31)))
    return case


def build(c):
    """(mode, input, batch_sizes, hx, cx, weights, kwargs) of a valid call for case c."""
    gen = torch.Generator().manual_seed(c["seed"])
    D, P, G = 2 if c["bidirectional"] else 1, c["proj"] or c["H"], {"lstm": 4, "gru": 3}.get(
        c["mode"], 1)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(c["dtype"])

    weights = []
    for layer in range(c["L"]):
        for _ in range(D):
            width = c["I"] if layer == 0 else D * P
            shapes = [(G * c["H"], width), (G * c["H"], P)]
            shapes += [(G * c["H"],), (G * c["H"],)] if c["bias"] else []
            shapes += [(P, c["H"])] if c["proj"] else []
            weights += [place(rand(*s, scale=c["H"] ** -0.5), c["layouts"][0]) for s in shapes]
    batch_sizes = None
    if c["packed"]:
        sizes = [sum(n > t for n in c["lengths"]) for t in range(c["T"])] + [0] * c["empty_steps"]
        batch_sizes = torch.tensor(sizes, dtype=torch.int64)
        rows = (sum(sizes),)
        B = sizes[0]
    else:
        rows, B = (c["T"], c["B"]), c["B"]
    input = place(rand(*rows, c["I"]), c["layouts"][1])
    hx = place(rand(c["L"] * D, B, P, scale=0.5), c["layouts"][2]) if c["hx"] else None
    cx = (place(rand(c["L"] * D, B, c["H"], scale=0.5), c["layouts"][3])
          if c["hx"] and c["mode"] == "lstm" else None)
    masks = None
    if c["masks"]:
        keep = torch.rand(c["L"] - 1, *rows, D * P, generator=gen) > 0.3
        masks = place(keep.to(c["dtype"]) / 0.7, c["layouts"][4])
    kwargs = dict(has_bias=c["bias"], num_layers=c["L"], bidirectional=c["bidirectional"],
                  proj_size=c["proj"], dropout_masks=masks, grad_clip=c["grad_clip"],
                  cell_clip=c["cell_clip"])
    return [c["mode"], input, batch_sizes, hx, cx, weights], kwargs


def corrupt(c, args, kwargs) -> bool:
    """Applies c's corruption; False where it does not apply to this case (then valid)."""
    mode, input, batch_sizes, hx, cx, weights = args
    what, pick = c["corruption"], c["pick"]
    if what == "num_layers":
        kwargs["num_layers"] = c["hostile"] if c["hostile"] != c["L"] else c["L"] + 1
    elif what == "proj_size":
        kwargs["proj_size"] = c["hostile"] if c["hostile"] else c["H"]
    elif what == "weight_shape":
        k = pick % len(weights)
        shape = list(weights[k].shape)
        shape[pick % len(shape)] += 1
        weights[k] = torch.zeros(shape, dtype=weights[k].dtype)
    elif what == "weight_missing":
        del weights[pick % len(weights)]
    elif what == "dtype":
        names = ["input", "weight"] + ["hx"] * (hx is not None)
        name = names[pick % len(names)]
        other = (torch.float64 if input.dtype == torch.float32 else torch.float32,
                 torch.float16, torch.int64)[pick % 3]
        if name == "input":
            args[1] = input.to(other)
        elif name == "hx":
            args[3] = hx.to(other)
        else:
            weights[pick % len(weights)] = weights[pick % len(weights)].to(other)
    elif what == "device":
        if c["all_meta"]:
            return False  # every tensor goes to meta anyway
        names = ["input", "weight"] + ["hx"] * (hx is not None) + ["batch"] * (
            batch_sizes is not None)
        name = names[pick % len(names)]
        if name == "input":
            args[1] = input.to("meta")
        elif name == "hx":
            args[3] = hx.to("meta")
        elif name == "batch":
            args[2] = batch_sizes.to("meta")
        else:
            weights[pick % len(weights)] = weights[pick % len(weights)].to("meta")
    elif what == "hx_shape":
        if hx is None:
            return False
        shape = list(hx.shape)
        shape[pick % 3] += 1
        args[3] = torch.zeros(shape, dtype=hx.dtype)
    elif what == "batch_sizes":
        if batch_sizes is None:
            return False
        bad = [batch_sizes.flip(0), batch_sizes - 2**62, torch.cat([batch_sizes, batch_sizes]),
               batch_sizes.int(), batch_sizes[None], batch_sizes * 0, batch_sizes[:0]]
        args[2] = bad[pick % len(bad)]
        if args[2].dim() == 1 and args[2].numel() > 1 and torch.equal(args[2], batch_sizes):
            return False  # a flip of equal sizes: still valid
    elif what == "option":
        name = "cell_clip" if c["mode"] != "lstm" and pick % 2 else "grad_clip"
        kwargs[name] = (0.0, -1.0, float("nan"), float(c["hostile"] or -3))[pick % 4]
        if kwargs[name] > 0:
            return c["mode"] != "lstm" and name == "cell_clip"
    elif what == "input_rank":
        args[1] = input.reshape(-1) if pick % 2 else input[None]
    elif what == "dropout_masks":
        masks = kwargs["dropout_masks"]
        kwargs["dropout_masks"] = (torch.ones(2, 2, dtype=input.dtype) if masks is None
                                   else masks[..., :-1])
    return True


def grads_of(outputs, leaves):
    outputs = [o for o in outputs if o.numel()]
    weights = [torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o) for o in outputs]
    total = sum((o * w).sum() for o, w in zip(outputs, weights))
    return torch.autograd.grad(total, leaves, allow_unused=True)


def check_close(got, want, kind, what):
    tol = TOLERANCES[want.dtype][kind]
    torch.testing.assert_close(got, want, atol=tol, rtol=tol, equal_nan=True,
                               msg=lambda m: f"{what}: {m}")


def run_functional_like(c, args, kwargs, valid):
    mode = args[0]
    path = c["path"]
    one_layer = (kwargs["num_layers"] == 1 and not kwargs["bidirectional"] and not c["packed"]
                 and kwargs["proj_size"] == 0 and kwargs["dropout_masks"] is None)
    if path == "functional" and not one_layer:
        path = "stack"
    options = {k: kwargs[k] for k in ("grad_clip", "cell_clip") if kwargs[k] is not None}
    grads = valid and c["dtype"] == torch.float64 and not c["all_meta"]
    leaves = []
    if grads:
        leaves = [t.requires_grad_() for t in (args[1], args[3], args[4], *args[5])
                  if t is not None and t.is_floating_point() and not t.is_meta]

    def call(impl, args=args):
        if path == "functional":
            _, input, _, hx, cx, w = args
            h0 = None if hx is None else hx[0]
            c0 = None if cx is None else cx[0]
            w = w + [None, None] * (not kwargs["has_bias"])
            if mode == "lstm":
                return impl.lstm(input, h0, c0, *w, **options)
            if mode == "gru":
                return impl.gru(input, h0, *w, **options)
            return impl.rnn(input, h0, *w, nonlinearity=mode[4:], **options)
        if path == "op" and impl is fastrnn.functional:
            fixed = {k: v for k, v in kwargs.items() if k not in ("grad_clip", "cell_clip")}
            hx = args[3]
            if args[2] is not None and hx is None:  # the op needs hx with packed input
                hx = fastrnn.functional._zero_state(args[1], args[2], args[5],
                                                    fixed["num_layers"],
                                                    fixed["bidirectional"], fixed["proj_size"])
            return torch.ops.fastrnn.rnn(mode, args[1], args[2], hx, args[4], args[5],
                                         fixed["has_bias"], fixed["num_layers"],
                                         fixed["bidirectional"], fixed["proj_size"],
                                         fixed["dropout_masks"], bool(leaves), **options)[:3]
        return impl.rnn_stack(*args, **{k: v for k, v in kwargs.items() if v is not None
                                        or k == "dropout_masks"})

    try:
        got = call(fastrnn.functional)
    except ERRORS as e:
        assert not valid, f"valid call raised {type(e).__name__}: {e}"
        return
    assert valid, f"corrupted call ({c['corruption']}) returned"
    if c["all_meta"]:  # the shapes of the same call on the CPU
        def on_cpu(t):  # (a meta tensor has no values: zeros of its shape)
            return torch.zeros(t.shape, dtype=t.dtype) if t.is_meta else t
        cpu_args = [on_cpu(a) if isinstance(a, torch.Tensor) else
                    [on_cpu(w) for w in a] if isinstance(a, list) else a for a in args]
        masks = kwargs["dropout_masks"]
        kwargs["dropout_masks"] = None if masks is None else torch.ones(masks.shape,
                                                                        dtype=masks.dtype)
        want = call(fastrnn.functional, cpu_args)
        assert [t.shape for t in got] == [t.shape for t in want], (got, want)
        return
    want = call(fastrnn.reference)
    for k, (a, b) in enumerate(zip(got, want)):
        if b.numel():
            check_close(a, b, "output", f"{path} output {k}")
    if grads:
        for k, (a, b) in enumerate(zip(grads_of(got, leaves), grads_of(want, leaves))):
            if b is not None:
                check_close(a, b, "grad", f"{path} gradient {k}")


def run_module(c, args, kwargs, valid):
    mode, input, batch_sizes, hx, cx, weights = args
    if kwargs["dropout_masks"] is not None or c["all_meta"]:
        return
    torch.manual_seed(c["seed"])
    options = dict(bias=c["bias"], num_layers=c["L"], bidirectional=c["bidirectional"],
                   dtype=c["dtype"])
    if mode == "lstm":
        options["proj_size"] = c["proj"]
    elif mode.startswith("rnn_"):
        options["nonlinearity"] = mode[4:]
    fast = getattr(fastrnn, CLASSES[mode])(c["I"], c["H"], **options)
    ref = getattr(torch.nn, CLASSES[mode])(c["I"], c["H"], **options)
    ref.load_state_dict(fast.state_dict())
    x = input
    if batch_sizes is not None:
        if batch_sizes.dim() != 1 or batch_sizes.dtype != torch.int64 or batch_sizes.is_meta:
            return  # a PackedSequence cannot hold these
        x = torch.nn.utils.rnn.PackedSequence(input, batch_sizes)
    state = None
    if hx is not None:
        state = (hx, cx) if mode == "lstm" else hx
        if c["corruption"] == "hx_shape" and mode == "lstm":
            state = (hx, cx, cx)  # a 3-tuple
    hostile_layers = c["corruption"] == "num_layers"
    if hostile_layers:
        fast.num_layers = kwargs["num_layers"]
    try:
        got = fast(x, state)
    except ERRORS:
        if hostile_layers:
            return
        try:
            ref(x, state)
        except ERRORS:
            return
        if c["corruption"] == "hx_shape":
            return  # torch.nn ignores a third state; fastrnn refuses it
        raise
    assert not hostile_layers, "a module with a hostile num_layers returned"
    want = ref(x, state)
    flat = [got[0].data if batch_sizes is not None else got[0]]
    flat_want = [want[0].data if batch_sizes is not None else want[0]]
    for a, b in ((got[1], want[1]),):
        flat += list(a) if isinstance(a, tuple) else [a]
        flat_want += list(b) if isinstance(b, tuple) else [b]
    for k, (a, b) in enumerate(zip(flat, flat_want)):
        check_close(a, b, "output", f"module output {k}")


COUNTS: dict[str, int] = {}


def one_case(c):
    key = f"{c['path']}:{'meta' if c['all_meta'] else 'cpu'}:{c['corruption'] or 'valid'}"
    COUNTS[key] = COUNTS.get(key, 0) + 1
    args, kwargs = build(c)
    valid = True
    if c["corruption"] is not None:
        valid = not corrupt(c, args, kwargs)
    if c["all_meta"]:
        args = [a.to("meta") if isinstance(a, torch.Tensor) and a.is_floating_point() else
                [w.to("meta") for w in a] if isinstance(a, list) else a for a in args]
        if kwargs["dropout_masks"] is not None:
            kwargs["dropout_masks"] = kwargs["dropout_masks"].to("meta")
    if c["path"] == "module":
        run_module(c, args, kwargs, valid)
        return
    run_functional_like(c, args, kwargs, valid)


def main() -> None:
    examples = int(os.environ.get("FASTRNN_FUZZ_EXAMPLES", "300"))
    chosen = os.environ.get("FASTRNN_FUZZ_SEED", "0")
    fuzz_seed = random.randrange(2**32) if chosen == "random" else int(chosen)
    print(f"fuzz: {examples} examples, seed {fuzz_seed}", flush=True)

    @seed(fuzz_seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck), print_blob=True)
    @given(cases())
    def fuzz(c):
        one_case(c)

    fuzz()
    print(f"fuzz: passed, {sum(COUNTS.values())} calls: " +
          ", ".join(f"{k} {n}" for k, n in sorted(COUNTS.items())), flush=True)


if __name__ == "__main__":
    main()
