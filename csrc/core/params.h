// The one boundary between the torch glue and the kernels of every device: plain pointers and
// sizes, no torch type. Filled by core/checks.cpp (StackInputs::params); a device adds its own
// execution context beside it (cpu/context.h).
//
// Sizes: T time steps, B batch (the largest), N rows of packed input (sum of the batch sizes;
// T*B when padded), I input features, H hidden units, P size of h (H, or the LSTM projection
// size), L layers, D directions (1 or 2), G gates of the cell (LSTM 4: i f g o; GRU 3: r z n;
// RNN 1), S values saved for backward per row in units of H (cells/*.h).
//
// Rows: input, output and the saved values are matrices of N rows. Step t covers rows
// offsets[t] .. offsets[t] + batch_sizes[t] - 1, batch row b of step t is row offsets[t] + b:
// PackedSequence's layout; padded [T, B, ...] input is the case batch_sizes[t] == B.
// All matrices are row-major; a leading dimension (ld*) is given where rows may be wider than
// the data. Nullable pointers say so.
#pragma once

#include <cstdint>

#include "cells/cells.h"

namespace fastrnn {

// X(T) for every storage type the kernels take (the explicit instantiations of each device).
#define FASTRNN_FOR_EACH_DTYPE(X) X(float) X(double) X(bfloat16) X(float16)

// The parameters of one layer and direction, torch.nn's shapes.
template <typename scalar_t>
struct LayerWeights {
  const scalar_t* w_ih = nullptr;  // [G*H, I_l]: I_l = I for layer 0, D*P above
  const scalar_t* w_hh = nullptr;  // [G*H, P]
  const scalar_t* b_ih = nullptr;  // [G*H] or nullptr (no bias: then b_hh is nullptr too)
  const scalar_t* b_hh = nullptr;  // [G*H] or nullptr
  const scalar_t* w_hr = nullptr;  // [P, H] with an LSTM projection, else nullptr
};

// Their gradients, same shapes, overwritten (never accumulated into).
template <typename scalar_t>
struct LayerGrads {
  scalar_t* w_ih = nullptr;
  scalar_t* w_hh = nullptr;
  scalar_t* b_ih = nullptr;
  scalar_t* b_hh = nullptr;
  scalar_t* w_hr = nullptr;
};

// A whole stack: L layers of D directions over one (packed or padded) batch of sequences.
template <typename scalar_t>
struct RnnParams {
  using value_type = scalar_t;                     // the tensors' dtype
  using compute_t = fastrnn::compute_t<scalar_t>;  // the cells' math and accumulation
  CellKind cell = CellKind::kLstm;
  CellOptions options;  // cells/options.h: passed to every cell call as it is
  int64_t T = 0, B = 0, N = 0, I = 0, H = 0, P = 0, L = 1, D = 1;
  const int64_t* batch_sizes = nullptr;  // [T], non-increasing, batch_sizes[0] == B
  const int64_t* offsets = nullptr;      // [T], offsets[t] = sum of batch_sizes[0 .. t-1]

  const scalar_t* x = nullptr;  // [N, I], leading dimension ldx
  int64_t ldx = 0;
  const scalar_t* hx = nullptr;  // [L*D, B, P], layer-major as torch.nn's h_0
  bool hx_zero = false;          // hx is zeros (none was given): drivers may skip products by it
  const scalar_t* cx = nullptr;  // [L*D, B, H], LSTM only
  const LayerWeights<scalar_t>* weights = nullptr;  // [L*D], layer-major
  // [L-1, N, D*P] or nullptr: multiplied into the output of layer l before it feeds layer l+1
  const scalar_t* dropout_masks = nullptr;

  scalar_t* output = nullptr;  // [N, D*P]: direction d in columns d*P .. d*P + P - 1
  scalar_t* h_n = nullptr;     // [L*D, B, P]
  scalar_t* c_n = nullptr;     // [L*D, B, H], LSTM only
  // reserve_width() * N values that backward needs, written when training; nullptr for inference
  scalar_t* reserve = nullptr;
};

// Backward of a stack: `fwd` holds the forward call's pointers (backward reads output and
// reserve, never writes them).
template <typename scalar_t>
struct RnnGradParams {
  RnnParams<scalar_t> fwd;
  const scalar_t* grad_output = nullptr;  // [N, D*P] or nullptr for zero
  const scalar_t* grad_h_n = nullptr;     // [L*D, B, P] or nullptr
  const scalar_t* grad_c_n = nullptr;     // [L*D, B, H] or nullptr
  // nullptr where nobody wants it: backward then skips the products that only it needs
  // (dL/dx of layer 0; the last step's dL/dh_{t-1} of every layer)
  scalar_t* grad_x = nullptr;             // [N, I] contiguous, or nullptr
  scalar_t* grad_hx = nullptr;            // [L*D, B, P], or nullptr
  scalar_t* grad_cx = nullptr;            // [L*D, B, H], LSTM only
  const LayerGrads<scalar_t>* grads = nullptr;  // [L*D]
  // [2, L*D, T] or nullptr: the Frobenius norm over the active rows and units of the total
  // dL/dh_t each step t's backward receives, then (LSTM) of the full dL/dc_t
  float* grad_norms = nullptr;
};

}  // namespace fastrnn
