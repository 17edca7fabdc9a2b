// bfloat16 and float16 on the CUDA drivers (and their host emulation): the stack runs as a float32
// one (Driver<Exec, float, T>) and what it returns is rounded back to the 16-bit type: the
// output, h_n and c_n, the reserve (the saved rows and the inner layers' outputs, as the CPU's
// 16-bit path stores them) and every gradient. So the state, the gate math and all sums are
// float32, as on the CPU (cells/rows.h), and the values backward reads are the rounded ones
// forward returned.
//
// The products are 16-bit ones with float32 sums. The original type goes on as the Driver's
// Operand, with p itself: every GEMM (W_ih x of every row, the alternating path's per-step
// W_hh h_{t-1} and W_hr m and backward's dgates W_hh, dL/dh W_hr and dgates W_ih, the
// whole-sequence weight gradients) is exec.gemm's 16-bit overload (cublasGemmEx, float32 sums)
// on p's own weights and input and on the float32 rows rounded to T right before the product
// (cuda/driver.h); the persistent path's per-step products run on tensor cores in T
// (cuda/persistent.cuh: the weights converted back to T, exactly, as they fill shared memory; the
// left operand rounded to T as it is staged).
//
// The float32 copies that remain, made on the device by the Convert kernel (one pass over each
// tensor, 4 bytes a value, per call): W_hh and W_hr (G*H*P + P*H values per layer and direction,
// twice their 16-bit bytes; only the persistent kernels read them, as they fill shared memory),
// the biases (2*G*H: the cells add them), hx and cx, the dropout masks ((L-1)*N*D*P), and in
// backward the output, the reserve and the incoming gradients; plus float32 buffers for the
// results until they are rounded back. None of x or W_ih (only GEMMs read them). The rounded
// GEMM operands take 2 bytes a value: per step B rows; an inner layer's input (N*D*P); in
// backward the gates' gradients of every row (N*G*H, twice for the GRU), h_{t-1} of every row
// (N*P), and with a projection dL/dh and m of every row (N*(P + H)).
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "cells/cells.h"
#include "core/params.h"
#include "core/reserve.h"
#include "cuda/driver.h"
#include "cuda/kernels.cuh"

namespace fastrnn::cuda {

template <class Exec>
class FloatCopies {
 public:
  explicit FloatCopies(Exec& exec) : exec_(exec) {}

  // A float32 copy of rows x cols of src (leading dimension ld), contiguous; nullptr for nullptr.
  template <typename T>
  float* of(const T* src, int64_t rows, int64_t cols, int64_t ld) {
    if (!src) return nullptr;
    float* dst = fresh(rows * cols);
    convert(src, rows, cols, ld, dst, cols);
    return dst;
  }
  template <typename T>
  float* of(const T* src, int64_t n) {
    return of(src, 1, n, n);
  }

  // n uninitialised floats, or nullptr where dst (the 16-bit result it stands for) is nullptr.
  template <typename T>
  float* for_result(const T* dst, int64_t n) {
    return dst ? fresh(n) : nullptr;
  }

  // dst (rows x cols, leading dimension ld) = src rounded; nothing for nullptr.
  template <typename T>
  void round_into(const float* src, int64_t rows, int64_t cols, T* dst, int64_t ld) const {
    if (src && dst) convert(src, rows, cols, cols, dst, ld);
  }
  template <typename T>
  void round_into(const float* src, T* dst, int64_t n) const {
    round_into(src, 1, n, dst, n);
  }

 private:
  float* fresh(int64_t n) {
    buffers_.push_back(exec_.template buffer<float>(n));
    return buffers_.back().get();
  }

  template <typename From, typename To>
  void convert(const From* src, int64_t rows, int64_t cols, int64_t ld_src, To* dst,
               int64_t ld_dst) const {
    if (rows * cols == 0) return;
    exec_.launch(Convert<From, To>{rows, cols, src, ld_src, dst, ld_dst}, per_unit(rows * cols, 1));
  }

  Exec& exec_;
  std::vector<decltype(std::declval<Exec&>().template buffer<float>(0))> buffers_;
};

// The sizes of the five tensors of layer and direction k's weights (and their gradients), in
// LayerWeights' order: w_ih, w_hh, b_ih, b_hh, w_hr.
template <typename T>
std::array<int64_t, 5> weight_sizes(const RnnParams<T>& p, int64_t k) {
  int64_t G = 0;
  visit_cell(p.cell, [&](auto cell) { G = decltype(cell)::kGates; });
  const int64_t GH = G * p.H, I = k < p.D ? p.I : p.D * p.P;
  return {GH * I, GH * p.P, GH, GH, p.P * p.H};
}

// The five weights (or gradients) of a layer as an array of pointers, in that order.
template <class W>
auto weight_pointers(W& w) {
  return std::array{&w.w_ih, &w.w_hh, &w.b_ih, &w.b_hh, &w.w_hr};
}

// fn(from's tensor, to's tensor (a reference to its pointer), its size) for each of the five
// tensors of layer and direction k, from and to being its weights or gradients.
template <typename T, class From, class To, class Fn>
void each_weight(const RnnParams<T>& p, int64_t k, From& from, To& to, Fn fn) {
  const auto sizes = weight_sizes(p, k);
  const auto src = weight_pointers(from);
  const auto dst = weight_pointers(to);
  for (size_t i = 0; i < sizes.size(); ++i) fn(*src[i], *dst[i], sizes[i]);
}

// The float32 params of p's stack, inputs copied (and the weights' float32 copies in `weights`);
// the results are fresh buffers of copies, which the caller rounds back. Not copied, nullptr
// here: x and W_ih, which only the GEMMs read, from p (Driver's source).
template <class Exec, typename T>
RnnParams<float> float_params(FloatCopies<Exec>& copies, const RnnParams<T>& p,
                              std::vector<LayerWeights<float>>& weights) {
  const int64_t LD = p.L * p.D, DP = p.D * p.P;
  RnnParams<float> q;
  q.cell = p.cell, q.options = p.options;
  q.T = p.T, q.B = p.B, q.N = p.N, q.I = p.I, q.H = p.H, q.P = p.P, q.L = p.L, q.D = p.D;
  q.batch_sizes = p.batch_sizes, q.offsets = p.offsets;
  q.x = nullptr, q.ldx = p.ldx;
  q.hx = copies.of(p.hx, LD * p.B * p.P);
  q.cx = copies.of(p.cx, LD * p.B * p.H);
  weights.resize(LD);
  for (int64_t k = 0; k < LD; ++k) {
    each_weight(p, k, p.weights[k], weights[k], [&](auto* src, auto*& dst, int64_t n) {
      dst = &dst == &weights[k].w_ih ? nullptr : copies.of(src, n);
    });
  }
  q.weights = weights.data();
  q.dropout_masks = copies.of(p.dropout_masks, (p.L - 1) * p.N * DP);
  return q;
}

// Values in the reserve of p's stack (0 for inference).
template <class Cell, typename T>
int64_t reserve_values(const RnnParams<T>& p) {
  return p.reserve ? reserve_width(p.L, p.D, Cell::kSaved, p.H, p.P) * p.N : 0;
}

template <class Exec, typename T>
void forward_through_float(Exec& exec, const RnnParams<T>& p) {
  FloatCopies<Exec> copies(exec);
  std::vector<LayerWeights<float>> weights;
  RnnParams<float> q = float_params(copies, p, weights);
  const int64_t LD = p.L * p.D, DP = p.D * p.P;
  q.output = copies.for_result(p.output, p.N * DP);
  q.h_n = copies.for_result(p.h_n, LD * p.B * p.P);
  q.c_n = copies.for_result(p.c_n, LD * p.B * p.H);
  visit_cell(p.cell, [&](auto cell) {
    using Cell = decltype(cell);
    const int64_t n = reserve_values<Cell>(p);
    q.reserve = copies.for_result(p.reserve, n);
    run_stack_forward(Driver<Exec, float, T>(exec, p), q);
    copies.round_into(q.reserve, p.reserve, n);
  });
  copies.round_into(q.output, p.output, p.N * DP);
  copies.round_into(q.h_n, p.h_n, LD * p.B * p.P);
  copies.round_into(q.c_n, p.c_n, LD * p.B * p.H);
}

template <class Exec, typename T>
void backward_through_float(Exec& exec, const RnnGradParams<T>& g) {
  const RnnParams<T>& p = g.fwd;
  FloatCopies<Exec> copies(exec);
  std::vector<LayerWeights<float>> weights;
  RnnGradParams<float> q;
  q.fwd = float_params(copies, p, weights);
  const int64_t LD = p.L * p.D, DP = p.D * p.P;
  q.fwd.output = copies.of(p.output, p.N * DP);
  visit_cell(p.cell, [&](auto cell) {
    using Cell = decltype(cell);
    q.fwd.reserve = copies.of(p.reserve, reserve_values<Cell>(p));
  });
  q.grad_output = copies.of(g.grad_output, p.N * DP);
  q.grad_h_n = copies.of(g.grad_h_n, LD * p.B * p.P);
  q.grad_c_n = copies.of(g.grad_c_n, LD * p.B * p.H);
  q.grad_x = copies.for_result(g.grad_x, p.N * p.I);
  q.grad_hx = copies.for_result(g.grad_hx, LD * p.B * p.P);
  q.grad_cx = copies.for_result(g.grad_cx, LD * p.B * p.H);
  std::vector<LayerGrads<float>> grads(LD);
  for (int64_t k = 0; k < LD; ++k) {
    each_weight(p, k, g.grads[k], grads[k],
                [&](auto* result, auto*& made, int64_t n) { made = copies.for_result(result, n); });
  }
  q.grads = grads.data();
  q.grad_norms = g.grad_norms;  // float32 already
  run_stack_backward(Driver<Exec, float, T>(exec, p), q);
  copies.round_into(q.grad_x, g.grad_x, p.N * p.I);
  copies.round_into(q.grad_hx, g.grad_hx, LD * p.B * p.P);
  copies.round_into(q.grad_cx, g.grad_cx, LD * p.B * p.H);
  for (int64_t k = 0; k < LD; ++k) {
    each_weight(p, k, g.grads[k], grads[k],
                [&](auto* result, auto* made, int64_t n) { copies.round_into(made, result, n); });
  }
}

// The stack of p on an Exec's CUDA drivers: directly for float and double, through float32
// copies for the 16-bit types.
template <class Exec, typename T>
void drivers_forward(Exec& exec, const RnnParams<T>& p) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    run_stack_forward(Driver<Exec, T>(exec), p);
  } else {
    forward_through_float(exec, p);
  }
}

template <class Exec, typename T>
void drivers_backward(Exec& exec, const RnnGradParams<T>& g) {
  if constexpr (std::is_same_v<T, compute_t<T>>) {
    run_stack_backward(Driver<Exec, T>(exec), g);
  } else {
    backward_through_float(exec, g);
  }
}

}  // namespace fastrnn::cuda
