// CUDA per-step pointwise kernels over the shared cell math of cells/*.h: one thread per
// (batch row b, hidden unit j) of one time step. The sequence drivers that launch them between
// cuBLAS recurrent GEMMs, as the CPU drivers do, come with the CUDA kernels issue; this file is
// compiled in every CUDA build so that the shared cell math is proven to build for the device.
#pragma once

#include <cstdint>

#include "cells/cells.h"

namespace fastrnn::cuda {

// Row layouts as in the CPU driver (csrc/cpu/rnn_cpu.cpp): x_pre rows [B, ld_x], gh [B, G*H],
// h_prev/h [B, H], c_prev/c [B, ld_c_prev]/[B, ld_c], saved [B, S*H]; nullptr where absent.
template <class Cell, bool kTraining, bool kHasBias, typename scalar_t>
__global__ void forward_step_kernel(int64_t B, int64_t H, const scalar_t* x_pre, int64_t ld_x,
                                    const scalar_t* gh, const scalar_t* b_ih,
                                    const scalar_t* b_hh, const scalar_t* h_prev,
                                    const scalar_t* c_prev, int64_t ld_c_prev, scalar_t* h,
                                    scalar_t* c, int64_t ld_c, scalar_t* saved) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= H || b >= B) return;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
  Cell::template forward<kTraining, kHasBias>(
      j, H, x_pre + b * ld_x, gh + b * GH, b_ih, b_hh, h_prev + b * H,
      c_prev ? c_prev + b * ld_c_prev : nullptr, h + b * H, c ? c + b * ld_c : nullptr,
      saved ? saved + b * SH : nullptr);
}

// dh: [B, H] dL/dh_t from step t+1; a cell with kSplitHiddenGrad (GRU) overwrites it with its
// direct dL/dh_{t-1} part, the others leave it as it was: the driver then adds dgh W_hh to dh
// (GEMM beta 1) for the former and overwrites dh with it (beta 0) for the latter, as the CPU
// driver does. grad_out: [B, H] or nullptr; dc: [B, H] in/out (LSTM); dgx, dgh: [B, G*H], the
// same buffer unless kSplitHiddenGrad.
template <class Cell, typename scalar_t>
__global__ void backward_step_kernel(int64_t B, int64_t H, scalar_t* dh, const scalar_t* grad_out,
                                     scalar_t* dc, const scalar_t* saved, const scalar_t* h_prev,
                                     const scalar_t* h, const scalar_t* c_prev, int64_t ld_c_prev,
                                     scalar_t* dgx, scalar_t* dgh) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= H || b >= B) return;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
  const scalar_t dh_total = dh[b * H + j] + (grad_out ? grad_out[b * H + j] : scalar_t(0));
  Cell::backward(j, H, dh_total, dc ? dc + b * H : nullptr, saved ? saved + b * SH : nullptr,
                 h_prev + b * H, h + b * H, c_prev ? c_prev + b * ld_c_prev : nullptr,
                 dgx + b * GH, dgh + b * GH, dh + b * H);
}

}  // namespace fastrnn::cuda
