// Vanilla (Elman) RNN cell math: h = act(W_ih x + b_ih + W_hh h_prev + b_hh), act = tanh or relu.
#pragma once

#include "cells/common.h"

namespace fastrnn {

enum class Activation { kTanh, kRelu };

template <Activation kAct>
struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 0;  // backward needs only h, which is the output
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitHiddenGrad = false;

  template <bool kTraining, bool kHasBias, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const T* x_pre, const T* h_pre, const T* b_ih,
                                 const T* b_hh, const T* h_prev, const T* c_prev, T* h, T* c,
                                 T* saved) {
    const T pre = x_pre[j] + h_pre[j] + bias_at<kHasBias>(b_ih, j) + bias_at<kHasBias>(b_hh, j);
    if constexpr (kAct == Activation::kTanh) {
      h[j] = tanh_(pre);
    } else {
      h[j] = pre < T(0) ? T(0) : pre;  // NaN passes through, as in torch.relu
    }
  }

  // The derivative is taken from the output h: tanh' = 1 - h^2, relu' = [h > 0] (NaN: 1).
  template <typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, T dh, T* dc, const T* saved,
                                  const T* h_prev, const T* h, const T* c_prev, T* dx_pre,
                                  T* dh_pre, T* dh_prev_direct) {
    if constexpr (kAct == Activation::kTanh) {
      dx_pre[j] = dh * d_tanh(h[j]);
    } else {
      dx_pre[j] = h[j] <= T(0) ? T(0) : dh;  // as torch's threshold_backward
    }
  }
};

using RnnTanhCell = RnnCell<Activation::kTanh>;
using RnnReluCell = RnnCell<Activation::kRelu>;

}  // namespace fastrnn
