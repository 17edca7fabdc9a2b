// The CUDA drivers' kernel bodies (cuda/exec.h's functors), over the shared cell math of
// cells/*.h: one source for the device (cuda/rnn_cuda.cu) and for host emulation
// (cuda/emulator.cpp). Rows are row-major with leading dimensions, as in core/params.h; a step's
// kernels see its Bt active rows, row b of the step being batch row b.
#pragma once

#include <cstdint>

#include "cells/cells.h"
#include "cuda/exec.h"

namespace fastrnn::cuda {

// The cell's forward on every (row, unit) of one step, the state updated in place: each unit
// reads its own h_prev and c before it writes them.
template <class Cell, class Flags, typename T>
struct ForwardStep {
  static constexpr bool kSyncs = false;
  int64_t rows, H;
  const T* x_pre;  // [rows, ld_x_pre] W_ih x
  int64_t ld_x_pre;
  const T* h_pre;  // [rows, G*H] W_hh h_{t-1}
  const T* b_ih;   // [G*H] or nullptr
  const T* b_hh;
  const T* h_prev;  // [rows, P] the running h
  int64_t P;
  T* c;             // [rows, H] the running c (cell state)
  T* h;             // [rows, ld_h] the cell's output (h, or m before a projection)
  int64_t ld_h;
  T* saved;         // [rows, S*H] when training
  CellOptions options;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t j = ctx.block() * ctx.threads() + ctx.thread(), b = ctx.row();
    if (j >= H || b >= rows) return;
    ForwardRow<T> row;
    row.x_pre = x_pre + b * ld_x_pre;
    row.h_pre = h_pre + b * Cell::kGates * H;
    row.b_ih = b_ih, row.b_hh = b_hh;
    row.h_prev = h_prev + b * P;
    if constexpr (Cell::kHasCellState) row.c_prev = row.c = c + b * H;
    row.h = h + b * ld_h;
    if constexpr (Flags::kTraining) row.saved = saved + b * Cell::kSaved * H;
    Cell::template forward<Flags>(j, H, row, options);
  }
};

// The cell's backward on every (row, unit) of one step. Row b's h_{t-1} (and c_{t-1}) is row b
// of the previous step's output (saved values) where b < prev_rows, else of h0 (c0).
template <class Cell, class Flags, typename T>
struct BackwardStep {
  static constexpr bool kSyncs = false;
  int64_t rows, H, P;
  const T* dh;  // [rows, ld_dh] dL/d(the cell's output), the output's gradient included
  int64_t ld_dh;
  T* dc;                  // [rows, H] in dL/dc_t, out dL/dc_{t-1} (cell state)
  const T* saved;         // [rows, S*H] this step's saved rows (nullptr when S == 0)
  const T* out;           // [rows, ld_out] this step's output rows, h_t
  const T* prev_out;      // the previous step's output rows, [prev_rows, ld_out]
  const T* prev_saved;    // and its saved rows
  int64_t ld_out, prev_rows;
  const T* h0;            // [rows, P]
  const T* c0;            // [rows, H] (cell state)
  T* dgx;                 // [rows, G*H]
  T* dgh;                 // [rows, G*H], dgx unless kSplitHiddenGrad
  T* dh_prev_direct;      // [rows, P] (may alias dh: each unit reads first)
  T* dc_total;            // [rows, H] when Flags::kRecordCellGrad
  T* m;                   // [rows, H] the unprojected h, recomputed for dW_hr, or nullptr
  CellOptions options;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t j = ctx.block() * ctx.threads() + ctx.thread(), b = ctx.row();
    if (j >= H || b >= rows) return;
    const int64_t SH = Cell::kSaved * H;
    const bool from_prev = b < prev_rows;
    BackwardRow<T> row;
    row.dh = dh + b * ld_dh;
    row.saved = saved ? saved + b * SH : nullptr;
    row.h_prev = from_prev ? prev_out + b * ld_out : h0 + b * P;
    row.h = out + b * ld_out;
    if constexpr (Cell::kHasCellState) {
      row.dc = dc + b * H;
      row.c_prev = from_prev ? Cell::saved_c(prev_saved + b * SH, H) : c0 + b * H;
      if constexpr (Flags::kRecordCellGrad) row.dc_total = dc_total + b * H;
    }
    row.dx_pre = dgx + b * Cell::kGates * H;
    row.dh_pre = dgh + b * Cell::kGates * H;
    row.dh_prev_direct = dh_prev_direct + b * P;
    Cell::template backward<Flags>(j, H, row, options);
    if constexpr (Cell::kHasProjection) {
      if (m) m[b * H + j] = Cell::unprojected_h(j, H, row.saved);
    }
  }
};

// dst[b, k] = src[b, k] (accumulate: +=) for `cols` columns of `rows` rows.
template <typename T>
struct CopyRows {
  static constexpr bool kSyncs = false;
  int64_t rows, cols;
  const T* src;
  int64_t ld_src;
  T* dst;
  int64_t ld_dst;
  bool accumulate;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t k = ctx.block() * ctx.threads() + ctx.thread(), b = ctx.row();
    if (k >= cols || b >= rows) return;
    const T v = src[b * ld_src + k];
    dst[b * ld_dst + k] = accumulate ? dst[b * ld_dst + k] + v : v;
  }
};

// dst[r, c] = src[r, c] converted (rounded to nearest even into a 16-bit type), one thread per
// element of rows x cols (cuda/through_float.h).
template <typename From, typename To>
struct Convert {
  static constexpr bool kSyncs = false;
  int64_t rows, cols;
  const From* src;
  int64_t ld_src;
  To* dst;
  int64_t ld_dst;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t i = ctx.block() * ctx.threads() + ctx.thread();
    if (i >= rows * cols) return;
    const int64_t r = i / cols, c = i % cols;
    dst[r * ld_dst + c] = To(static_cast<float>(src[r * ld_src + c]));
  }
};

// dst[b, k] = row b of the previous step's output (b < prev_rows) or of h0: the h_{t-1} of each
// row, kept for dW_hh.
template <typename T>
struct GatherPrev {
  static constexpr bool kSyncs = false;
  int64_t rows, P;
  const T* prev_out;
  int64_t ld_out, prev_rows;
  const T* h0;
  T* dst;  // [rows, P]

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t k = ctx.block() * ctx.threads() + ctx.thread(), b = ctx.row();
    if (k >= P || b >= rows) return;
    dst[b * P + k] = b < prev_rows ? prev_out[b * ld_out + k] : h0[b * P + k];
  }
};

// dst[i] = src[i] * mask[i] for n elements (dst may be src): dropout between layers.
template <typename T>
struct Multiply {
  static constexpr bool kSyncs = false;
  int64_t n;
  const T* src;
  const T* mask;
  T* dst;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    const int64_t i = ctx.block() * ctx.threads() + ctx.thread();
    if (i < n) dst[i] = src[i] * mask[i];
  }
};

// The block's threads' values summed in shared memory (threads a power of two), one fixed order.
template <typename A, class Ctx>
FASTRNN_HD A block_sum(const Ctx& ctx, A value) {
  A* partial = ctx.template shared<A>();
  partial[ctx.thread()] = value;
  ctx.sync();
  for (int64_t half = ctx.threads() / 2; half > 0; half /= 2) {
    if (ctx.thread() < half) partial[ctx.thread()] += partial[ctx.thread() + half];
    ctx.sync();
  }
  const A sum = partial[0];
  ctx.sync();  // partial is reused by the next call
  return sum;
}

// sums[k] = sum over the n rows of rows[r, k] (the bias gradients): block c sums columns
// c, c + blocks, ...; each thread a strided share of the rows, then a block_sum. Deterministic:
// the same order of additions on every run (no atomics).
template <typename T>
struct ColumnSums {
  static constexpr bool kSyncs = true;
  int64_t n, cols;
  const T* rows;
  int64_t ld;
  T* sums;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    for (int64_t k = ctx.block(); k < cols; k += ctx.blocks()) {
      compute_t<T> partial = 0;
      for (int64_t r = ctx.thread(); r < n; r += ctx.threads()) partial += rows[r * ld + k];
      const compute_t<T> sum = block_sum(ctx, partial);
      if (ctx.thread() == 0) sums[k] = T(sum);
    }
  }
};

// out[0] = the Frobenius norm of `rows` rows of `cols` columns (recorded gradient norms).
template <typename T>
struct RowsNorm {
  static constexpr bool kSyncs = true;
  int64_t rows, cols;
  const T* data;
  int64_t ld;
  float* out;

  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    double partial = 0;
    for (int64_t i = ctx.thread(); i < rows * cols; i += ctx.threads()) {
      const double v = data[(i / cols) * ld + i % cols];
      partial += v * v;
    }
    const double sum = block_sum(ctx, partial);
    if (ctx.thread() == 0) out[0] = static_cast<float>(sqrt(sum));
  }
};

inline constexpr int64_t kReduceThreads = 32;  // threads of a reduction's block (power of 2)

}  // namespace fastrnn::cuda
