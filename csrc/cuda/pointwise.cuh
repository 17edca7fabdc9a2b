// CUDA per-step pointwise kernels over the shared cell math of cells/*.h: one thread per
// (batch row b, hidden unit j) of one time step, filling the cell's row structs (cells/rows.h)
// exactly as the CPU driver (cpu/rnn_cpu.cpp) does. The sequence drivers that launch them
// between cuBLAS recurrent GEMMs come with the CUDA kernels issue; this file is compiled in
// every CUDA build so that the shared cell math is proven to build for the device.
#pragma once

#include <cstdint>

#include "cells/cells.h"

namespace fastrnn::cuda {

// One step's rows, B active batch rows of H units (P: the size of h). Leading dimensions in
// elements; nullptr where absent.
template <typename scalar_t>
struct ForwardStep {
  int64_t B, H;
  const scalar_t* x_pre;  // [B, ld_x_pre] W_ih x
  int64_t ld_x_pre;
  const scalar_t* h_pre;  // [B, G*H] W_hh h_{t-1}
  const scalar_t* b_ih;   // [G*H] or nullptr
  const scalar_t* b_hh;
  const scalar_t* h_prev;  // [B, P]
  int64_t ld_h_prev;
  scalar_t* c;  // [B, H] c_{t-1} in, c_t out (cell state)
  scalar_t* h;  // [B, ld_h] the cell's output: h_t, or m before an LSTM projection
  int64_t ld_h;
  scalar_t* saved;  // [B, S*H] when training
  CellOptions options;
};

// dh: [B, ld_dh] dL/d(the cell's output), the output's gradient already added (and, with a
// projection, already multiplied by W_hr), as in the CPU driver. A cell with kSplitHiddenGrad
// (GRU) writes its direct part of dL/dh_{t-1} to dh_prev_direct; the driver then adds dgh W_hh
// to it (GEMM beta 1), and for the others overwrites it (beta 0).
template <typename scalar_t>
struct BackwardStep {
  int64_t B, H;
  const scalar_t* dh;  // [B, ld_dh]
  int64_t ld_dh;
  scalar_t* dc;              // [B, H] in/out (cell state)
  const scalar_t* saved;     // [B, S*H]
  const scalar_t* h_prev;    // [B, ld_h_prev]
  int64_t ld_h_prev;
  const scalar_t* h;         // [B, ld_h] h_t
  int64_t ld_h;
  const scalar_t* c_prev;    // [B, H] (cell state)
  scalar_t* dgx;             // [B, G*H]
  scalar_t* dgh;             // [B, G*H], the same as dgx unless kSplitHiddenGrad
  scalar_t* dh_prev_direct;  // [B, ld_h_prev]
  CellOptions options;
};

template <class Cell, class Flags, typename scalar_t>
__global__ void forward_step_kernel(ForwardStep<scalar_t> s) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= s.H || b >= s.B) return;
  const int64_t GH = Cell::kGates * s.H, SH = Cell::kSaved * s.H;
  ForwardRow<scalar_t> row;
  row.x_pre = s.x_pre + b * s.ld_x_pre;
  row.h_pre = s.h_pre + b * GH;
  row.b_ih = s.b_ih, row.b_hh = s.b_hh;
  row.h_prev = s.h_prev + b * s.ld_h_prev;
  if constexpr (Cell::kHasCellState) row.c_prev = row.c = s.c + b * s.H;
  row.h = s.h + b * s.ld_h;
  if constexpr (Flags::kTraining) row.saved = s.saved + b * SH;
  Cell::template forward<Flags>(j, s.H, row, s.options);
}

template <class Cell, class Flags, typename scalar_t>
__global__ void backward_step_kernel(BackwardStep<scalar_t> s) {
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t b = blockIdx.y;
  if (j >= s.H || b >= s.B) return;
  const int64_t GH = Cell::kGates * s.H, SH = Cell::kSaved * s.H;
  BackwardRow<scalar_t> row;
  row.dh = s.dh + b * s.ld_dh;
  row.saved = s.saved ? s.saved + b * SH : nullptr;
  row.h_prev = s.h_prev + b * s.ld_h_prev;
  row.h = s.h + b * s.ld_h;
  if constexpr (Cell::kHasCellState) {
    row.dc = s.dc + b * s.H;
    row.c_prev = s.c_prev + b * s.H;
  }
  row.dx_pre = s.dgx + b * GH;
  row.dh_pre = s.dgh + b * GH;
  row.dh_prev_direct = s.dh_prev_direct + b * s.ld_h_prev;
  Cell::template backward<Flags>(j, s.H, row, s.options);
}

}  // namespace fastrnn::cuda
