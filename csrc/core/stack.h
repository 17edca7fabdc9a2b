// The device-neutral half of the drivers: a stack of L layers x D directions walked layer by
// layer (reverse layer order in backward), the reserve's layout, dropout between layers. A
// device supplies only the work on one layer in one direction, as a Driver:
//
//   struct Driver {
//     template <class Cell> void layer_forward(const Layer<scalar_t>&) const;
//     template <class Cell> void layer_backward(const Layer<scalar_t>&,
//                                               const LayerGradIO<scalar_t>&) const;
//     auto buffer(int64_t n) const;  // n uninitialised elements on the device; .get() -> scalar_t*
//     void mask(const scalar_t* src, const scalar_t* mask, int64_t n, scalar_t* dst) const;
//                                    // dst[i] = src[i] * mask[i]; dst may be src
//   };
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/params.h"
#include "core/reserve.h"

namespace fastrnn {

// One layer in one direction, as a device's layer driver sees it. Rows and steps as in params.h.
template <typename scalar_t>
struct Layer {
  int64_t T, B, N, I, H, P;
  int64_t index;  // l * D + d: the layer's (and direction's) place in the stack's weights, hx, h_n
  const int64_t* batch_sizes;
  const int64_t* offsets;
  bool reverse;
  const scalar_t* x;  // [N, I], leading dimension ldx
  int64_t ldx;
  const scalar_t* h0;  // [B, P]
  bool h0_zero;        // h0 is zeros: the first step's W_hh h_{t-1} is zero
  const scalar_t* c0;  // [B, H] or nullptr
  LayerWeights<scalar_t> w;
  scalar_t* out;  // [N, P], leading dimension ld_out (read only in backward)
  int64_t ld_out;
  scalar_t* saved;  // [N, S*H] or nullptr (inference, or S == 0)
  scalar_t* h_n;    // [B, P], written by forward
  scalar_t* c_n;    // [B, H] or nullptr
  CellOptions options;  // for every cell call

  // The step helpers run on the host and in the persistent kernels (batch_sizes and offsets then
  // in device memory).
  // The time step processed s-th: forward walks t = 0 .. T-1, the reverse direction T-1 .. 0.
  FASTRNN_HD int64_t step(int64_t s) const { return reverse ? T - 1 - s : s; }

  // The step processed before t, or -1 for the first step processed.
  FASTRNN_HD int64_t prev_of(int64_t t) const {
    const int64_t prev = reverse ? t + 1 : t - 1;
    return prev >= 0 && prev < T ? prev : -1;
  }

  // How many of step t's rows start from the state the previous step left (rows 0 .. n-1); the
  // others start from the initial state (the first step, or in the reverse direction a packed
  // sequence's first step).
  FASTRNN_HD int64_t rows_from_prev(int64_t t) const {
    const int64_t prev = prev_of(t);
    if (prev < 0) return 0;
    return batch_sizes[t] < batch_sizes[prev] ? batch_sizes[t] : batch_sizes[prev];
  }

  // The step whose row b holds the state step t starts from, or -1: the initial state.
  FASTRNN_HD int64_t prev_step(int64_t t, int64_t b) const {
    return b < rows_from_prev(t) ? prev_of(t) : -1;
  }
};

// What backward of one layer reads and writes besides the Layer.
template <typename scalar_t>
struct LayerGradIO {
  const scalar_t* grad_out;  // [N, P], leading dimension ld_grad_out, or nullptr for zero
  int64_t ld_grad_out;
  const scalar_t* grad_h_n;  // [B, P] or nullptr
  const scalar_t* grad_c_n;  // [B, H] or nullptr
  scalar_t* grad_x;          // [N, I], leading dimension ld_grad_x, or nullptr: not wanted
  int64_t ld_grad_x;
  bool accumulate_grad_x;  // add into grad_x (the second direction of a layer) instead of overwrite
  scalar_t* grad_h0;       // [B, P], or nullptr: not wanted
  scalar_t* grad_c0;       // [B, H] or nullptr
  LayerGrads<scalar_t> grads;
  float* h_norms;  // [T] ||dL/dh_t|| per time step, or nullptr: not recorded
  float* c_norms;  // [T] ||dL/dc_t|| (cell state), or nullptr
};

// Layer l, direction d of the stack, reading x ([N, I] with leading dimension ldx) and writing
// its columns of the layer output `out` ([N, D*P]).
template <typename scalar_t>
Layer<scalar_t> make_layer(const RnnParams<scalar_t>& p, int64_t l, int64_t d, const scalar_t* x,
                           int64_t I, int64_t ldx, scalar_t* out, scalar_t* saved) {
  const int64_t k = l * p.D + d;  // index of (l, d) in weights, hx, h_n, ...
  Layer<scalar_t> layer;
  layer.T = p.T, layer.B = p.B, layer.N = p.N, layer.I = I, layer.H = p.H, layer.P = p.P;
  layer.index = k;
  layer.batch_sizes = p.batch_sizes, layer.offsets = p.offsets;
  layer.reverse = d == 1;
  layer.x = x, layer.ldx = ldx;
  layer.h0 = p.hx + k * p.B * p.P;
  layer.h0_zero = p.hx_zero;
  layer.c0 = p.cx ? p.cx + k * p.B * p.H : nullptr;
  layer.w = p.weights[k];
  layer.out = out + d * p.P, layer.ld_out = p.D * p.P;
  layer.saved = saved;
  layer.h_n = p.h_n ? p.h_n + k * p.B * p.P : nullptr;
  layer.c_n = p.c_n ? p.c_n + k * p.B * p.H : nullptr;
  layer.options = p.options;
  return layer;
}

template <class Cell, class Driver, typename scalar_t>
void stack_forward(const Driver& driver, const RnnParams<scalar_t>& p) {
  const int64_t N = p.N, DP = p.D * p.P;
  const bool training = p.reserve != nullptr;
  const ReserveLayout<Cell, scalar_t> reserve{p};
  // Inference keeps the outputs of inner layers in two buffers taking turns; training keeps
  // them in the reserve, and the dropout-masked copy feeding the next layer in `masked`.
  const auto turns = driver.buffer(!training && p.L > 1 ? (p.L > 2 ? 2 : 1) * N * DP : 0);
  const auto masked = driver.buffer(training && p.dropout_masks ? N * DP : 0);

  const scalar_t* x = p.x;
  int64_t I = p.I, ldx = p.ldx;
  for (int64_t l = 0; l < p.L; ++l) {
    scalar_t* out = l == p.L - 1 ? p.output
                    : training   ? reserve.layer_output(l)
                                 : turns.get() + (l % 2) * N * DP;
    for (int64_t d = 0; d < p.D; ++d) {
      scalar_t* saved = training ? reserve.saved(l, d) : nullptr;
      driver.template layer_forward<Cell>(make_layer(p, l, d, x, I, ldx, out, saved));
    }
    x = out;
    if (l < p.L - 1 && p.dropout_masks) {
      scalar_t* dst = training ? masked.get() : out;  // inference may overwrite its own buffer
      driver.mask(out, p.dropout_masks + l * N * DP, N * DP, dst);
      x = dst;
    }
    I = ldx = DP;
  }
}

template <class Cell, class Driver, typename scalar_t>
void stack_backward(const Driver& driver, const RnnGradParams<scalar_t>& g) {
  const RnnParams<scalar_t>& p = g.fwd;
  const int64_t N = p.N, DP = p.D * p.P;
  const ReserveLayout<Cell, scalar_t> reserve{p};
  // dL/d(output of layer l-1), computed by layer l: two buffers taking turns; and the masked
  // input of layer l recomputed from the output of layer l-1
  const auto turns = driver.buffer(p.L > 1 ? (p.L > 2 ? 2 : 1) * N * DP : 0);
  const auto masked = driver.buffer(p.L > 1 && p.dropout_masks ? N * DP : 0);

  const scalar_t* grad_out = g.grad_output;  // dL/d(output of layer l), [N, D*P] or nullptr
  for (int64_t l = p.L - 1; l >= 0; --l) {
    const scalar_t* x = p.x;
    int64_t I = p.I, ldx = p.ldx;
    if (l > 0) {
      x = reserve.layer_output(l - 1);
      I = ldx = DP;
      if (p.dropout_masks) {
        driver.mask(x, p.dropout_masks + (l - 1) * N * DP, N * DP, masked.get());
        x = masked.get();
      }
    }
    scalar_t* out = l == p.L - 1 ? p.output : reserve.layer_output(l);
    scalar_t* grad_x = l == 0 ? g.grad_x : turns.get() + ((l - 1) % 2) * N * DP;
    for (int64_t d = 0; d < p.D; ++d) {
      const int64_t k = l * p.D + d;
      LayerGradIO<scalar_t> io;
      io.grad_out = grad_out ? grad_out + d * p.P : nullptr, io.ld_grad_out = DP;
      io.grad_h_n = g.grad_h_n ? g.grad_h_n + k * p.B * p.P : nullptr;
      io.grad_c_n = g.grad_c_n ? g.grad_c_n + k * p.B * p.H : nullptr;
      io.grad_x = grad_x, io.ld_grad_x = I;
      io.accumulate_grad_x = d > 0;
      io.grad_h0 = g.grad_hx ? g.grad_hx + k * p.B * p.P : nullptr;
      io.grad_c0 = g.grad_cx ? g.grad_cx + k * p.B * p.H : nullptr;
      io.grads = g.grads[k];
      io.h_norms = g.grad_norms ? g.grad_norms + k * p.T : nullptr;
      io.c_norms = g.grad_norms ? g.grad_norms + (p.L * p.D + k) * p.T : nullptr;
      driver.template layer_backward<Cell>(
          make_layer(p, l, d, x, I, ldx, out, reserve.saved(l, d)), io);
    }
    if (l > 0 && p.dropout_masks) {
      driver.mask(grad_x, p.dropout_masks + (l - 1) * N * DP, N * DP, grad_x);
    }
    grad_out = grad_x;
  }
}

// The whole stack on a device's Driver, for the cell p.cell names.
template <class Driver, typename scalar_t>
void run_stack_forward(const Driver& driver, const RnnParams<scalar_t>& p) {
  visit_cell(p.cell, [&](auto cell) { stack_forward<decltype(cell)>(driver, p); });
}

template <class Driver, typename scalar_t>
void run_stack_backward(const Driver& driver, const RnnGradParams<scalar_t>& g) {
  visit_cell(g.fwd.cell, [&](auto cell) { stack_backward<decltype(cell)>(driver, g); });
}

}  // namespace fastrnn
