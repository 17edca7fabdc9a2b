// LSTM cell math, torch.nn gate order (i, f, g, o):
//   i = sigmoid(xi + hi + b_ii + b_hi)     f = sigmoid(xf + hf + b_if + b_hf)
//   g = tanh(xg + hg + b_ig + b_hg)        o = sigmoid(xo + ho + b_io + b_ho)
//   c = f * c_prev + i * g                 h = o * tanh(c)
// where x* = (W_ih x)_gate and h* = (W_hh h_prev)_gate.
#pragma once

#include "cells/common.h"
#include "cells/rows.h"

namespace fastrnn {

struct LstmCell {
  static constexpr int kGates = 4;             // G: rows of W_ih / W_hh in units of H
  static constexpr int kSaved = 5;             // S: saved per (t, b) in units of H: i, f, g, o, c
  static constexpr bool kHasCellState = true;  // carries c besides h
  static constexpr bool kHasProjection = true;     // may project h (proj_size: h = W_hr m)
  static constexpr bool kSplitHiddenGrad = false;  // dL/d(W_hh h) == dL/d(W_ih x)

  // One hidden unit j of one batch row (rows.h). Reads x_pre, h_pre, the biases and c_prev;
  // writes h, c and, when training, saved (i, f, g, o, c_t). With opt.cell_clip, c_t is clamped
  // and saved f carries whether it was in its sign bit (f >= 0), for backward's zero gradient.
  template <class Flags, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const ForwardRow<T>& row,
                                 const CellOptions& opt) {
    using C = compute_t<T>;
    C pre[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t u = k * H + j;
      pre[k] = C(row.x_pre[u]) + C(row.h_pre[u]) + bias_at<Flags::kHasBias, C>(row.b_ih, u) +
               bias_at<Flags::kHasBias, C>(row.b_hh, u);
    }
    const C i = sigmoid(pre[0]);
    const C f = sigmoid(pre[1]);
    const C g = tanh_(pre[2]);
    const C o = sigmoid(pre[3]);
    const C c_sum = f * row.c_prev[j] + i * g;
    const C limit = C(opt.cell_clip);
    const C c_new = clamp_abs(c_sum, limit);
    row.h[j] = o * tanh_(c_new);
    row.c[j] = c_new;
    if constexpr (Flags::kTraining) {
      // (|c| > limit, not c > limit || c < -limit: with a 16-bit saved type GCC vectorises the
      // loop over units only in this form)
      const bool clipped = abs_(c_sum) > limit;
      row.saved[0 * H + j] = T(i);
      row.saved[1 * H + j] = T(copysign_(f, clipped ? C(-1) : C(1)));
      row.saved[2 * H + j] = T(g);
      row.saved[3 * H + j] = T(o);
      row.saved[4 * H + j] = T(c_new);
    }
  }

  // Where a saved row keeps c_t: the next step's backward reads it as c_prev.
  template <typename T>
  FASTRNN_HD static const T* saved_c(const T* saved, int64_t H) {
    return saved + 4 * H;
  }

  // The cell's own output o * tanh(c), before an LSTM projection, from what forward saved.
  template <typename T>
  FASTRNN_HD static T unprojected_h(int64_t j, int64_t H, const T* saved) {
    using C = compute_t<T>;
    return T(C(saved[3 * H + j]) * tanh_(C(saved[4 * H + j])));
  }

  // Backward of one unit: dL/d(pre-activation) of the 4 gates to dx_pre (which is also the
  // gradient of W_hh h_prev), each clamped to opt.grad_clip, and dL/dc_{t-1} to dc. Reads dh,
  // dc, saved and c_prev.
  template <class Flags, typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, const BackwardRow<T>& row,
                                  const CellOptions& opt) {
    using C = compute_t<T>;
    const C clip = C(opt.grad_clip);
    const C dh = row.dh[j];
    const C i = C(row.saved[0 * H + j]);
    const C f_signed = C(row.saved[1 * H + j]);
    const C f = copysign_(f_signed, C(1));
    const C g = C(row.saved[2 * H + j]);
    const C o = C(row.saved[3 * H + j]);
    const C tc = tanh_(C(row.saved[4 * H + j]));
    const C dc_t = row.dc[j] + dh * o * d_tanh(tc);              // dL/dc_t
    if constexpr (Flags::kRecordCellGrad) row.dc_total[j] = dc_t;
    const C dc_sum = copysign_(C(1), f_signed) > C(0) ? dc_t : C(0);  // through cell_clip
    row.dx_pre[0 * H + j] = clamp_abs(dc_sum * g * d_sigmoid(i), clip);
    row.dx_pre[1 * H + j] = clamp_abs(dc_sum * C(row.c_prev[j]) * d_sigmoid(f), clip);
    row.dx_pre[2 * H + j] = clamp_abs(dc_sum * i * d_tanh(g), clip);
    row.dx_pre[3 * H + j] = clamp_abs(dh * tc * d_sigmoid(o), clip);
    row.dc[j] = dc_sum * f;
  }
};

}  // namespace fastrnn
