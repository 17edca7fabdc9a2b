"""Drop-in replacements for torch.nn's recurrent modules; ``convert`` swaps them into a model and
``revert`` swaps them back.

``fastrnn.LSTM`` *is a* ``torch.nn.LSTM``: each class here subclasses its torch.nn namesake and
overrides only ``forward`` (and the name ``repr`` prints: ``fastrnn.LSTM(...)``). Constructor
arguments, defaults, validation, parameter names and registration order, initialisation,
``state_dict``, ``_flat_weights`` and ``flatten_parameters`` are torch.nn's own, and
``isinstance(fastrnn.LSTM(...), torch.nn.LSTM)`` is True, so code that looks for torch.nn's
classes (weight init loops, ``flatten_parameters`` calls) treats fastrnn's modules as it treated
torch.nn's.

``forward`` checks its arguments as torch.nn does (the same exception types; torch.nn's messages
for bad shapes), then runs the whole stack (every layer, both directions, padded or packed) in
one call of ``fastrnn.functional.rnn_stack``; a cell runs one time step of
``fastrnn.functional.lstm/gru/rnn``. Where fastrnn has no kernel for the call (a dtype other than
float32, float64, bfloat16 and float16, a device other than the CPU, autocast on another device,
an empty batch, a cell with input_size or hidden_size 0) ``forward`` runs torch.nn's implementation instead, with a warning
unless the batch or a size is merely empty: the module never fails where torch.nn's would not.

Beyond torch.nn's arguments, each class takes the cells' options, None (the default) for off:
``grad_clip`` (every class) clamps the gradient with respect to every gate pre-activation to
[-grad_clip, grad_clip] at every step of backward, inside the fused kernel (Graves 2013);
``cell_clip`` (LSTM, LSTMCell) clamps the cell state to [-cell_clip, cell_clip] in forward. They
are plain attributes (not in the state_dict), and a call with one set never falls back to
torch.nn, which has no such option: it raises instead.

``record_grad_norms=True`` (RNN, LSTM, GRU) makes backward record, inside the fused kernel, the
Frobenius norm of the total dL/dh_t each time step's backward receives (over the active batch
rows and the units), for every layer and direction, and for the LSTM that of the full dL/dc_t.
After each backward they are ``module.grad_norms`` and ``module.cell_grad_norms`` (LSTM), float32
``[num_layers * directions, T]`` layer-major as h_0, index t the time step; None before. Eager
mode only (a compiled or exported forward raises with it on).

Export: under ``torch.onnx.export`` (either exporter) and ``torch.jit.trace`` ``forward`` runs
torch.nn's implementation, which the exporters map to ONNX's LSTM/GRU/RNN operators and the
tracer records as ``aten::lstm``/``gru``/``rnn_*``, so the exported file needs no fastrnn; an LSTM
with ``proj_size``, which ONNX's LSTM operator cannot express, raises instead.
``torch.jit.script`` raises (the forward is not TorchScript): ``revert`` the model first.
``torch.export`` records fastrnn's op, for inference (nothing saved for backward) when the module
is in ``eval()`` mode.

torch.compile: Dynamo does not trace instances of torch.nn.RNN/GRU/LSTM (these subclasses
included) unless ``torch._dynamo.config.allow_rnn = True``. Without it a compiled model breaks
the graph around the module, as around torch.nn's (and ``fullgraph=True`` raises); with it the
module's op is traced into the graph, packed input and explicit initial states included. The
cells are traced either way.
"""

from __future__ import annotations

import copy
import itertools
import os
import sys
import warnings

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import _C, functional

try:  # torch.onnx.export's own flags, read directly: Dynamo folds torch.onnx.is_in_onnx_export()
    # to False, the exporter retries a failed non-strict torch.export with a strict (Dynamo) one,
    # and the function's own imports cost a microsecond on every forward
    from torch.onnx._internal.exporter import _flags as _onnx_export_flags
    from torch.onnx._internal.torchscript_exporter._globals import GLOBALS as _onnx_globals

    def _in_onnx_export() -> bool:
        if torch.compiler.is_compiling():  # Dynamo refuses to trace the TorchScript exporter's
            return _onnx_export_flags._is_onnx_exporting  # globals; that exporter is not Dynamo
        return _onnx_globals.in_onnx_export or _onnx_export_flags._is_onnx_exporting
except ImportError:  # another torch's layout: the public function alone
    _in_onnx_export = torch.onnx.is_in_onnx_export
    _onnx_globals = None

_FAST_DTYPES = frozenset((torch.float32, torch.float64, torch.bfloat16, torch.float16))
_RNN_CELL_MODES = {"tanh": "rnn_tanh", "relu": "rnn_relu"}
_is_compiling = torch.compiler.is_compiling
_is_grad_enabled = torch.is_grad_enabled
_cpu_autocast_enabled = torch.is_autocast_enabled
# the ops' OpOverload.__call__ is one Python frame around this builtin
_rnn_op = getattr(torch.ops.fastrnn.rnn.default, "_op", torch.ops.fastrnn.rnn.default)
# The cell op for the cells' fast path: the extension's binding, which calls it through the same
# dispatcher without boxing each argument against the schema first (2.5 us of a 7.5 us call).
# It skips the __torch_function__ check of torch.ops, which the fast path makes itself.
_cell_op = _C.cell
_torch_function_mode = torch._C._is_torch_function_mode_enabled


_tracing_state = torch._C._get_tracing_state
if _onnx_globals is not None:
    def _recording() -> bool:
        """Whether an exporter or the tracer records this call (the cells' fast path's check;
        the checked path decides what then runs). Never called while compiling, so the flags
        are read as _in_onnx_export reads them outside Dynamo, inline: a third of a
        microsecond a step."""
        return (_onnx_globals.in_onnx_export or _onnx_export_flags._is_onnx_exporting
                or _tracing_state() is not None)
else:
    def _recording() -> bool:
        """Whether an exporter or the tracer records this call (see above)."""
        return _in_onnx_export() or _tracing_state() is not None


def _fast_state(h, B: int, H: int, dtype) -> bool:
    """Whether a cell's state is one the fast path takes: a [B, H] CPU tensor of ``dtype``."""
    return (type(h) is Tensor and h.dim() == 2 and h.size(0) == B and h.size(1) == H
            and h.dtype == dtype and h.is_cpu)


_MODES = {"LSTM": "lstm", "GRU": "gru", "RNN_TANH": "rnn_tanh", "RNN_RELU": "rnn_relu"}
_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _unserved_device(device: torch.device) -> str | None:
    if device.type == "cuda":
        from . import cuda_available  # the package has finished importing by now
        if not cuda_available():
            return (f"device {device}; fastrnn has no CUDA kernels enabled yet: it runs on the "
                    "CPU only")
    elif device.type != "cpu":
        return f"device {device}; fastrnn runs on the CPU only"
    return None


# Frames of these files are between a module's forward and the code that called the module.
_INTERNAL_FILES = (os.path.dirname(__file__) + os.sep,
                   os.path.dirname(nn.Module.__call__.__code__.co_filename) + os.sep)


def _user_stacklevel() -> int:
    """The ``stacklevel`` of a warning raised here that points at the line which called the
    module: the first frame outside fastrnn and torch.nn's module machinery (hooks included)."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_INTERNAL_FILES):
        frame, level = frame.f_back, level + 1
    return level


def _unserved(tensors) -> str | None:
    """Why fastrnn's kernels cannot run on these tensors, or None when they can."""
    for t in tensors:
        if t.dtype not in _DTYPES:
            return f"dtype {t.dtype}; fastrnn runs float32, float64, bfloat16 and float16"
        device = t.device
        if device.type != "cpu":  # (the common case without a call: this runs on every forward)
            reason = _unserved_device(device)
            if reason:
                return reason
    return None


def _fallback_reason(module: nn.Module, input, weights: list[Tensor]) -> str | None:
    """Why this call runs torch.nn's implementation (warning when there is a reason to give),
    or None when it runs fastrnn's. An input whose dtype differs from the weights' is fastrnn's
    to reject, as torch.nn would."""
    if not isinstance(input, Tensor):
        return ""  # let torch.nn raise its own error for a non-tensor input
    reason = _unserved(weights) or _unserved_device(input.device)
    if (reason is None and input.device.type != "cpu"
            and torch.is_autocast_enabled(input.device.type)):
        reason = f"autocast is enabled for {input.device.type}"
    if reason:
        warnings.warn(f"fastrnn.{type(module).__name__} runs torch.nn's implementation for this "
                      f"call ({reason})", stacklevel=_user_stacklevel())
    return reason


def _autocast_dtype(input: Tensor) -> torch.dtype | None:
    """The dtype a call runs in under ``torch.autocast("cpu", dtype=...)`` (bfloat16 or
    float16), or None outside autocast."""
    if input.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return None


# Under CPU autocast torch.nn runs every RNN's products in the autocast dtype; LSTM, RNN and
# RNNCell return that dtype, while GRU, GRUCell and LSTMCell return their input's (float32 for
# float32 input: their elementwise ops promote with the float32 state). Measured with torch 2.13;
# tests/test_half.py::test_autocast_output_dtypes compares with the installed torch.
_AUTOCAST_KEEPS_INPUT_DTYPE = ("GRU", "GRUCell", "LSTMCell")


def _autocast_cast(module: nn.Module, amp: torch.dtype, input: Tensor, tensors):
    """Under autocast: the dtype the call returns, and ``tensors`` (inputs, states, weights;
    None kept) cast to the autocast dtype, as autocast casts a product's operands (gradients
    flow back to the float32 parameters through the casts)."""
    torch_name = getattr(module, "_torch_name", None) or module.mode  # a cell's, or "GRU" etc.
    out_dtype = input.dtype if torch_name in _AUTOCAST_KEEPS_INPUT_DTYPE else amp
    return out_dtype, [None if t is None else t.to(amp) for t in tensors]


def _records_torch_nn(module: nn.Module) -> bool:
    """Whether ``forward`` runs torch.nn's implementation for an exporter: under torch.onnx.export
    (either exporter), which maps it to ONNX's LSTM/GRU/RNN operators, and torch.jit.trace, which
    records the aten op; a configuration ONNX cannot express raises."""
    if _in_onnx_export():
        if getattr(module, "proj_size", 0) > 0:
            raise RuntimeError(
                f"fastrnn.{type(module).__name__} with proj_size={module.proj_size} cannot be "
                f"exported to ONNX: ONNX's LSTM operator has no projection (torch.nn.LSTM's "
                f"export fails or gives a wrong model too). fastrnn.revert(model) gives torch.nn's "
                f"LSTM, sharing the parameters, for torch.export or TorchScript")
        return True
    return torch.jit.is_tracing()


def _dropout_masks(module: nn.RNNBase, rows: tuple[int, ...], like: Tensor) -> Tensor | None:
    """torch.nn's inter-layer dropout as masks already scaled by 1/(1-p), or None."""
    p = module.dropout
    if not module.training or p == 0 or module.num_layers == 1:
        return None
    D = 2 if module.bidirectional else 1
    P = module.proj_size or module.hidden_size
    masks = torch.empty(module.num_layers - 1, *rows, D * P, dtype=like.dtype, device=like.device)
    if p == 1:  # torch.nn drops everything rather than dividing by zero
        return masks.zero_()
    return masks.bernoulli_(1 - p).div_(1 - p)


class _Fastrnn:
    """What every fastrnn module adds to its torch.nn class besides ``forward``."""

    def _get_name(self) -> str:  # the name repr prints, so print(model) shows what runs
        return f"fastrnn.{type(self).__name__}"

    def __prepare_scriptable__(self):  # torch.jit.script calls this on every submodule first
        raise RuntimeError(
            f"fastrnn.{type(self).__name__} cannot be compiled by torch.jit.script (its forward "
            f"calls fastrnn's op through Python). Script fastrnn.revert(model) instead, which "
            f"makes its fastrnn modules torch.nn's again with the same parameters; "
            f"torch.jit.trace and torch.export work on the model as it is")




def _checked_option(name: str, value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"fastrnn: {name} must be a number > 0 or None, got {value!r}")
    return float(value)


class _CellOptions:
    """The cells' options (csrc/cells/options.h) as keyword arguments of the constructor and
    attributes; a module made by convert() has them off (the class attributes)."""

    _option_names: tuple[str, ...] = ("grad_clip",)
    grad_clip = None
    cell_clip = None
    record_grad_norms = False  # the stack modules' (_StackForward) only

    def __init__(self, *args, **kwargs):
        options = {name: kwargs.pop(name, None) for name in self._option_names}
        super().__init__(*args, **kwargs)
        for name, value in options.items():
            setattr(self, name, _checked_option(name, value))

    def _options(self) -> dict:
        return {name: getattr(self, name) for name in self._option_names}

    def _kernel_options(self, input, weights) -> dict | None:
        """The options of a call on fastrnn's kernels, or None where it runs torch.nn's forward
        (for an exporter that records it, or on input the kernels do not serve), which takes no
        option: then an option that changes the result raises."""
        options = self._options()
        if _records_torch_nn(self):
            self._refuse_export(options)
            return None
        reason = _fallback_reason(self, input, weights)
        if reason is not None:
            self._refuse_fallback(options, reason)
            return None
        return options

    def _refuse_fallback(self, options: dict, reason: str) -> None:
        given = [name for name, value in options.items() if value is not None]
        if self.record_grad_norms:
            given.append("record_grad_norms")
        if given:
            verb = "needs" if len(given) == 1 else "need"
            raise RuntimeError(f"fastrnn.{type(self).__name__}: {' and '.join(given)} {verb} "
                               f"fastrnn's kernels, and this call cannot run on them ({reason}); "
                               "torch.nn, its fallback, has no such option")

    def _refuse_export(self, options: dict) -> None:
        # an exported graph is forward only: grad_clip does not change it, cell_clip does
        if options.get("cell_clip") is not None:
            raise RuntimeError(f"fastrnn.{type(self).__name__} with cell_clip cannot be exported "
                               "through torch.nn's forward (ONNX, torch.jit.trace), which has no "
                               "cell clip; torch.export records fastrnn's op with it")

    def extra_repr(self) -> str:
        set_options = [f"{name}={value}" for name, value in self._options().items()
                       if value is not None]
        return ", ".join([super().extra_repr(), *set_options])


class _StackForward(_Fastrnn, _CellOptions):
    """``forward`` of RNN, LSTM and GRU: torch.nn's argument handling around one rnn_stack call.

    Mixed in before the torch.nn class, whose ``check_input``, ``check_forward_args`` and
    ``permute_hidden`` it uses.
    """

    _norms_probe = None

    def __init__(self, *args, record_grad_norms: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.record_grad_norms = bool(record_grad_norms)

    @property
    def grad_norms(self) -> Tensor | None:
        """||dL/dh_t|| per layer and direction (rows, as h_0) and time step of the last backward
        of a forward with record_grad_norms on; None before."""
        probe = self._norms_probe
        return None if probe is None or probe.grad is None else probe.grad[0]

    @property
    def cell_grad_norms(self) -> Tensor | None:
        """||dL/dc_t||, as grad_norms (LSTM only; None for the others)."""
        probe = self._norms_probe
        if self.mode != "LSTM" or probe is None or probe.grad is None:
            return None
        return probe.grad[1]

    def forward(self, input, hx=None):
        self._update_flat_weights()
        is_packed = isinstance(input, PackedSequence)
        data = input.data if is_packed else input
        weights = [w for w in self._flat_weights if w is not None]
        options = self._kernel_options(data, weights)
        if options is None:
            return super().forward(input, hx)
        args = input, hx

        is_lstm = self.mode == "LSTM"
        if hx is not None:
            self._check_hx_kind(hx, is_lstm)
        if is_packed:
            input, batch_sizes, sorted_indices, unsorted_indices = input
            is_batched = True
            if hx is not None:
                hx = self.permute_hidden(hx, sorted_indices)
        else:
            batch_sizes = sorted_indices = unsorted_indices = None
            if input.dim() not in (2, 3):
                raise ValueError(self._input_rank_message.format(input.dim()))
            is_batched = input.dim() == 3
            batch_dim = 0 if self.batch_first else 1
            if not is_batched:
                input = input.unsqueeze(batch_dim)
            if hx is not None:
                hx = self._hidden_to_batched(hx, is_batched)
        if hx is None:
            self.check_input(input, batch_sizes)
        elif is_packed and torch.compiler.is_compiling():
            # torch.nn's check reads batch_sizes[0], a data-dependent value a graph cannot
            # guard on: check all but B here, and leave B (hx's rows) to the op
            self.check_input(input, batch_sizes)
            self._check_packed_hidden(hx)
        else:
            self.check_forward_args(input, hx, batch_sizes)

        x = input.transpose(0, 1) if self.batch_first and not is_packed else input
        if x.size(0) == 0:  # torch.nn's own message for an empty padded sequence
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
        if not is_packed and x.size(1) == 0:  # (a PackedSequence is never empty)
            return super().forward(*args)  # no kernel for an empty batch

        h0, c0 = hx if is_lstm and hx is not None else (hx, None)
        if h0 is None and sorted_indices is not None:
            # B from a shape, not from batch_sizes[0] as rnn_stack would: under torch.compile
            # a value read from a tensor breaks the graph
            h0 = x.new_zeros(self.num_layers * (2 if self.bidirectional else 1),
                             sorted_indices.size(0), self.proj_size or self.hidden_size)
        rows = (x.size(0),) if is_packed else (x.size(0), x.size(1))
        if self.record_grad_norms:
            if torch.compiler.is_compiling():
                raise RuntimeError(f"fastrnn.{type(self).__name__}: record_grad_norms works in "
                                   "eager mode only; turn it off to compile or export")
            steps = batch_sizes.size(0) if is_packed else x.size(0)
            D = 2 if self.bidirectional else 1
            self._norms_probe = torch.zeros(2, self.num_layers * D, steps, dtype=torch.float32,
                                            device=x.device, requires_grad=True)
        # An exported eval() model is an inference graph: the op saves nothing for backward.
        inference = not self.training and torch.compiler.is_exporting()
        amp = _autocast_dtype(x)
        if amp is not None:
            out_dtype, (x, h0, c0, *weights) = _autocast_cast(self, amp, x, (x, h0, c0, *weights))
        output, h_n, c_n = functional.rnn_stack(
            _MODES[self.mode], x, batch_sizes, h0, c0, weights,
            has_bias=self.bias, num_layers=self.num_layers, bidirectional=self.bidirectional,
            proj_size=self.proj_size, dropout_masks=_dropout_masks(self, rows, x),
            training=False if inference else None,
            norms_probe=self._norms_probe if self.record_grad_norms else None, **options)
        if amp is not None and out_dtype != amp:
            output, h_n = output.to(out_dtype), h_n.to(out_dtype)
            c_n = None if c_n is None else c_n.to(out_dtype)
        hidden = (h_n, c_n) if is_lstm else h_n

        if is_packed:
            output = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return output, self.permute_hidden(hidden, unsorted_indices)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not is_batched:
            output = output.squeeze(batch_dim)
            hidden = (h_n.squeeze(1), c_n.squeeze(1)) if is_lstm else h_n.squeeze(1)
        return output, hidden

    def _check_hx_kind(self, hx, is_lstm: bool) -> None:
        """hx is one tensor, or for the LSTM a pair (h_0, c_0) of tensors."""
        name = type(self).__name__
        if is_lstm:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                is_sequence = isinstance(hx, (tuple, list))
                got = f"a {type(hx).__name__}" + (f" of {len(hx)}" if is_sequence else "")
                # the exception type torch.nn raises: IndexError for fewer than two states
                error = RuntimeError if is_sequence and len(hx) > 2 else IndexError
                raise error(f"{name}: hx must be a tuple (h_0, c_0) of two tensors, got {got}")
            hx = tuple(hx)
        else:
            hx = (hx,)
        for h in hx:
            if not isinstance(h, Tensor):
                what = "h_0 and c_0" if is_lstm else "hx"
                raise TypeError(f"{name}: {what} must be tensors, got a {type(h).__name__}")

    def _check_packed_hidden(self, hx) -> None:
        """torch.nn's checks of hx for packed input, its batch size left out, its messages."""
        D = 2 if self.bidirectional else 1
        sizes = (("hx", hx[0], self.proj_size or self.hidden_size), ("cx", hx[1], self.hidden_size)
                 ) if self.mode == "LSTM" else (("hx", hx, self.hidden_size),)
        for name, state, size in sizes:
            got = tuple(state.shape)
            if len(got) != 3 or got[0] != self.num_layers * D or got[2] != size:
                raise RuntimeError(f"Expected hidden size ({self.num_layers * D}, B, {size}) "
                                   f"with B the batch size, got {list(got)} for {name}")

    def _hidden_to_batched(self, hx, is_batched: bool):
        """torch.nn's rank checks of a padded input's hx; unbatched hx gains the batch dim."""
        want = 3 if is_batched else 2
        if self.mode == "LSTM":
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(
                    f"For {kind} input, hx and cx should also be {want}-D but got "
                    f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            return hx if is_batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        if hx.dim() != want:
            kind = "batched 3-D" if is_batched else "unbatched 2-D"
            raise RuntimeError(
                f"For {kind} input, hx should also be {want}-D but got {hx.dim()}-D tensor")
        return hx if is_batched else hx.unsqueeze(1)


class RNN(_StackForward, nn.RNN):
    """``torch.nn.RNN`` (tanh or relu) running on fastrnn's kernels; a subclass of it.

    Same constructor, parameters, inputs and outputs as ``torch.nn.RNN`` (padded, batch-first,
    unbatched or ``PackedSequence`` input): a drop-in replacement, whose state dicts load both
    ways; plus the option ``grad_clip`` (``help(fastrnn.modules)``). float32, float64, bfloat16 and float16 on the CPU run fastrnn's kernels, and so does
    ``torch.autocast("cpu")``; other dtypes and devices run torch.nn's implementation with a
    warning. The fallback, export, TorchScript
    and torch.compile behaviour is described in ``help(fastrnn.modules)``.
    """

    _input_rank_message = "RNN: Expected input to be 2D or 3D, got {}D tensor instead"


class LSTM(_StackForward, nn.LSTM):
    """``torch.nn.LSTM`` (with ``proj_size``) running on fastrnn's kernels; a subclass of it.

    Same constructor, parameters, inputs and outputs as ``torch.nn.LSTM`` (padded, batch-first,
    unbatched or ``PackedSequence`` input): a drop-in replacement, whose state dicts load both
    ways; plus the options ``grad_clip`` and ``cell_clip`` (``help(fastrnn.modules)``). float32, float64, bfloat16 and float16 on the CPU run fastrnn's kernels, and so does
    ``torch.autocast("cpu")``; other dtypes and devices run torch.nn's implementation with a
    warning. The fallback, export, TorchScript
    and torch.compile behaviour is described in ``help(fastrnn.modules)``.
    """

    _input_rank_message = "LSTM: Expected input to be 2D or 3D, got {}D instead"
    _option_names = ("grad_clip", "cell_clip")


class GRU(_StackForward, nn.GRU):
    """``torch.nn.GRU`` running on fastrnn's kernels; a subclass of it.

    Same constructor, parameters, inputs and outputs as ``torch.nn.GRU`` (padded, batch-first,
    unbatched or ``PackedSequence`` input): a drop-in replacement, whose state dicts load both
    ways; plus the option ``grad_clip`` (``help(fastrnn.modules)``). float32, float64, bfloat16 and float16 on the CPU run fastrnn's kernels, and so does
    ``torch.autocast("cpu")``; other dtypes and devices run torch.nn's implementation with a
    warning. The fallback, export, TorchScript
    and torch.compile behaviour is described in ``help(fastrnn.modules)``.
    """

    _input_rank_message = "GRU: Expected input to be 2D or 3D, got {}D instead"


class _CellForward(_Fastrnn, _CellOptions):
    """``forward`` of the cells: torch.nn's checks around one step of fastrnn.functional."""

    _fast_mode: str | None = None  # the op's mode of the class ("lstm", "gru"); RNNCell: None

    def forward(self, input, hx=None):
        # The common case, checked with the fewest reads and calls: batched float input and
        # states of the weights' dtype on the CPU, sizes as the module's, nothing recording or
        # compiling, no autocast. It calls the cell op, which is the stack op the checked path
        # below calls, on the same arguments as [1, B, .] views: results and errors are that
        # path's; anything else takes that path.
        if (_is_compiling() or type(input) is not Tensor or _recording()
                or _cpu_autocast_enabled("cpu") or _torch_function_mode()):
            return self._checked_forward(input, hx)
        try:
            p = self._parameters
            weight_ih, weight_hh, bias_ih, bias_hh = (p["weight_ih"], p["weight_hh"],
                                                      p["bias_ih"], p["bias_hh"])
        except KeyError:  # parametrized, or weight_norm's plain attributes
            return self._checked_forward(input, hx)
        dtype, H, I = input.dtype, self.hidden_size, self.input_size  # noqa: E741
        shape = input.shape  # one read, not size() calls: each is a sixth of a microsecond
        B = shape[0] if len(shape) == 2 else 0  # 0: unbatched, or an empty batch
        if (not B or not H or not I or dtype not in _FAST_DTYPES or not input.is_cpu
                or shape[1] != I
                or weight_hh.dtype != dtype or weight_ih.dtype != dtype
                or not (weight_hh.is_cpu and weight_ih.is_cpu) or weight_hh.shape[1] != H):
            return self._checked_forward(input, hx)
        if bias_ih is None:
            if bias_hh is not None:
                return self._checked_forward(input, hx)
            weights, has_bias = [weight_ih, weight_hh], False
        elif (bias_hh is None or bias_ih.dtype != dtype or bias_hh.dtype != dtype
              or not (bias_ih.is_cpu and bias_hh.is_cpu)):
            return self._checked_forward(input, hx)
        else:
            weights, has_bias = [weight_ih, weight_hh, bias_ih, bias_hh], True
        mode = self._fast_mode
        if mode is None:
            mode = _RNN_CELL_MODES.get(self.nonlinearity)
            if mode is None:
                return self._checked_forward(input, hx)
        extra = None
        h0 = c0 = None
        if mode == "lstm":
            if hx is not None:
                if type(hx) is not tuple or len(hx) != 2:
                    return self._checked_forward(input, hx)
                h0, c0 = hx
                if not (_fast_state(h0, B, H, dtype) and _fast_state(c0, B, H, dtype)):
                    return self._checked_forward(input, hx)
            grad_clip, cell_clip = self.grad_clip, self.cell_clip
            if grad_clip is not None or cell_clip is not None:
                extra = {name: value for name, value in (("grad_clip", grad_clip),
                                                         ("cell_clip", cell_clip))
                         if value is not None}
        else:
            if hx is not None:
                if not _fast_state(hx, B, H, dtype):
                    return self._checked_forward(input, hx)
                h0 = hx
            grad_clip = self.grad_clip
            if grad_clip is not None:
                extra = {"grad_clip": grad_clip}
        training = _is_grad_enabled() and (
            input.requires_grad or weight_ih.requires_grad or weight_hh.requires_grad
            or (has_bias and (bias_ih.requires_grad or bias_hh.requires_grad))
            or (h0 is not None and h0.requires_grad) or (c0 is not None and c0.requires_grad))
        # the cell op: [B, .] in and out, no views in the graph (csrc/core/op_args.h)
        args = (mode, input, h0, c0, weights, has_bias, training)
        h, c, _ = _cell_op(*args) if extra is None else _cell_op(*args, **extra)
        return (h, c) if mode == "lstm" else h

    def _checked_forward(self, input, hx=None):
        """Every case: torch.nn's checks, the fallback, autocast, export and compile."""
        # each attribute read once: a module's __getattr__ costs about a microsecond
        weight_ih, weight_hh, bias_ih, bias_hh = (self.weight_ih, self.weight_hh, self.bias_ih,
                                                  self.bias_hh)
        weights = [w for w in (weight_ih, weight_hh, bias_ih, bias_hh) if w is not None]
        options = self._kernel_options(input, weights)
        if options is None:
            return super().forward(input, hx)
        args, name = (input, hx), self._torch_name
        is_lstm = isinstance(self, nn.LSTMCell)
        amp = _autocast_dtype(input)
        if amp is not None:
            states = () if hx is None else tuple(hx) if is_lstm else (hx,)
            out_dtype, (input, weight_ih, weight_hh, bias_ih, bias_hh, *states) = _autocast_cast(
                self, amp, input, (input, weight_ih, weight_hh, bias_ih, bias_hh, *states))
            hx = None if hx is None else tuple(states) if is_lstm else states[0]
            with torch.autocast("cpu", enabled=False):
                out = self._fused_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh,
                                          options, args, name, is_lstm)
            return (tuple(o.to(out_dtype) for o in out) if isinstance(out, tuple)
                    else out.to(out_dtype))
        return self._fused_forward(input, hx, weight_ih, weight_hh, bias_ih, bias_hh, options,
                                   args, name, is_lstm)

    def _fused_forward(self, input, hx, weight_ih, weight_hh, bias_ih, bias_hh, options, args,
                       name, is_lstm):
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        states = () if hx is None else tuple(hx) if is_lstm else (hx,)
        for i, h in enumerate(states):
            if h.dim() not in (1, 2):
                what = f"hx[{i}]" if is_lstm else "hidden"
                raise ValueError(f"{name}: Expected {what} to be 1D or 2D, got {h.dim()}D instead")
        is_batched = input.dim() == 2
        if not is_batched:
            input = input.unsqueeze(0)
            states = tuple(h.unsqueeze(0) for h in states)
        self._check_sizes(input, states, weight_hh)
        if input.size(0) == 0 or input.size(1) == 0 or self.hidden_size == 0:
            return super().forward(*args)  # no kernel for an empty batch or zero sizes

        x = input.unsqueeze(0)  # one time step: [1, B, I]
        if is_lstm:
            h0, c0 = states if states else (None, None)
            _, h, c = functional.lstm(x, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh, **options)
            return (h, c) if is_batched else (h.squeeze(0), c.squeeze(0))
        h0 = states[0] if states else None
        if isinstance(self, nn.GRUCell):
            _, h = functional.gru(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, **options)
        else:
            if self.nonlinearity not in ("tanh", "relu"):
                raise RuntimeError(f"Unknown nonlinearity: {self.nonlinearity}")
            _, h = functional.rnn(x, h0, weight_ih, weight_hh, bias_ih, bias_hh,
                                  nonlinearity=self.nonlinearity, **options)
        return h if is_batched else h.squeeze(0)

    def _check_sizes(self, input: Tensor, states: tuple[Tensor, ...], weight_hh: Tensor) -> None:
        """The checks (and messages) of torch's C++ cells, which torch.nn's cells rely on."""
        if len(states) not in (0, 2) and isinstance(self, nn.LSTMCell):
            raise RuntimeError("lstm_cell expects two hidden states")
        if input.size(1) != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.size(1)} "
                               f"expected {self.input_size}")
        for i, h in enumerate(states):
            if input.size(0) != h.size(0):
                raise RuntimeError(f"Input batch size {input.size(0)} doesn't match hidden{i} "
                                   f"batch size {h.size(0)}")
            if h.size(1) != self.hidden_size:
                raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {h.size(1)}, "
                                   f"expected {self.hidden_size}")
        for t in (*states, weight_hh):
            if t.dtype != input.dtype:
                raise RuntimeError(f"{type(self).__name__}: expected input, hidden states and "
                                   f"weights of one dtype, got {input.dtype} and {t.dtype}")


class RNNCell(_CellForward, nn.RNNCell):
    """``torch.nn.RNNCell`` running on fastrnn's kernels (one time step of
    ``fastrnn.functional``); a subclass of it with the same constructor, parameters, inputs and
    outputs. Fallback, export and TorchScript behaviour: ``help(fastrnn.modules)``."""

    _torch_name = "RNNCell"


class LSTMCell(_CellForward, nn.LSTMCell):
    """``torch.nn.LSTMCell`` running on fastrnn's kernels (one time step of
    ``fastrnn.functional``); a subclass of it with the same constructor, parameters, inputs and
    outputs. Fallback, export and TorchScript behaviour: ``help(fastrnn.modules)``."""

    _torch_name = "LSTMCell"
    _fast_mode = "lstm"
    _option_names = ("grad_clip", "cell_clip")


class GRUCell(_CellForward, nn.GRUCell):
    """``torch.nn.GRUCell`` running on fastrnn's kernels (one time step of
    ``fastrnn.functional``); a subclass of it with the same constructor, parameters, inputs and
    outputs. Fallback, export and TorchScript behaviour: ``help(fastrnn.modules)``."""

    _torch_name = "GRUCell"
    _fast_mode = "gru"


_FASTRNN = {nn.RNN: RNN, nn.LSTM: LSTM, nn.GRU: GRU,
            nn.RNNCell: RNNCell, nn.LSTMCell: LSTMCell, nn.GRUCell: GRUCell}


_TORCH_NN = {fast: torch_nn for torch_nn, fast in _FASTRNN.items()}


def _check_module(function: str, module) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"fastrnn.{function} takes a torch.nn.Module, got "
                        f"{'None' if module is None else type(module).__name__}")


def convert(module: nn.Module, inplace: bool = True, *, return_replaced: bool = False):
    """Make every torch.nn RNN/LSTM/GRU/RNNCell/LSTMCell/GRUCell in ``module`` a fastrnn one.

    Each module whose type is exactly one of those six, ``module`` itself included, becomes the
    fastrnn class of the same name in place: the object keeps its identity, its Parameter objects
    (an optimizer made before conversion still updates them), buffers, hooks, training mode and
    every other attribute; only its class changes (and ``print(model)`` shows ``fastrnn.LSTM``
    where it showed ``LSTM``). Modules fastrnn cannot serve are left as they are with a warning
    saying why: subclasses of the torch.nn classes (their ``forward`` may be overridden),
    parameters of a dtype other than float32, float64, bfloat16 and float16, or on a device fastrnn cannot run on.
    fastrnn modules are left as they are. With ``inplace=False`` a deep copy of ``module`` is
    converted and ``module`` is untouched. ``revert`` undoes it.

    Returns the converted model, or with ``return_replaced=True`` ``(model, replaced)``:
    ``replaced`` the qualified names (as ``named_modules`` gives them, "" for the model itself)
    of the modules converted, in order.

    Example::

        model, replaced = fastrnn.convert(model, return_replaced=True)
        print(replaced)  # ['encoder', 'decoder.cell']
    """
    _check_module("convert", module)
    if not inplace:
        module = copy.deepcopy(module)
    replaced = []
    for name, m in module.named_modules(remove_duplicate=True):
        if isinstance(m, tuple(_FASTRNN.values())):
            continue
        where = f"{name or 'the model'} ({type(m).__name__})"
        if type(m) in _FASTRNN:
            reason = _unserved(list(m.parameters(recurse=False)))
            if reason is None:
                m.__class__ = _FASTRNN[type(m)]
                replaced.append(name)
            else:
                warnings.warn(f"fastrnn.convert: left {where} as it is ({reason})", stacklevel=2)
        elif isinstance(m, tuple(_FASTRNN)):
            warnings.warn(f"fastrnn.convert: left {where} as it is (a subclass of a torch.nn "
                          "recurrent module may override forward)", stacklevel=2)
    return (module, replaced) if return_replaced else module


def revert(module: nn.Module, inplace: bool = True, *, return_replaced: bool = False):
    """The inverse of ``convert``: make every fastrnn module in ``module`` its torch.nn class.

    Each fastrnn RNN/LSTM/GRU/RNNCell/LSTMCell/GRUCell, ``module`` itself included, becomes the
    torch.nn class of the same name in place, keeping its identity, its Parameter objects,
    buffers, hooks and training mode, so a model trained with fastrnn goes, with its trained
    weights, where only torch.nn's modules can (``torch.jit.script``, tools that look for
    torch.nn's classes by type). With ``inplace=False`` the model is copied first and
    ``module`` is untouched, but the copy shares ``module``'s parameter and buffer tensors (no
    memory is copied; training one trains the other). Returns the reverted model, or with
    ``return_replaced=True`` ``(model, replaced)``, ``replaced`` as for ``convert``.

    Example::

        scripted = torch.jit.script(fastrnn.revert(model, inplace=False))
    """
    _check_module("revert", module)
    if not inplace:  # a copy of the modules that shares their tensors
        memo = {id(t): t for t in itertools.chain(module.parameters(), module.buffers())}
        module = copy.deepcopy(module, memo)
    replaced = []
    for name, m in module.named_modules(remove_duplicate=True):
        if type(m) in _TORCH_NN:
            given = [o for o, value in m._options().items() if value is not None]
            if given:
                warnings.warn(f"fastrnn.revert: {name or 'the model'} loses {' and '.join(given)}"
                              f", which torch.nn's {_TORCH_NN[type(m)].__name__} does not have",
                              stacklevel=2)
            m.__class__ = _TORCH_NN[type(m)]
            replaced.append(name)
    return (module, replaced) if return_replaced else module


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "convert", "revert"]
