// The one boundary between the torch glue (ops.cpp) and the kernels: plain pointers and sizes.
//
// Sizes: T time steps, B batch, I input features, H hidden units, G gates of the cell
// (LSTM 4: i f g o; GRU 3: r z n; RNN 1), S saved values per (t, b) in units of H (cells/*.h).
// All tensors are row-major and contiguous unless a stride is given; strides are in elements.
// Nullable pointers say so; the glue passes zeros for absent initial states, never nullptr.
#pragma once

#include <cstdint>

namespace fastrnn {

enum class CellKind { kLstm, kGru, kRnnTanh, kRnnRelu };

template <typename scalar_t>
struct ForwardParams {
  int64_t T = 0, B = 0, I = 0, H = 0;

  const scalar_t* x = nullptr;  // [T, B, I]; x[t, b, i] at t * x_stride_t + b * x_stride_b + i
  int64_t x_stride_t = 0, x_stride_b = 0;
  const scalar_t* h0 = nullptr;    // [B, H]
  const scalar_t* c0 = nullptr;    // [B, H], LSTM only
  const scalar_t* w_ih = nullptr;  // [G*H, I]
  const scalar_t* w_hh = nullptr;  // [G*H, H]
  const scalar_t* b_ih = nullptr;  // [G*H] or nullptr (no bias: then b_hh is nullptr too)
  const scalar_t* b_hh = nullptr;  // [G*H] or nullptr

  scalar_t* output = nullptr;  // [T, B, H]: h_t for every t
  scalar_t* h_n = nullptr;     // [B, H]
  scalar_t* c_n = nullptr;     // [B, H], LSTM only
  // [T, B, S*H]: what backward needs, written when training; nullptr for inference (and S == 0)
  scalar_t* saved = nullptr;
};

template <typename scalar_t>
struct BackwardParams {
  int64_t T = 0, B = 0, I = 0, H = 0;

  // forward's inputs and what it saved, unchanged (backward never writes to them)
  const scalar_t* x = nullptr;  // [T, B, I] with strides as in ForwardParams
  int64_t x_stride_t = 0, x_stride_b = 0;
  const scalar_t* h0 = nullptr;      // [B, H]
  const scalar_t* c0 = nullptr;      // [B, H], LSTM only
  const scalar_t* w_ih = nullptr;    // [G*H, I]
  const scalar_t* w_hh = nullptr;    // [G*H, H]
  const scalar_t* output = nullptr;  // [T, B, H]
  const scalar_t* saved = nullptr;   // [T, B, S*H]

  // incoming gradients; nullptr means zero
  const scalar_t* grad_output = nullptr;  // [T, B, H]
  const scalar_t* grad_h_n = nullptr;     // [B, H]
  const scalar_t* grad_c_n = nullptr;     // [B, H], LSTM only

  // gradients written (all overwritten, none accumulated into)
  scalar_t* grad_x = nullptr;     // [T, B, I] contiguous
  scalar_t* grad_h0 = nullptr;    // [B, H]
  scalar_t* grad_c0 = nullptr;    // [B, H], LSTM only
  scalar_t* grad_w_ih = nullptr;  // [G*H, I]
  scalar_t* grad_w_hh = nullptr;  // [G*H, H]
  scalar_t* grad_b_ih = nullptr;  // [G*H] or nullptr when the layer has no bias
  scalar_t* grad_b_hh = nullptr;  // [G*H] or nullptr
};

}  // namespace fastrnn
