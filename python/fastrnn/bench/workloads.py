"""The cases, the implementations under test, and the steps the timer calls.

A case is one cell at one shape (``T, B, I, H``, layers, directions) and input layout (time-major
or batch-first, padded or packed). A workload is a case made concrete on a device (cpu or cuda):
a torch.nn module, whose parameters every implementation starts from, a padded input, the
sequence lengths of a packed case, and fixed output gradients. An implementation turns a workload
into a :class:`Runner`: a forward ``padded input -> (output, h_n)``, ``output`` padded as the
input is or, for a packed case, the packed rows ``[N, D*H]``, ``h_n`` of shape
``[layers * directions, B, H]``, and the named parameters it trains; a mode turns a runner into a
step, a call with no arguments that the timer runs. A packed case packs the padded input inside
the call (``pack_padded_sequence(..., enforce_sorted=False)``, as a training loop does per batch),
for every implementation alike.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import math

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from .. import _C
from .. import functional
from .. import modules as fastrnn_modules
from .. import reference
from .timing import Step

Forward = Callable[[Tensor], "tuple[Tensor, Tensor]"]

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16}
# (the same on cuda, where the gpu presets run float32 and bfloat16)
CUDA_DTYPES = DTYPES
HALF_DTYPES = ("bfloat16",)  # checked against float32 (check.check_parity_half)
MODES = ("inference", "train")
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class Cell:
    name: str  # also the mode name of fastrnn's ops and of reference.rnn_stack
    gates: int  # G: rows of weight_ih are G*H
    torch_class: type[nn.RNNBase]
    fastrnn_class: type[nn.RNNBase]  # the drop-in module: same constructor and parameters
    options: dict = field(default_factory=dict)  # extra constructor arguments (nonlinearity)


CELLS = {
    "lstm": Cell("lstm", 4, nn.LSTM, fastrnn_modules.LSTM),
    "gru": Cell("gru", 3, nn.GRU, fastrnn_modules.GRU),
    "rnn_tanh": Cell("rnn_tanh", 1, nn.RNN, fastrnn_modules.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": Cell("rnn_relu", 1, nn.RNN, fastrnn_modules.RNN, {"nonlinearity": "relu"}),
}


def length_distribution(text: str) -> str:
    """``text`` as a packed case's length distribution: "uniform" (lengths uniform on 1..T) or
    a fraction F in (0, 1] (lengths uniform on ceil(F*T)..T), normalised ("0.50" -> "0.5");
    ValueError otherwise."""
    if text == "uniform":
        return text
    try:
        fraction = float(text)
    except ValueError:
        fraction = math.nan
    if not 0 < fraction <= 1:  # (False for nan)
        raise ValueError(f"a length distribution is 'uniform' or a fraction of T in (0, 1], "
                         f"got {text!r}")
    return f"{fraction:g}"


def layout_name(batch_first: bool, packed: str | None) -> str:
    """An input layout in one word: padded or packed(DIST), then ",bf" when batch-first."""
    kind = "padded" if packed is None else f"packed({packed})"
    return kind + (",bf" if batch_first else "")


@dataclass(frozen=True)
class Case:
    """One cell at one shape: input ``[T, B, I]`` (``[B, T, I]`` when ``batch_first``), hidden
    size ``H``, h0 = zeros. ``packed``: None for a padded input, else the distribution of the
    sequence lengths (:func:`length_distribution`): the longest is T, and the input is packed.
    ``proj_size``: an LSTM's projection P (0: none; then P = H), as torch.nn.LSTM's.
    ``dtype``: this case's, a key of DTYPES; None: the run's (``BenchConfig.dtype``)."""

    cell: str
    T: int
    B: int
    I: int  # noqa: E741  (the input size, named as everywhere in fastrnn)
    H: int
    layers: int = 1
    bidirectional: bool = False
    batch_first: bool = False
    packed: str | None = None
    proj_size: int = 0
    dtype: str | None = None

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; known: {', '.join(CELLS)}")
        for name in ("T", "B", "I", "H", "layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.packed is not None and length_distribution(self.packed) != self.packed:
            raise ValueError(f"packed must be a normalised length distribution, got "
                             f"{self.packed!r} (length_distribution gives "
                             f"{length_distribution(self.packed)!r})")
        if self.proj_size and (self.cell != "lstm" or not 0 < self.proj_size < self.H):
            raise ValueError(f"proj_size is an LSTM's, in 1..H-1, got {self.proj_size} for "
                             f"{self.cell} with H={self.H}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")

    @property
    def P(self) -> int:
        """The size of h (and of each direction's output): proj_size, or H without one."""
        return self.proj_size or self.H

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def shape(self) -> str:
        return f"{self.T}x{self.B}x{self.I}x{self.H}"

    @property
    def layout(self) -> str:
        return layout_name(self.batch_first, self.packed)

    def describe(self) -> str:
        return (f"{self.cell} T={self.T} B={self.B} I={self.I} H={self.H} L={self.layers}"
                f"{f' P={self.proj_size}' if self.proj_size else ''}"
                f"{' bidirectional' if self.bidirectional else ''}"
                f"{'' if self.layout == 'padded' else ' ' + self.layout}"
                f"{'' if self.dtype is None else ' ' + self.dtype}")

    def lengths(self, seed: int) -> Tensor | None:
        """The sequence lengths of a packed case (int64, [B], the first one T), or None."""
        if self.packed is None:
            return None
        low = 1 if self.packed == "uniform" else math.ceil(float(self.packed) * self.T)
        generator = torch.Generator().manual_seed(seed)
        lengths = torch.randint(low, self.T + 1, (self.B,), generator=generator)
        lengths[0] = self.T
        return lengths


def make_module(cls: type[nn.RNNBase], cell: Cell, case: Case) -> nn.RNNBase:
    options = dict(cell.options, **({"proj_size": case.proj_size} if case.proj_size else {}))
    return cls(case.I, case.H, num_layers=case.layers, bidirectional=case.bidirectional,
               batch_first=case.batch_first, **options)


@dataclass
class Workload:
    case: Case
    cell: Cell
    module: nn.RNNBase  # the torch.nn module; every implementation starts from its parameters
    # [T, B, I] ([B, T, I] batch-first), padded; requires grad: train mode computes its gradient
    input: Tensor
    lengths: Tensor | None  # [B] int64 on the CPU, the sequence lengths of a packed case
    grad_output: Tensor  # the gradient of the loss with respect to output (as Runner returns it)
    grad_h_n: Tensor  # [L*D, B, P], the gradient of the loss with respect to h_n

    @property
    def rows(self) -> int:
        """The (step, sequence) pairs the recurrence runs: T*B, or the sum of the lengths."""
        return self.case.T * self.case.B if self.lengths is None else int(self.lengths.sum())

    def pack(self, x: Tensor) -> PackedSequence:
        return pack_padded_sequence(x, self.lengths, batch_first=self.case.batch_first,
                                    enforce_sorted=False)


def make_workload(case: Case, dtype: torch.dtype, seed: int, device: str = "cpu") -> Workload:
    """Seeded per case, so a case's numbers do not depend on which other cases run; made on the
    CPU and then moved, so every device gets the same numbers."""
    torch.manual_seed(seed)
    cell = CELLS[case.cell]
    module = make_module(cell.torch_class, cell, case).to(device=device, dtype=dtype)
    D = case.directions
    T, B = (case.B, case.T) if case.batch_first else (case.T, case.B)
    x = torch.randn(T, B, case.I, dtype=dtype)
    lengths = case.lengths(seed)
    out_rows = (T, B) if lengths is None else (int(lengths.sum()),)
    return Workload(
        case=case,
        cell=cell,
        module=module,
        input=x.to(device).requires_grad_(),
        lengths=lengths,
        grad_output=torch.randn(*out_rows, D * case.P, dtype=dtype).to(device),
        grad_h_n=torch.randn(case.layers * D, case.B, case.P, dtype=dtype).to(device),
    )


EXPERIMENTAL_CUDA = "FASTRNN_EXPERIMENTAL_CUDA"  # =1: the CUDA drivers serve fastrnn's op


def fastrnn_cuda_path() -> str | None:
    """How the bench runs fastrnn on CUDA tensors here, or None when it cannot.

    "modules": fastrnn's modules serve CUDA tensors (``fastrnn.cuda_available()``). "functional":
    they do not (they would fall back to torch.nn, cuDNN, with a warning), but the CUDA drivers
    serve fastrnn's op because this is a CUDA build and FASTRNN_EXPERIMENTAL_CUDA=1
    (csrc/cuda/ops_cuda.cpp): the bench then calls ``fastrnn.functional.rnn_stack``, the op the
    modules call."""
    from .. import cuda_available  # the package has finished importing by now
    if cuda_available():
        return "modules"
    if _C.built_with_cuda and os.environ.get(EXPERIMENTAL_CUDA) == "1":
        return "functional"
    return None


def check_device(device: str, impls: tuple[str, ...]) -> None:
    """Raise ValueError (one line, for the command line) when ``impls`` cannot run on ``device``
    on this machine."""
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        raise ValueError("--device cuda: torch.cuda.is_available() is False (no GPU, or a torch "
                         "without CUDA)")
    if "fastrnn" in impls and fastrnn_cuda_path() is None:
        # fastrnn's modules would quietly run torch.nn's implementation instead: refuse
        why = (f"{EXPERIMENTAL_CUDA} is not 1" if _C.built_with_cuda
               else "this build of fastrnn has no CUDA kernels")
        raise ValueError(f"--device cuda: fastrnn's CUDA drivers are off ({why}), so its modules "
                         f"would run torch.nn (cuDNN) and report cuDNN's times as fastrnn's; set "
                         f"{EXPERIMENTAL_CUDA}=1 on a CUDA build, or pass --impls torch,torch-native")


@contextmanager
def exact_fp32(device: str):
    """On cuda, float32 without TF32 in cuDNN and cuBLAS while the run lasts.

    torch lets cuDNN (its RNNs included) run float32 as TF32 by default
    (torch.backends.cudnn.allow_tf32); the baseline would then compute with a 10-bit mantissa
    while torch-native, the reference and the peak's torch.mm do not, fail the parity check and
    count GFLOP/s of a different arithmetic. Nothing to do on cpu.
    """
    if device != "cuda":
        yield
        return
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@dataclass
class Runner:
    """One implementation's forward over a workload, and the parameters train mode differentiates."""

    forward: Forward
    params: dict[str, Tensor]  # named as torch.nn names them, so gradients compare by name

    def leaves(self, workload: Workload) -> list[Tensor]:
        """The tensors a train step computes gradients for: the input, then the parameters."""
        return [workload.input, *self.params.values()]


def _module_forward(module: nn.RNNBase, workload: Workload) -> Forward:
    """``module`` on the padded input, packed first in a packed case; (output, h_n), output the
    packed rows in a packed case."""
    packed = workload.lengths is not None

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        output, state = module(workload.pack(x) if packed else x)
        h_n = state[0] if isinstance(state, tuple) else state  # LSTM: (h_n, c_n)
        return (output.data if packed else output), h_n
    return forward


def _torch(workload: Workload) -> Runner:
    """torch.nn as the user gets it (float32 LSTM on CPU: oneDNN, padded input only; on CUDA:
    cuDNN)."""
    module = workload.module
    return Runner(_module_forward(module, workload), dict(module.named_parameters()))


@contextmanager
def _disabled(backend):
    """``backend.flags(enabled=False)`` (torch.backends.mkldnn or cudnn) without its other
    settings: those flags() set TF32 too (and mkldnn's warns)."""
    before = backend.enabled
    backend.enabled = False
    try:
        yield
    finally:
        backend.enabled = before


# The library torch.nn's RNNs call on each device, which torch-native switches off.
VENDOR_BACKENDS = {"cpu": torch.backends.mkldnn, "cuda": torch.backends.cudnn}


def _torch_native(workload: Workload) -> Runner:
    """torch.nn with oneDNN (CPU) or cuDNN (CUDA) switched off: ATen's own RNN kernels."""
    module = workload.module
    backend = VENDOR_BACKENDS[workload.input.device.type]
    module_forward = _module_forward(module, workload)

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        with _disabled(backend):
            return module_forward(x)
    return Runner(forward, dict(module.named_parameters()))


def _fastrnn(workload: Workload) -> Runner:
    """The drop-in module fastrnn.LSTM/GRU/RNN, loaded with the torch.nn module's state_dict; on
    CUDA tensors, while the modules do not serve them yet, the op they call
    (``fastrnn.functional.rnn_stack``: see :func:`fastrnn_cuda_path`)."""
    if workload.input.is_cuda and fastrnn_cuda_path() == "functional":
        return _stack_runner(functional.rnn_stack, workload)
    cell, torch_module = workload.cell, workload.module
    module = make_module(cell.fastrnn_class, cell, workload.case).to(workload.input)
    module.load_state_dict(torch_module.state_dict())
    return Runner(_module_forward(module, workload), dict(module.named_parameters()))


def _reference(workload: Workload) -> Runner:
    """fastrnn.reference.rnn_stack: plain PyTorch step by step; slow, for small shapes."""
    return _stack_runner(reference.rnn_stack, workload)


def _stack_runner(rnn_stack: Callable, workload: Workload) -> Runner:
    """``rnn_stack`` (fastrnn.functional's or fastrnn.reference's: one contract) on the torch.nn
    module's own parameters."""
    case, module = workload.case, workload.module
    params = dict(module.named_parameters())
    weights = [params[name] for layer in module._all_weights for name in layer]

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        if workload.lengths is not None:
            packed = workload.pack(x)
            x, batch_sizes = packed.data, packed.batch_sizes
            D = case.directions
            hx = x.new_zeros(case.layers * D, case.B, case.P)  # the op needs B with packed input
        else:
            x, batch_sizes, hx = x.transpose(0, 1) if case.batch_first else x, None, None
        output, h_n, _ = rnn_stack(workload.cell.name, x, batch_sizes, hx, None, weights,
                                   has_bias=module.bias, num_layers=case.layers,
                                   bidirectional=case.bidirectional, proj_size=case.proj_size)
        if workload.lengths is not None:  # h_n's rows are in the packed (sorted) order
            return output, h_n.index_select(1, packed.unsorted_indices)
        return (output.transpose(0, 1) if case.batch_first else output), h_n
    return Runner(forward, params)


IMPLS: dict[str, Callable[[Workload], Runner]] = {
    "torch": _torch,
    "fastrnn": _fastrnn,
    "torch-native": _torch_native,
    "reference": _reference,
}
DEFAULT_IMPLS = ("torch", "fastrnn")
BASELINE = "torch"  # the implementation the others are checked and compared against


def inference_step(runner: Runner, workload: Workload) -> Step:
    x, forward = workload.input, runner.forward

    def step() -> None:
        with torch.inference_mode():
            forward(x)
    return step


def train_step(runner: Runner, workload: Workload) -> Step:
    """Forward, then backward of a loss on output and h_n; gradients reset as zero_grad(set_to_none)."""
    x, forward, leaves = workload.input, runner.forward, runner.leaves(workload)
    grad_output, grad_h_n = workload.grad_output, workload.grad_h_n

    def step() -> None:
        for t in leaves:
            t.grad = None
        output, h_n = forward(x)
        torch.autograd.backward((output, h_n), (grad_output, grad_h_n.view_as(h_n)))
    return step


STEPS: dict[str, Callable[[Runner, Workload], Step]] = {
    "inference": inference_step,
    "train": train_step,
}

FLOP_MODEL = (
    "GFLOP/s counts the GEMMs only: forward = sum over layers l of D*2*N*G*H*(I_l+H), with "
    "N = T*B (packed: the sum of the sequence lengths), D = 2 if bidirectional else 1, "
    "G = 4 (lstm), 3 (gru), 1 (rnn), I_0 = I and I_l = D*H for l > 0; train = 3 x forward "
    "(forward, then the input/state gradient GEMMs and the weight gradient GEMMs); pointwise math "
    "is not counted"
)


# Printed after FLOP_MODEL where a case has a projection.
FLOP_MODEL_PROJ = (
    "With proj_size P: h has P units, so the recurrent term is G*H*P (I_l + H becomes I_l + P, "
    "I_l = D*P for l > 0) and each layer and direction adds 2*N*P*H for the projection")

BYTES_MODEL = (
    "GB/s = the bytes a step must move at least, by this model, / the median time: per layer and "
    "direction, W_ih read once ((G*H*I_l) elements), W_hh (G*H*P, and W_hr, H*P) read once per "
    "time step (T times: what a kernel that does not keep them on chip reads), the layer's input "
    "read (N*I_l) and its output written (N*P); biases and state ignored; elements of the run's "
    "dtype; train = 3 x forward, as for FLOPs. Weights that fit in L2 are read from there, so GB/s "
    "can exceed the memory's bandwidth")


def _layer_inputs(case: Case) -> list[int]:
    """I_l for each layer: I, then D*P."""
    return [case.I if l == 0 else case.directions * case.P for l in range(case.layers)]


def flop_count(case: Case, mode: str, rows: int | None = None) -> float:
    """FLOPs of one step by FLOP_MODEL (and FLOP_MODEL_PROJ); ``rows`` is N (default T*B;
    Workload.rows)."""
    G, D, H, P = CELLS[case.cell].gates, case.directions, case.H, case.P
    N = case.T * case.B if rows is None else rows
    projection = P * H if case.proj_size else 0
    forward = sum(D * 2.0 * N * (G * H * (I_l + P) + projection) for I_l in _layer_inputs(case))
    return forward if mode == "inference" else 3.0 * forward


def bytes_moved(case: Case, mode: str, element_size: int, rows: int | None = None) -> float:
    """Bytes of one step by BYTES_MODEL; ``rows`` is N (default T*B; Workload.rows)."""
    G, D, H, P, T = CELLS[case.cell].gates, case.directions, case.H, case.P, case.T
    N = case.T * case.B if rows is None else rows
    recurrent = G * H * P + (H * P if case.proj_size else 0)
    forward = sum(D * (G * H * I_l + T * recurrent + N * (I_l + P))
                  for I_l in _layer_inputs(case))
    return element_size * float(forward) * (1.0 if mode == "inference" else 3.0)


# The ops whose presence in a forward's profile says what ran (see ops_run).
CUDNN_OP = "aten::_cudnn_rnn"
FASTRNN_OP = "fastrnn::rnn"


def ops_run(runner: Runner, workload: Workload) -> set[str]:
    """The names of the operators one inference forward of ``runner`` calls, by torch.profiler
    (CPU side, nested ops included): whether torch.nn ran cuDNN (CUDNN_OP), whether fastrnn ran
    its own op (FASTRNN_OP) rather than falling back to torch.nn. (A TorchDispatchMode would not
    do: under one, torch.nn picks another algorithm, a step loop rather than oneDNN on CPU.)"""
    from torch.profiler import ProfilerActivity, profile
    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
        runner.forward(workload.input)
    return {event.key for event in prof.key_averages()}
