"""Shared by the module tests: torch.nn-style recurrent modules in every configuration, their
inputs (padded, packed, unbatched), one function that runs forward and backward through
fastrnn's module, torch.nn's module (the same weights) or fastrnn.reference.rnn_stack, and the
dropout masks fastrnn's modules draw."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import fastrnn
from tolerances import assert_close

# fastrnn's op mode -> the class name shared by torch.nn and fastrnn
CLASS_NAMES = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}
# "packed_*": the padded input packed by pack_padded_sequence: lengths in decreasing order and
# enforce_sorted=True, the same lengths with enforce_sorted=False, unsorted lengths.
INPUT_KINDS = ("padded", "packed_sorted", "packed_sorted_not_enforced", "packed_unsorted",
               "unbatched")
CELL_CONFIGS = (("lstm", False), ("lstm", True), ("gru", False), ("rnn_tanh", False),
                ("rnn_relu", False))  # (cell, proj)


@dataclass(frozen=True)
class Sizes:
    T: int
    B: int
    I: int
    H: int
    P: int  # proj_size when the configuration has a projection
    lengths: tuple[int, ...]  # of the packed sequences, unsorted; contains 1 and T

    def __post_init__(self):
        assert len(self.lengths) == self.B and {1, self.T} <= set(self.lengths)
        assert 0 < self.P < self.H


TINY = Sizes(T=5, B=4, I=3, H=4, P=2, lengths=(2, 5, 1, 3))
SMALL = Sizes(T=9, B=6, I=7, H=17, P=5, lengths=(4, 9, 1, 4, 7, 2))
# one step of one sequence of one feature; a wide input
EDGE = (Sizes(T=1, B=1, I=1, H=2, P=1, lengths=(1,)),
        Sizes(T=3, B=2, I=129, H=33, P=7, lengths=(1, 3)))


@dataclass(frozen=True)
class Config:
    """One module configuration and how it is called."""
    cell: str  # "lstm", "gru", "rnn_tanh", "rnn_relu"
    num_layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    bias: bool = True
    proj: bool = False  # LSTM only: proj_size = sizes.P
    input: str = "padded"  # one of INPUT_KINDS
    hx: bool = True  # an initial state given (else None: zeros)
    dropout: float = 0.0
    sizes: Sizes = field(default=TINY, compare=False)

    def __post_init__(self):
        assert self.cell in CLASS_NAMES and self.input in INPUT_KINDS
        assert not self.proj or self.cell == "lstm"

    @property
    def is_lstm(self) -> bool:
        return self.cell == "lstm"

    @property
    def packed(self) -> bool:
        return self.input.startswith("packed")

    @property
    def D(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def H(self) -> int:
        return self.sizes.H

    @property
    def P(self) -> int:  # the size of h
        return self.sizes.P if self.proj else self.sizes.H

    @property
    def proj_size(self) -> int:
        return self.sizes.P if self.proj else 0

    def module_kwargs(self) -> dict:
        kwargs = dict(num_layers=self.num_layers, bias=self.bias, batch_first=self.batch_first,
                      dropout=self.dropout, bidirectional=self.bidirectional)
        if self.proj:
            kwargs["proj_size"] = self.sizes.P
        if self.cell.startswith("rnn_"):
            kwargs["nonlinearity"] = self.cell.removeprefix("rnn_")
        return kwargs

    def make(self, namespace, dtype=torch.float64):
        """The module of this configuration from namespace (torch.nn or fastrnn)."""
        cls = getattr(namespace, CLASS_NAMES[self.cell])
        return cls(self.sizes.I, self.sizes.H, dtype=dtype, **self.module_kwargs())

    def flat_weight_names(self) -> list[str]:
        """torch.nn's _flat_weights_names: per layer, per direction, w_ih, w_hh[, b_ih, b_hh]
        [, w_hr]."""
        names = []
        for layer in range(self.num_layers):
            for suffix in ("", "_reverse")[:self.D]:
                kinds = ["weight_ih", "weight_hh"] + ["bias_ih", "bias_hh"] * self.bias
                kinds += ["weight_hr"] * self.proj
                names += [f"{kind}_l{layer}{suffix}" for kind in kinds]
        return names

    @property
    def id(self) -> str:
        default = Config(self.cell)
        parts = [self.cell]
        for f in fields(self):
            value = getattr(self, f.name)
            if f.compare and f.name != "cell" and value != getattr(default, f.name):
                parts.append(f"{f.name}={value}")
        return ",".join(parts)


def full_product(sizes: Sizes = TINY) -> list[Config]:
    """Every combination of the cell (with and without a projection for the LSTM), num_layers,
    bidirectional, batch_first, bias, the input kind and an initial state given or not."""
    return [Config(cell, num_layers, bidirectional, batch_first, bias, proj, input, hx,
                   sizes=sizes)
            for cell, proj in CELL_CONFIGS
            for num_layers in (1, 2, 3)
            for bidirectional in (False, True)
            for batch_first in (False, True)
            for bias in (True, False)
            for input in INPUT_KINDS
            for hx in (True, False)]


def covering_subset(sizes: Sizes = SMALL) -> list[Config]:
    """Per cell (and projection), every num_layers with every input kind, the other options
    cycling so that each of their values appears with each cell (test_covering_subset_...)."""
    configs = []
    for cell, proj in CELL_CONFIGS:
        for i, (num_layers, input) in enumerate(
                (n, kind) for n in (1, 2, 3) for kind in INPUT_KINDS):
            configs.append(Config(cell, num_layers, bidirectional=i % 2 == 0,
                                  batch_first=i // 2 % 2 == 0, bias=i % 3 != 2, proj=proj,
                                  input=input, hx=i % 4 != 3, sizes=sizes))
    return configs


def torch_nn_module(config: Config, dtype, seed: int = 0) -> torch.nn.Module:
    """torch.nn's module with random weights of torch.nn's init range (biases nonzero)."""
    module = config.make(torch.nn, dtype)
    gen = torch.Generator().manual_seed(seed)
    k = config.H ** -0.5
    with torch.no_grad():
        for param in module.parameters():
            param.copy_((torch.rand(param.shape, generator=gen, dtype=torch.float64) * 2 - 1) * k)
    return module


def fastrnn_module(config: Config, dtype, seed: int = 0) -> torch.nn.Module:
    """fastrnn's module with the weights of torch_nn_module(config, dtype, seed)."""
    module = config.make(fastrnn, dtype)
    module.load_state_dict(torch_nn_module(config, dtype, seed).state_dict(), strict=True)
    return module


@dataclass
class Inputs:
    """The leaves of one call: x (padded as the module takes it: [B, T, I] if batch_first,
    [T, I] if unbatched), h0 [L*D, B, P] and c0 [L*D, B, H] (no B if unbatched) or None."""
    x: Tensor
    h0: Tensor | None
    c0: Tensor | None
    lengths: tuple[int, ...] | None  # packed input only

    def leaves(self) -> dict[str, Tensor]:
        return {name: t for name, t in (("input", self.x), ("h0", self.h0), ("c0", self.c0))
                if t is not None}


def make_inputs(config: Config, dtype, seed: int = 1) -> Inputs:
    s = config.sizes
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape, scale=1.0):
        values = torch.randn(*shape, generator=gen, dtype=torch.float64) * scale
        return values.to(dtype).requires_grad_()

    unbatched = config.input == "unbatched"
    x_shape = (s.T, s.I) if unbatched else ((s.B, s.T, s.I) if config.batch_first
                                             else (s.T, s.B, s.I))
    batch = () if unbatched else (s.B,)
    L_D = config.num_layers * config.D
    x = rand(*x_shape)
    h0 = rand(L_D, *batch, config.P, scale=0.5) if config.hx else None
    c0 = rand(L_D, *batch, config.H, scale=0.5) if config.hx and config.is_lstm else None
    lengths = None
    if config.packed:
        lengths = s.lengths if config.input == "packed_unsorted" else tuple(
            sorted(s.lengths, reverse=True))
    return Inputs(x, h0, c0, lengths)


def module_input(config: Config, inputs: Inputs):
    """What the module is called with: (input, hx), input packed for the packed kinds."""
    x = inputs.x
    if config.packed:
        x = pack_padded_sequence(x, torch.tensor(inputs.lengths), batch_first=config.batch_first,
                                 enforce_sorted=config.input == "packed_sorted")
    if inputs.h0 is None:
        return x, None
    return x, ((inputs.h0, inputs.c0) if config.is_lstm else inputs.h0)


def dropout_masks(config: Config, rows: tuple[int, ...], dtype) -> Tensor:
    """The masks fastrnn's modules draw in training when dropout > 0 and num_layers > 1, the
    first random numbers drawn by their forward: rows = (T, B), time-major as the op takes
    them (B = 1 for unbatched input), or (N,) for packed input."""
    p = config.dropout
    return torch.empty(config.num_layers - 1, *rows, config.D * config.P,
                       dtype=dtype).bernoulli_(1 - p).div_(1 - p)


def reference_forward(config: Config, params: dict[str, Tensor], input, hx=None,
                      masks: Tensor | None = None):
    """torch.nn's RNN module semantics on top of fastrnn.reference.rnn_stack, with the module's
    parameters by name: batch_first, unbatched input, PackedSequence (sorted_indices applied to
    hx, unsorted_indices to h_n and c_n). Returns what the module returns."""
    weights = [params[name] for name in config.flat_weight_names()]
    kwargs = dict(has_bias=config.bias, num_layers=config.num_layers,
                  bidirectional=config.bidirectional, proj_size=config.proj_size,
                  dropout_masks=masks)
    h0, c0 = (hx if config.is_lstm else (hx, None)) if hx is not None else (None, None)
    if isinstance(input, PackedSequence):
        if h0 is not None and input.sorted_indices is not None:
            h0 = h0.index_select(1, input.sorted_indices)
            c0 = None if c0 is None else c0.index_select(1, input.sorted_indices)
        output, h_n, c_n = fastrnn.reference.rnn_stack(
            config.cell, input.data, input.batch_sizes, h0, c0, weights, **kwargs)
        output = PackedSequence(output, input.batch_sizes, input.sorted_indices,
                                input.unsorted_indices)
        if input.unsorted_indices is not None:
            h_n = h_n.index_select(1, input.unsorted_indices)
            c_n = c_n.index_select(1, input.unsorted_indices) if config.is_lstm else c_n
    else:
        unbatched = input.dim() == 2
        x = input.unsqueeze(1) if unbatched else (
            input.transpose(0, 1) if config.batch_first else input)
        if unbatched and h0 is not None:
            h0, c0 = h0.unsqueeze(1), None if c0 is None else c0.unsqueeze(1)
        output, h_n, c_n = fastrnn.reference.rnn_stack(config.cell, x, None, h0, c0, weights,
                                                       **kwargs)
        if unbatched:
            output, h_n = output.squeeze(1), h_n.squeeze(1)
            c_n = c_n.squeeze(1) if config.is_lstm else c_n
        elif config.batch_first:
            output = output.transpose(0, 1)
    return output, ((h_n, c_n) if config.is_lstm else h_n)


def call(impl: str, module: torch.nn.Module, config: Config, inputs: Inputs,
         masks: Tensor | None = None):
    """The module (impl "fastrnn" or "torch.nn") or the reference with its parameters on the
    inputs; returns {name: output} with output (the data of a PackedSequence), h_n[, c_n]."""
    input, hx = module_input(config, inputs)
    if impl == "reference":
        output, state = reference_forward(config, dict(module.named_parameters()), input, hx,
                                          masks)
    else:
        output, state = module(input, hx)
    if config.packed:
        assert isinstance(output, PackedSequence)
        for name in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            expected, actual = getattr(input, name), getattr(output, name)
            assert (actual is None) == (expected is None) and (
                actual is None or torch.equal(actual, expected)), name
        output = output.data
    states = state if config.is_lstm else (state,)
    return dict(zip(("output", "h_n", "c_n"), (output, *states)))


def random_upstream(outputs: dict[str, Tensor], seed: int = 2) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {name: torch.randn(value.shape, generator=gen, dtype=torch.float64).to(value.dtype)
            for name, value in outputs.items()}


def run(impl: str, config: Config, dtype, seed: int = 0):
    """Forward and backward (of sum(output * random upstream) over the outputs) through impl on
    the configuration's module with the weights of `seed`. Returns ({output name: value},
    {leaf name: gradient}) with the leaves input, h0, c0 and every parameter by name."""
    make = fastrnn_module if impl == "fastrnn" else torch_nn_module
    module = make(config, dtype, seed)
    inputs = make_inputs(config, dtype, seed + 1)
    outputs = call(impl, module, config, inputs)
    return outputs_and_grads(outputs, inputs.leaves() | dict(module.named_parameters()))


def outputs_and_grads(outputs: dict[str, Tensor], leaves: dict[str, Tensor], seed: int = 2):
    upstream = random_upstream(outputs, seed)
    grads = torch.autograd.grad(list(outputs.values()), list(leaves.values()),
                                list(upstream.values()))
    return ({name: value.detach() for name, value in outputs.items()},
            dict(zip(leaves, grads)))


def assert_same(actual, expected, what=""):
    """Outputs and gradients of two runs (the (outputs, grads) pairs of run) agree."""
    (outputs, grads), (expected_outputs, expected_grads) = actual, expected
    assert outputs.keys() == expected_outputs.keys() and grads.keys() == expected_grads.keys()
    for name, value in outputs.items():
        assert value.dtype == expected_outputs[name].dtype
        assert_close(value, expected_outputs[name], "output", f"{what}{name}")
    for name, grad in grads.items():
        assert_close(grad, expected_grads[name], "grad", f"{what}grad of {name}")


def stack_args(mode, T=6, B=4, I=5, H=7, num_layers=2, bidirectional=True, proj_size=0,
               bias=True, packed=False, hx=True, masks=False, transposed=False,
               dtype=torch.float64, requires_grad=True, seed=0):
    """(positional args, keyword args) of fastrnn.functional.rnn_stack (and the reference's):
    random values, weights in torch.nn's init range, every tensor but batch_sizes and the masks
    a leaf (requiring grad if requires_grad). Packed input: sorted lengths from T down to 1.
    transposed: the padded input is a batch-first buffer seen time-major (not contiguous)."""
    gen = torch.Generator().manual_seed(seed)
    kwargs = {"proj_size": proj_size} if proj_size else {}
    if mode.startswith("rnn_"):
        kwargs["nonlinearity"] = mode.removeprefix("rnn_")
    module = getattr(torch.nn, CLASS_NAMES[mode])(I, H, num_layers=num_layers, bias=bias,
                                                  bidirectional=bidirectional, **kwargs)
    D, P = 2 if bidirectional else 1, proj_size or H

    def rand(*shape, scale=1.0, uniform=False):
        values = (torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1 if uniform
                  else torch.randn(*shape, generator=gen, dtype=torch.float64))
        return (values * scale).to(dtype)

    def leaf(t):
        return t.requires_grad_(requires_grad)

    weights = [leaf(rand(*w.shape, scale=H ** -0.5, uniform=True)) for w in module._flat_weights]
    batch_sizes = None
    if packed:
        lengths = [T - round(b * (T - 1) / max(B - 1, 1)) for b in range(B)]
        batch_sizes = torch.tensor([sum(n > t for n in lengths) for t in range(T)])
        rows = (int(batch_sizes.sum()),)
        input = rand(*rows, I)
    else:
        rows = (T, B)
        input = rand(B, T, I).transpose(0, 1) if transposed else rand(T, B, I)
    h0 = leaf(rand(num_layers * D, B, P, scale=0.5)) if hx else None
    c0 = leaf(rand(num_layers * D, B, H, scale=0.5)) if hx and mode == "lstm" else None
    dropout_masks = None
    if masks:
        keep = torch.rand(num_layers - 1, *rows, D * P, generator=gen) > 0.3
        dropout_masks = keep.to(dtype) / 0.7
    return ((mode, leaf(input), batch_sizes, h0, c0, weights),
            dict(has_bias=bias, num_layers=num_layers, bidirectional=bidirectional,
                 proj_size=proj_size, dropout_masks=dropout_masks))


def op_args(args, kwargs, training):
    """The arguments of torch.ops.fastrnn.rnn for stack_args' (args, kwargs)."""
    return (*args, *(kwargs[name] for name in ("has_bias", "num_layers", "bidirectional",
                                                "proj_size", "dropout_masks")), training)
