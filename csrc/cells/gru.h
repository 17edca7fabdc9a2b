// GRU cell math, exactly torch.nn.GRU's formulation and gate order (r, z, n):
//   r = sigmoid(xr + b_ir + hr + b_hr)     z = sigmoid(xz + b_iz + hz + b_hz)
//   n = tanh(xn + b_in + r * (hn + b_hn))  h = (1 - z) * n + z * h_prev
// where x* = (W_ih x)_gate and h* = (W_hh h_prev)_gate. The reset gate multiplies the recurrent
// term *after* the matrix product, so forward saves hn + b_hn for the gradient of r.
#pragma once

#include "cells/common.h"
#include "cells/rows.h"

namespace fastrnn {

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;  // r, z, n, hn + b_hn
  static constexpr bool kHasCellState = false;
  static constexpr bool kHasProjection = false;
  static constexpr bool kSplitHiddenGrad = true;  // dL/d(W_hh h)_n = r * dL/d(W_ih x)_n

  template <class Flags, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const ForwardRow<T>& row,
                                 const CellOptions&) {
    using C = compute_t<T>;
    constexpr bool kBias = Flags::kHasBias;
    const int64_t ur = j, uz = H + j, un = 2 * H + j;
    const C r = sigmoid(C(row.x_pre[ur]) + C(row.h_pre[ur]) + bias_at<kBias, C>(row.b_ih, ur) +
                        bias_at<kBias, C>(row.b_hh, ur));
    const C z = sigmoid(C(row.x_pre[uz]) + C(row.h_pre[uz]) + bias_at<kBias, C>(row.b_ih, uz) +
                        bias_at<kBias, C>(row.b_hh, uz));
    const C hn = C(row.h_pre[un]) + bias_at<kBias, C>(row.b_hh, un);
    const C n = tanh_(C(row.x_pre[un]) + bias_at<kBias, C>(row.b_ih, un) + r * hn);
    row.h[j] = (C(1) - z) * n + z * row.h_prev[j];
    if constexpr (Flags::kTraining) {
      row.saved[0 * H + j] = T(r);
      row.saved[1 * H + j] = T(z);
      row.saved[2 * H + j] = T(n);
      row.saved[3 * H + j] = T(hn);
    }
  }

  // dx_pre: dL/d(W_ih x + b_ih) for r, z, n; dh_pre: dL/d(W_hh h_prev + b_hh) for r, z, n;
  // dh_prev_direct: the part of dL/dh_prev that does not go through W_hh (z * dh). With
  // opt.grad_clip the pre-activations' gradients are clamped, n's (of xn + b_in + r * hn) before
  // it flows on to r.
  template <class Flags, typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, const BackwardRow<T>& row,
                                  const CellOptions& opt) {
    using C = compute_t<T>;
    const C clip = C(opt.grad_clip);
    const C dh = row.dh[j];
    const C r = C(row.saved[0 * H + j]);
    const C z = C(row.saved[1 * H + j]);
    const C n = C(row.saved[2 * H + j]);
    const C hn = C(row.saved[3 * H + j]);
    const C dn = clamp_abs(dh * (C(1) - z) * d_tanh(n), clip);
    const C dz = clamp_abs(dh * (C(row.h_prev[j]) - n) * d_sigmoid(z), clip);
    const C dr = clamp_abs(dn * hn * d_sigmoid(r), clip);
    row.dx_pre[0 * H + j] = dr;
    row.dx_pre[1 * H + j] = dz;
    row.dx_pre[2 * H + j] = dn;
    row.dh_pre[0 * H + j] = dr;
    row.dh_pre[1 * H + j] = dz;
    row.dh_pre[2 * H + j] = dn * r;
    row.dh_prev_direct[j] = dh * z;
  }
};

}  // namespace fastrnn
