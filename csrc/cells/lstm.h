// LSTM cell math, torch.nn gate order (i, f, g, o):
//   i = sigmoid(xi + hi + b_ii + b_hi)     f = sigmoid(xf + hf + b_if + b_hf)
//   g = tanh(xg + hg + b_ig + b_hg)        o = sigmoid(xo + ho + b_io + b_ho)
//   c = f * c_prev + i * g                 h = o * tanh(c)
// where x* = (W_ih x)_gate and h* = (W_hh h_prev)_gate.
#pragma once

#include "cells/common.h"

namespace fastrnn {

struct LstmCell {
  static constexpr int kGates = 4;             // G: rows of W_ih / W_hh in units of H
  static constexpr int kSaved = 5;             // S: saved per (t, b) in units of H: i, f, g, o, c
  static constexpr bool kHasCellState = true;  // carries c besides h
  static constexpr int kSavedCellSlot = 4;     // c_t is saved[kSavedCellSlot * H + j]
  static constexpr bool kSplitHiddenGrad = false;  // dL/d(W_hh h) == dL/d(W_ih x)

  // One hidden unit j of one batch row. x_pre, h_pre: [G*H] rows of W_ih x and W_hh h_prev.
  // saved: [S*H] row, written when training; it may alias x_pre (each unit reads before it writes).
  // c_prev, c: may alias (inference updates c in place).
  template <bool kTraining, bool kHasBias, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const T* x_pre, const T* h_pre, const T* b_ih,
                                 const T* b_hh, const T* h_prev, const T* c_prev, T* h, T* c,
                                 T* saved) {
    T pre[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t u = k * H + j;
      pre[k] = x_pre[u] + h_pre[u] + bias_at<kHasBias>(b_ih, u) + bias_at<kHasBias>(b_hh, u);
    }
    const T i = sigmoid(pre[0]);
    const T f = sigmoid(pre[1]);
    const T g = tanh_(pre[2]);
    const T o = sigmoid(pre[3]);
    const T c_new = f * c_prev[j] + i * g;
    h[j] = o * tanh_(c_new);
    c[j] = c_new;
    if constexpr (kTraining) {
      saved[0 * H + j] = i;
      saved[1 * H + j] = f;
      saved[2 * H + j] = g;
      saved[3 * H + j] = o;
      saved[4 * H + j] = c_new;
    }
  }

  // The cell's own output o * tanh(c), before an LSTM projection, from what forward saved.
  template <typename T>
  FASTRNN_HD static T unprojected_h(int64_t j, int64_t H, const T* saved) {
    return saved[3 * H + j] * tanh_(saved[4 * H + j]);
  }

  // Backward of one unit. dh: dL/dh_t (from the output and from step t+1). dc: in dL/dc_t from
  // step t+1, out dL/dc_{t-1}. Writes dL/d(pre-activation) of the 4 gates to dx_pre (which is
  // also the gradient of W_hh h_prev: dh_pre is unused). h_prev, h, dh_prev_direct: unused.
  template <typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, T dh, T* dc, const T* saved,
                                  const T* h_prev, const T* h, const T* c_prev, T* dx_pre,
                                  T* dh_pre, T* dh_prev_direct) {
    const T i = saved[0 * H + j];
    const T f = saved[1 * H + j];
    const T g = saved[2 * H + j];
    const T o = saved[3 * H + j];
    const T tc = tanh_(saved[4 * H + j]);
    const T dc_t = dc[j] + dh * o * d_tanh(tc);
    dx_pre[0 * H + j] = dc_t * g * d_sigmoid(i);
    dx_pre[1 * H + j] = dc_t * c_prev[j] * d_sigmoid(f);
    dx_pre[2 * H + j] = dc_t * i * d_tanh(g);
    dx_pre[3 * H + j] = dh * tc * d_sigmoid(o);
    dc[j] = dc_t * f;
  }
};

}  // namespace fastrnn
