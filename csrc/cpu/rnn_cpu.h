// CPU sequence drivers: one layer, one direction, the whole sequence.
//
// forward:  W_ih x for all T steps as one GEMM, then per step one recurrent GEMM (W_hh h_{t-1})
//           and one fused pointwise pass of the cell (cells/*.h).
// backward: reverse-time loop of fused pointwise backward + recurrent GEMM, then the input and
//           weight gradients as whole-sequence GEMMs and the bias gradients as column sums.
#pragma once

#include "params.h"

namespace fastrnn::cpu {

template <typename scalar_t>
void rnn_forward(CellKind cell, const ForwardParams<scalar_t>& p);

template <typename scalar_t>
void rnn_backward(CellKind cell, const BackwardParams<scalar_t>& p);

}  // namespace fastrnn::cpu
