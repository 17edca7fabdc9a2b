// Vanilla (Elman) RNN cell math: h = act(W_ih x + b_ih + W_hh h_prev + b_hh), act = tanh or relu.
#pragma once

#include "cells/common.h"
#include "cells/rows.h"

namespace fastrnn {

enum class Activation { kTanh, kRelu };

template <Activation kAct>
struct RnnCell {
  static constexpr int kGates = 1;
  static constexpr int kSaved = 0;  // backward needs only h, which is the output
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasProjection = false;
  static constexpr bool kSplitHiddenGrad = false;

  template <class Flags, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const ForwardRow<T>& row,
                                 const CellOptions&) {
    using C = compute_t<T>;
    const C pre = C(row.x_pre[j]) + C(row.h_pre[j]) + bias_at<Flags::kHasBias, C>(row.b_ih, j) +
                  bias_at<Flags::kHasBias, C>(row.b_hh, j);
    if constexpr (kAct == Activation::kTanh) {
      row.h[j] = tanh_(pre);
    } else {
      row.h[j] = pre < C(0) ? C(0) : pre;  // NaN passes through, as in torch.relu
    }
  }

  // The derivative is taken from the output h: tanh' = 1 - h^2, relu' = [h > 0] (NaN: 1);
  // the pre-activation's gradient clamped to opt.grad_clip.
  template <class Flags, typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, const BackwardRow<T>& row,
                                  const CellOptions& opt) {
    using C = compute_t<T>;
    const C clip = C(opt.grad_clip);
    const C dh = row.dh[j];
    if constexpr (kAct == Activation::kTanh) {
      row.dx_pre[j] = clamp_abs(dh * d_tanh(C(row.h[j])), clip);
    } else {
      // as torch's threshold_backward
      row.dx_pre[j] = C(row.h[j]) <= C(0) ? C(0) : clamp_abs(dh, clip);
    }
  }
};

using RnnTanhCell = RnnCell<Activation::kTanh>;
using RnnReluCell = RnnCell<Activation::kRelu>;

}  // namespace fastrnn
