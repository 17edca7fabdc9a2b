#include "cpu/rnn_cpu.h"

#include <algorithm>
#include <vector>

#include "cells/cells.h"
#include "cpu/blas.h"

namespace fastrnn::cpu {
namespace {

// Row b of a [B, ld] matrix, or nullptr for an absent one (c of the cells without a cell state).
template <typename P>
P* row(P* base, int64_t ld, int64_t b) {
  return base ? base + b * ld : nullptr;
}

// out[T*B rows, GH] (leading dimension ld_out) = x[T, B, I] W^T, W: [GH, I]. One GEMM over all
// steps when the time stride lets the rows of x form one matrix, else one GEMM per step.
template <typename scalar_t>
void project_input(const scalar_t* x, int64_t stride_t, int64_t stride_b, int64_t T, int64_t B,
                   int64_t I, const scalar_t* w, int64_t GH, scalar_t* out, int64_t ld_out) {
  if (stride_t == B * stride_b) {
    gemm<scalar_t>(false, true, T * B, GH, I, 1, x, stride_b, w, I, 0, out, ld_out);
    return;
  }
  for (int64_t t = 0; t < T; ++t) {
    gemm<scalar_t>(false, true, B, GH, I, 1, x + t * stride_t, stride_b, w, I, 0,
                   out + t * B * ld_out, ld_out);
  }
}

// grad_w[GH, I] = sum_t d[t]^T x[t]: the transpose of project_input's product, same layouts.
template <typename scalar_t>
void weight_grad_input(const scalar_t* d, int64_t ld_d, const scalar_t* x, int64_t stride_t,
                       int64_t stride_b, int64_t T, int64_t B, int64_t I, int64_t GH,
                       scalar_t* grad_w) {
  if (stride_t == B * stride_b) {
    gemm<scalar_t>(true, false, GH, I, T * B, 1, d, ld_d, x, stride_b, 0, grad_w, I);
    return;
  }
  for (int64_t t = 0; t < T; ++t) {
    gemm<scalar_t>(true, false, GH, I, B, 1, d + t * B * ld_d, ld_d, x + t * stride_t, stride_b,
                   t == 0 ? 0 : 1, grad_w, I);
  }
}

// out[n] = sum over rows of d[rows, n].
template <typename scalar_t>
void column_sums(const scalar_t* d, int64_t rows, int64_t n, scalar_t* out) {
  std::fill(out, out + n, scalar_t(0));
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* dr = d + r * n;
    for (int64_t k = 0; k < n; ++k) out[k] += dr[k];
  }
}

template <class Cell, typename scalar_t>
void forward_impl(const ForwardParams<scalar_t>& p) {
  const int64_t T = p.T, B = p.B, H = p.H;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
  const bool training = p.saved != nullptr;

  // W_ih x for every step. When training, it goes straight into the saved rows, which the cell
  // then overwrites in place with its activations: no separate buffer of T*B*G*H.
  std::vector<scalar_t> gx_buffer;
  scalar_t* gx = p.saved;
  int64_t ld_gx = SH;
  if (!training) {
    gx_buffer.resize(T * B * GH);
    gx = gx_buffer.data();
    ld_gx = GH;
  }
  project_input(p.x, p.x_stride_t, p.x_stride_b, T, B, p.I, p.w_ih, GH, gx, ld_gx);

  std::vector<scalar_t> gh(B * GH);  // W_hh h_{t-1} of the current step
  // c_t lives in the saved rows when training, else in c_n, updated in place step after step.
  const scalar_t* h_prev = p.h0;
  const scalar_t* c_prev = p.c0;
  int64_t ld_c_prev = H;
  scalar_t* c = nullptr;
  int64_t ld_c = H;

  bool_switch(training, [&](auto kTraining) {
    bool_switch(p.b_ih != nullptr, [&](auto kHasBias) {
      for (int64_t t = 0; t < T; ++t) {
        gemm<scalar_t>(false, true, B, GH, H, 1, h_prev, H, p.w_hh, H, 0, gh.data(), GH);
        scalar_t* h = p.output + t * B * H;
        scalar_t* saved_t = kTraining ? p.saved + t * B * SH : nullptr;
        if constexpr (Cell::kHasCellState) {
          c = kTraining ? saved_t + Cell::kSavedCellSlot * H : p.c_n;
          ld_c = kTraining ? SH : H;
        }
        for (int64_t b = 0; b < B; ++b) {
          const scalar_t* x_row = gx + (t * B + b) * ld_gx;
          const scalar_t* gh_row = gh.data() + b * GH;
          const scalar_t* h_prev_row = h_prev + b * H;
          const scalar_t* c_prev_row = row(c_prev, ld_c_prev, b);
          scalar_t* h_row = h + b * H;
          scalar_t* c_row = row(c, ld_c, b);
          scalar_t* saved_row = row(saved_t, SH, b);
          for (int64_t j = 0; j < H; ++j) {
            Cell::template forward<kTraining, kHasBias>(j, H, x_row, gh_row, p.b_ih, p.b_hh,
                                                        h_prev_row, c_prev_row, h_row, c_row,
                                                        saved_row);
          }
        }
        h_prev = h;
        c_prev = c;
        ld_c_prev = ld_c;
      }
    });
  });

  std::copy(h_prev, h_prev + B * H, p.h_n);
  if constexpr (Cell::kHasCellState) {
    if (training) {  // inference already left c_T in c_n
      for (int64_t b = 0; b < B; ++b) std::copy(c + b * ld_c, c + b * ld_c + H, p.c_n + b * H);
    }
  }
}

template <class Cell, typename scalar_t>
void backward_impl(const BackwardParams<scalar_t>& p) {
  const int64_t T = p.T, B = p.B, I = p.I, H = p.H;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;

  // dL/d(pre-activations) of every step: of W_ih x (dgx) and of W_hh h_{t-1} (dgh), which are
  // the same buffer except for the GRU.
  std::vector<scalar_t> dgx(T * B * GH);
  std::vector<scalar_t> dgh_buffer(Cell::kSplitHiddenGrad ? T * B * GH : 0);
  scalar_t* dgh = Cell::kSplitHiddenGrad ? dgh_buffer.data() : dgx.data();

  // dL/dh_t and dL/dc_t flowing back from step t+1
  std::vector<scalar_t> dh(B * H, scalar_t(0));
  std::vector<scalar_t> dc(Cell::kHasCellState ? B * H : 0, scalar_t(0));
  if (p.grad_h_n) std::copy(p.grad_h_n, p.grad_h_n + B * H, dh.begin());
  if (Cell::kHasCellState && p.grad_c_n) std::copy(p.grad_c_n, p.grad_c_n + B * H, dc.begin());

  for (int64_t t = T - 1; t >= 0; --t) {
    const scalar_t* h_prev = t > 0 ? p.output + (t - 1) * B * H : p.h0;
    const scalar_t* h = p.output + t * B * H;
    const scalar_t* saved_t = p.saved ? p.saved + t * B * SH : nullptr;
    const scalar_t* c_prev = nullptr;
    int64_t ld_c_prev = H;
    if constexpr (Cell::kHasCellState) {
      c_prev = t > 0 ? p.saved + (t - 1) * B * SH + Cell::kSavedCellSlot * H : p.c0;
      ld_c_prev = t > 0 ? SH : H;
    }
    const scalar_t* grad_out_t = p.grad_output ? p.grad_output + t * B * H : nullptr;
    for (int64_t b = 0; b < B; ++b) {
      scalar_t* dh_row = dh.data() + b * H;
      scalar_t* dc_row = Cell::kHasCellState ? dc.data() + b * H : nullptr;
      scalar_t* dgx_row = dgx.data() + (t * B + b) * GH;
      scalar_t* dgh_row = dgh + (t * B + b) * GH;
      for (int64_t j = 0; j < H; ++j) {
        const scalar_t dh_total = dh_row[j] + (grad_out_t ? grad_out_t[b * H + j] : scalar_t(0));
        // dh_row doubles as the cell's dh_prev_direct output: dh_total is read before the write
        Cell::backward(j, H, dh_total, dc_row, row(saved_t, SH, b), h_prev + b * H, h + b * H,
                       row(c_prev, ld_c_prev, b), dgx_row, dgh_row, dh_row);
      }
    }
    // dL/dh_{t-1} = dgh_t W_hh, plus the direct path the GRU left in dh (beta = 1)
    gemm<scalar_t>(false, false, B, H, GH, 1, dgh + t * B * GH, GH, p.w_hh, H,
                   Cell::kSplitHiddenGrad ? 1 : 0, dh.data(), H);
  }
  std::copy(dh.begin(), dh.end(), p.grad_h0);
  if constexpr (Cell::kHasCellState) std::copy(dc.begin(), dc.end(), p.grad_c0);

  gemm<scalar_t>(false, false, T * B, I, GH, 1, dgx.data(), GH, p.w_ih, I, 0, p.grad_x, I);
  weight_grad_input(dgx.data(), GH, p.x, p.x_stride_t, p.x_stride_b, T, B, I, GH, p.grad_w_ih);
  // grad W_hh = sum_t dgh_t^T h_{t-1}: h_{-1} = h0, then the output rows 0..T-2 in one GEMM
  gemm<scalar_t>(true, false, GH, H, B, 1, dgh, GH, p.h0, H, 0, p.grad_w_hh, H);
  if (T > 1) {
    gemm<scalar_t>(true, false, GH, H, (T - 1) * B, 1, dgh + B * GH, GH, p.output, H, 1,
                   p.grad_w_hh, H);
  }
  if (p.grad_b_ih) column_sums(dgx.data(), T * B, GH, p.grad_b_ih);
  if (p.grad_b_hh) column_sums(dgh, T * B, GH, p.grad_b_hh);
}

}  // namespace

template <typename scalar_t>
void rnn_forward(CellKind kind, const ForwardParams<scalar_t>& p) {
  visit_cell(kind, [&](auto cell) { forward_impl<decltype(cell), scalar_t>(p); });
}

template <typename scalar_t>
void rnn_backward(CellKind kind, const BackwardParams<scalar_t>& p) {
  visit_cell(kind, [&](auto cell) { backward_impl<decltype(cell), scalar_t>(p); });
}

template void rnn_forward<float>(CellKind, const ForwardParams<float>&);
template void rnn_forward<double>(CellKind, const ForwardParams<double>&);
template void rnn_backward<float>(CellKind, const BackwardParams<float>&);
template void rnn_backward<double>(CellKind, const BackwardParams<double>&);

}  // namespace fastrnn::cpu
