// GRU cell math, exactly torch.nn.GRU's formulation and gate order (r, z, n):
//   r = sigmoid(xr + b_ir + hr + b_hr)     z = sigmoid(xz + b_iz + hz + b_hz)
//   n = tanh(xn + b_in + r * (hn + b_hn))  h = (1 - z) * n + z * h_prev
// where x* = (W_ih x)_gate and h* = (W_hh h_prev)_gate. The reset gate multiplies the recurrent
// term *after* the matrix product, so forward saves hn + b_hn for the gradient of r.
#pragma once

#include "cells/common.h"

namespace fastrnn {

struct GruCell {
  static constexpr int kGates = 3;
  static constexpr int kSaved = 4;  // r, z, n, hn + b_hn
  static constexpr bool kHasCellState = false;
  static constexpr bool kSplitHiddenGrad = true;  // dL/d(W_hh h)_n = r * dL/d(W_ih x)_n

  template <bool kTraining, bool kHasBias, typename T>
  FASTRNN_HD static void forward(int64_t j, int64_t H, const T* x_pre, const T* h_pre, const T* b_ih,
                                 const T* b_hh, const T* h_prev, const T* c_prev, T* h, T* c,
                                 T* saved) {
    const int64_t ur = j, uz = H + j, un = 2 * H + j;
    const T r = sigmoid(x_pre[ur] + h_pre[ur] + bias_at<kHasBias>(b_ih, ur) +
                        bias_at<kHasBias>(b_hh, ur));
    const T z = sigmoid(x_pre[uz] + h_pre[uz] + bias_at<kHasBias>(b_ih, uz) +
                        bias_at<kHasBias>(b_hh, uz));
    const T hn = h_pre[un] + bias_at<kHasBias>(b_hh, un);
    const T n = tanh_(x_pre[un] + bias_at<kHasBias>(b_ih, un) + r * hn);
    h[j] = (T(1) - z) * n + z * h_prev[j];
    if constexpr (kTraining) {
      saved[0 * H + j] = r;
      saved[1 * H + j] = z;
      saved[2 * H + j] = n;
      saved[3 * H + j] = hn;
    }
  }

  // dx_pre: dL/d(W_ih x + b_ih) for r, z, n; dh_pre: dL/d(W_hh h_prev + b_hh) for r, z, n;
  // dh_prev_direct: the part of dL/dh_prev that does not go through W_hh (z * dh).
  template <typename T>
  FASTRNN_HD static void backward(int64_t j, int64_t H, T dh, T* dc, const T* saved,
                                  const T* h_prev, const T* h, const T* c_prev, T* dx_pre,
                                  T* dh_pre, T* dh_prev_direct) {
    const T r = saved[0 * H + j];
    const T z = saved[1 * H + j];
    const T n = saved[2 * H + j];
    const T hn = saved[3 * H + j];
    const T dn = dh * (T(1) - z) * d_tanh(n);
    const T dz = dh * (h_prev[j] - n) * d_sigmoid(z);
    const T dr = dn * hn * d_sigmoid(r);
    dx_pre[0 * H + j] = dr;
    dx_pre[1 * H + j] = dz;
    dx_pre[2 * H + j] = dn;
    dh_pre[0 * H + j] = dr;
    dh_pre[1 * H + j] = dz;
    dh_pre[2 * H + j] = dn * r;
    dh_prev_direct[j] = dh * z;
  }
};

}  // namespace fastrnn
