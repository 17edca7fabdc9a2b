"""fastrnn: fused LSTM, GRU and RNN kernels for PyTorch.

``fastrnn.LSTM``, ``GRU``, ``RNN`` and the ``*Cell`` classes are drop-in subclasses of their
torch.nn namesakes; ``fastrnn.convert(model)`` swaps them into an existing model.
``fastrnn.functional`` runs one layer on tensors; ``fastrnn.reference`` holds the pure-PyTorch
ground truth the kernels are tested against; ``fastrnn.init`` holds initialisations for
recurrent modules (IRNN, orthogonal, forget bias, chrono) and ``fastrnn.seq2seq`` a decoder with
teacher forcing and scheduled sampling. The ops themselves are ``torch.ops.fastrnn.*``.
"""

import torch  # noqa: F401  (loads libtorch before our extension links against it)

from . import _C
from . import ops  # noqa: F401  (fake kernels of torch.ops.fastrnn.*)
from . import functional, init, reference, seq2seq
from .modules import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, convert

__version__ = "0.1.0"


def built_with_cuda() -> bool:
    """Whether this build compiled the CUDA sources (torch with CUDA and nvcc at build time)."""
    return bool(_C.built_with_cuda)


def cuda_available() -> bool:
    """Whether fastrnn can run on CUDA tensors here: CUDA kernels built and a GPU visible."""
    return bool(_C.has_cuda_kernels) and torch.cuda.is_available()


__all__ = ["RNN", "LSTM", "GRU", "RNNCell", "LSTMCell", "GRUCell", "convert", "functional",
           "init", "reference", "seq2seq", "built_with_cuda", "cuda_available", "__version__"]
