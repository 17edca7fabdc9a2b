// The persistent path's kernel bodies (cuda/exec.h's functors, launched cooperatively by
// cuda/driver.h with the shape of cuda/plan.h): one launch runs all T steps of one layer and
// direction. Block k owns hidden units j0 .. j0 + nj - 1 (j0 = k * units) and, with an LSTM
// projection, h units p0 .. p0 + np - 1 (p0 = k * proj_units; without one the h units are the
// hidden units); it keeps the weights of its units in shared memory for all steps and meets the
// other blocks at one grid barrier per step (two with a projection). The cell math is the shared
// Cell::forward / Cell::backward of cells/*.h, through the row structs, as in ForwardStep and
// BackwardStep.
//
// The per-step products (forward W_hh h_{t-1} and, with a projection, W_hr m_t; backward
// dL/dh_{t-1} = dgh W_hh and dL/dm = dL/dh W_hr), by the kernels' Mma parameter:
// - Mma = void: dot products in compute_t<T> (float for float, double for double), FMA in k
//   order from 0, one per thread, the weights in shared memory in T. float64 always; float32
//   where torch.backends.cuda.matmul.allow_tf32 is False (torch's default).
// - Mma = bfloat16 or float16 (the layer's dtype, T = float: cuda/through_float.h runs the
//   16-bit types on float32 copies and passes the original type here), or Mma = float (TF32,
//   where allow_tf32 is True): tensor cores through ctx.mma_tile (wmma, float32 accumulation),
//   by tile_product below. The weights are kept in shared memory in Mma, converted from the
//   float32 copies when the kernel fills it: exact for the 16-bit types (the copies hold 16-bit
//   values), half the bytes of float32; TF32 keeps float32 and rounds in the product. The left
//   operand (h_{t-1}, m_t, dgh_t, dL/dh_t) is rounded to Mma as it is staged in shared memory,
//   16 rows at a time (the step's rows padded with zeros), as the CPU's bfloat16 kernel rounds
//   h_{t-1} for its dot product (cpu/gemm_bf16.h); the running state, the gates and the sums
//   stay float32. Rows and columns are padded to whole 16 x 16 tiles (cuda/plan.h tile_layout).
// cuBLAS (the alternating path, whose 16-bit GEMMs round the same operands) and the CPU drivers
// sum in other orders, so the paths agree to the tolerances of tests/tolerances.py.
//
// Sizes and rows as in core/params.h and kernels.cuh; `layer` is the driver's Layer with
// batch_sizes and offsets copied to the device (its x is not read: W_ih x of every row is one
// GEMM before the launch, as in the alternating path).
#pragma once

#include <cstdint>
#include <type_traits>

#include "cells/cells.h"
#include "core/stack.h"
#include "cuda/exec.h"

namespace fastrnn::cuda {

// The first and count of the units block k owns, of n units in slices of `per_block`.
FASTRNN_HD int64_t slice_size(int64_t n, int64_t block, int64_t per_block) {
  const int64_t left = n - block * per_block;
  return left < 0 ? 0 : (left < per_block ? left : per_block);
}

// The tensor cores' product of a step, run by every thread of the block: out(b, r, value) for
// b < rows (the step's batch rows) and r < n of value = sum_k A[b, k] W[r, k], A[b, k] =
// a(b, k) for k < K rounded to Op, W [round_up(n, 16), w_ld] in shared memory in Op (padded
// with zeros). Per 16 batch rows: the accumulators zeroed, then per chunk of kTileChunk k the
// 16 rows of A staged (zeros past the rows and K) and each warp's tiles of W multiplied in
// (ctx.mma_tile); the warps take the tiles in turn. Barriers between the stages; ends with one,
// so that what `out` wrote is the block's to read.
template <typename Op, class Ctx, class A, class Out>
FASTRNN_HD void tile_product(const Ctx& ctx, int64_t rows, int64_t K, A a, const Op* w,
                             int64_t w_ld, int64_t n, Op* stage, float* acc, int64_t acc_ld,
                             Out out) {
  const int64_t tid = ctx.thread(), nt = ctx.threads(), warps = nt / 32, tiles = (n + 15) / 16;
  const int64_t kp = round_up(K, kTile);
  for (int64_t b0 = 0; b0 < rows; b0 += kTile) {
    for (int64_t i = tid; i < kTile * acc_ld; i += nt) acc[i] = 0;
    for (int64_t k0 = 0; k0 < kp; k0 += kTileChunk) {
      const int64_t kc = kp - k0 < kTileChunk ? kp - k0 : kTileChunk;
      for (int64_t i = tid; i < kTile * kc; i += nt) {
        const int64_t b = b0 + i / kc, k = k0 + i % kc;
        stage[i] = b < rows && k < K ? Op(a(b, k)) : Op(0.0f);
      }
      ctx.sync();
      for (int64_t tile = tid / 32; tile < tiles; tile += warps) {
        ctx.template mma_tile<Op>(acc + tile * kTile, acc_ld, stage, kc,
                                  w + tile * kTile * w_ld + k0, w_ld, kc);
      }
      ctx.sync();
    }
    for (int64_t i = tid; i < kTile * n; i += nt) {
      const int64_t b = b0 + i / n, r = i % n;
      if (b < rows) out(b, r, acc[i / n * acc_ld + r]);
    }
    ctx.sync();
  }
}

// Fills a tensor-core kernel's weights: w[r * ld + k] = Op(at(r, k)) for r < n, k < K, zeros
// elsewhere in [rows, ld].
template <typename Op, class Ctx, class At>
FASTRNN_HD void fill_tiles(const Ctx& ctx, Op* w, int64_t rows, int64_t ld, int64_t n, int64_t K,
                           At at) {
  for (int64_t i = ctx.thread(); i < rows * ld; i += ctx.threads()) {
    const int64_t r = i / ld, k = i % ld;
    w[i] = r < n && k < K ? Op(at(r, k)) : Op(0.0f);
  }
}

template <class Cell, class Flags, typename T, typename Mma = void>
struct PersistentForward {
  static constexpr bool kSyncs = true;
  static constexpr bool kTensorCores = !std::is_void_v<Mma>;
  using C = compute_t<T>;
  Layer<T> layer;
  int64_t units, proj_units;  // per block (cuda/plan.h)
  const T* x_pre;             // [N, ld_x_pre] W_ih x of every row; may alias layer.saved
  int64_t ld_x_pre;
  C* gh;    // [B, G*H] W_hh h_{t-1} of the step's rows; each block writes and reads its units
  T* h[2];  // [B, P] the running h, double-buffered: step s reads h[s % 2], writes the other
  T* c;     // [B, H] the running c (cell state), in place: each unit its own
  T* m;     // [B, H] the cell's output before the projection, or nullptr (no projection)

  // Shared memory: [G * units, P] rows g * H + j of W_hh (row g * units + jl for unit j0 + jl),
  // then with a projection [proj_units, H] rows p of W_hr; with tensor cores the same rows in
  // Mma, padded (tile_layout), then the staged operand and the accumulators.
  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    constexpr int64_t G = Cell::kGates;
    const int64_t H = layer.H, P = layer.P, GH = G * H, SH = Cell::kSaved * H;
    const int64_t tid = ctx.thread(), nt = ctx.threads();
    const int64_t j0 = ctx.block() * units, nj = slice_size(H, ctx.block(), units);
    const int64_t p0 = ctx.block() * proj_units, np = slice_size(P, ctx.block(), proj_units);
    using W = std::conditional_t<kTensorCores, Mma, T>;
    const TileLayout tl = tile_layout(G, H, P, m != nullptr, false, units, proj_units);
    W* w = ctx.template shared<W>();
    W* w_hr = w + (kTensorCores ? tl.w2_offset() : G * units * P);
    if constexpr (kTensorCores) {
      fill_tiles(ctx, w, tl.w_rows, tl.w_ld, G * units, P, [&](int64_t r, int64_t k) {
        const int64_t g = r / units, jl = r % units;
        return jl < nj ? float(layer.w.w_hh[(g * H + j0 + jl) * P + k]) : 0.0f;
      });
      if (m) {
        fill_tiles(ctx, w_hr, tl.w2_rows, tl.w2_ld, np, H,
                   [&](int64_t r, int64_t k) { return float(layer.w.w_hr[(p0 + r) * H + k]); });
      }
    } else {
      for (int64_t i = tid; i < G * nj * P; i += nt) {
        const int64_t r = i / P, k = i % P, g = r / nj, jl = r % nj;
        w[(g * units + jl) * P + k] = layer.w.w_hh[(g * H + j0 + jl) * P + k];
      }
      if (m) {
        for (int64_t i = tid; i < np * H; i += nt) w_hr[i] = layer.w.w_hr[p0 * H + i];
      }
    }
    W* stage = kTensorCores ? w + tl.stage_offset() : nullptr;
    float* acc = kTensorCores ? reinterpret_cast<float*>(ctx.template shared<unsigned char>() +
                                                         tl.acc_byte_offset(sizeof(W)))
                              : nullptr;
    ctx.sync();

    for (int64_t s = 0; s < layer.T; ++s) {
      const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
      const T* h_prev = h[s % 2];
      T* h_next = h[(s + 1) % 2];
      // W_hh h_{t-1} for this block's units, every gate, the step's rows
      if constexpr (kTensorCores) {
        tile_product(
            ctx, Bt, P, [&](int64_t b, int64_t k) { return float(h_prev[b * P + k]); }, w,
            tl.w_ld, G * units, stage, acc, tl.acc_ld, [&](int64_t b, int64_t r, float v) {
              const int64_t g = r / units, jl = r % units;
              if (jl < nj) gh[b * GH + g * H + j0 + jl] = v;
            });
      } else {
        for (int64_t i = tid; i < Bt * G * nj; i += nt) {
          const int64_t b = i / (G * nj), r = i % (G * nj), g = r / nj, jl = r % nj;
          const T* wr = w + (g * units + jl) * P;
          const T* hr = h_prev + b * P;
          C sum = 0;
          for (int64_t k = 0; k < P; ++k) sum += C(wr[k]) * C(hr[k]);
          gh[b * GH + g * H + j0 + jl] = sum;
        }
        ctx.sync();
      }
      for (int64_t i = tid; i < Bt * nj; i += nt) {
        const int64_t b = i / nj, j = j0 + i % nj;
        ForwardRow<T> row;
        row.x_pre = x_pre + (row0 + b) * ld_x_pre;
        row.h_pre = gh + b * GH;
        row.b_ih = layer.w.b_ih, row.b_hh = layer.w.b_hh;
        row.h_prev = h_prev + b * P;
        if constexpr (Cell::kHasCellState) row.c_prev = row.c = c + b * H;
        row.h = m ? m + b * H : h_next + b * P;
        if constexpr (Flags::kTraining) row.saved = layer.saved + (row0 + b) * SH;
        Cell::template forward<Flags>(j, H, row, layer.options);
        if (!m) layer.out[(row0 + b) * layer.ld_out + j] = h_next[b * P + j];
      }
      if (m) {
        ctx.grid_sync();  // every unit's m of the step written
        if constexpr (kTensorCores) {
          tile_product(
              ctx, Bt, H, [&](int64_t b, int64_t k) { return float(m[b * H + k]); }, w_hr,
              tl.w2_ld, np, stage, acc, tl.acc_ld, [&](int64_t b, int64_t pl, float v) {
                h_next[b * P + p0 + pl] = T(v);
                layer.out[(row0 + b) * layer.ld_out + p0 + pl] = T(v);
              });
        } else {
          for (int64_t i = tid; i < Bt * np; i += nt) {
            const int64_t b = i / np, pl = i % np;
            const T* wr = w_hr + pl * H;
            const T* mr = m + b * H;
            C sum = 0;
            for (int64_t k = 0; k < H; ++k) sum += C(wr[k]) * C(mr[k]);
            h_next[b * P + p0 + pl] = T(sum);
            layer.out[(row0 + b) * layer.ld_out + p0 + pl] = T(sum);
          }
        }
      }
      // rows past the step's keep their h in both buffers (h_n; a reverse packed sequence's h0)
      for (int64_t i = tid; i < (layer.B - Bt) * np; i += nt) {
        const int64_t b = Bt + i / np, p = p0 + i % np;
        h_next[b * P + p] = h_prev[b * P + p];
      }
      ctx.grid_sync();  // h_t of every unit written before any block reads it
    }
  }
};

template <class Cell, class Flags, typename T, typename Mma = void>
struct PersistentBackward {
  static constexpr bool kSyncs = true;
  static constexpr bool kTensorCores = !std::is_void_v<Mma>;
  using C = compute_t<T>;
  Layer<T> layer;
  int64_t units, proj_units;  // per block (cuda/plan.h)
  const T* grad_out;          // [N, ld_grad_out] or nullptr for zero
  int64_t ld_grad_out;
  T* dh;              // [B, P] in dL/dh_n (zero if none), out dL/dh0; in place, each h unit its own
  T* dc;              // [B, H] in dL/dc_n, out dL/dc0 (cell state); in place
  T* dh_rows;         // [N, P] out: the total dL/dh_t of every row (the output's gradient added)
  T* dm;              // [B, H] dL/d(the cell's output before the projection), or nullptr
  T* dgx;             // [N, G*H] out
  T* dgh;             // [N, G*H] out, dgx unless Cell::kSplitHiddenGrad
  T* h_prev_rows;     // [N, P] out: h_{t-1} of every row, for dW_hh
  T* m_rows;          // [N, H] out: the cell's output before the projection, or nullptr
  T* dc_total_rows;   // [N, H] out when Flags::kRecordCellGrad
  bool want_h0;       // else the first step's dL/dh_{t-1} is skipped

  // Shared memory: [h units, G*H] column p of W_hh per h unit p0 + pl (its transpose's rows),
  // then with a projection [units, P] column j of W_hr per unit j0 + jl; with tensor cores the
  // same in Mma, padded (tile_layout), then the staged operand and the accumulators.
  template <class Ctx>
  FASTRNN_HD void operator()(const Ctx& ctx) const {
    constexpr int64_t G = Cell::kGates;
    const int64_t H = layer.H, P = layer.P, GH = G * H, SH = Cell::kSaved * H;
    const int64_t ld_out = layer.ld_out;
    const int64_t tid = ctx.thread(), nt = ctx.threads();
    const int64_t j0 = ctx.block() * units, nj = slice_size(H, ctx.block(), units);
    const int64_t p0 = ctx.block() * proj_units, np = slice_size(P, ctx.block(), proj_units);
    using W = std::conditional_t<kTensorCores, Mma, T>;
    const TileLayout tl = tile_layout(G, H, P, dm != nullptr, true, units, proj_units);
    W* w_t = ctx.template shared<W>();
    W* w_hr_t = w_t + (kTensorCores ? tl.w2_offset() : proj_units * GH);
    if constexpr (kTensorCores) {
      fill_tiles(ctx, w_t, tl.w_rows, tl.w_ld, np, GH,
                 [&](int64_t pl, int64_t k) { return float(layer.w.w_hh[k * P + p0 + pl]); });
      if (dm) {
        fill_tiles(ctx, w_hr_t, tl.w2_rows, tl.w2_ld, nj, P,
                   [&](int64_t jl, int64_t p) { return float(layer.w.w_hr[p * H + j0 + jl]); });
      }
    } else {
      for (int64_t i = tid; i < np * GH; i += nt) {
        const int64_t pl = i / GH, k = i % GH;
        w_t[pl * GH + k] = layer.w.w_hh[k * P + p0 + pl];
      }
      if (dm) {
        for (int64_t i = tid; i < nj * P; i += nt) {
          const int64_t jl = i / P, p = i % P;
          w_hr_t[jl * P + p] = layer.w.w_hr[p * H + j0 + jl];
        }
      }
    }
    W* stage = kTensorCores ? w_t + tl.stage_offset() : nullptr;
    float* acc = kTensorCores ? reinterpret_cast<float*>(ctx.template shared<unsigned char>() +
                                                         tl.acc_byte_offset(sizeof(W)))
                              : nullptr;
    ctx.sync();

    for (int64_t s = layer.T - 1; s >= 0; --s) {
      const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
      const int64_t prev = layer.prev_of(t), prev_rows = layer.rows_from_prev(t);
      const int64_t prev_row0 = prev >= 0 ? layer.offsets[prev] : 0;
      // this block's h units: the total dL/dh_t, and h_{t-1} for dW_hh
      for (int64_t i = tid; i < Bt * np; i += nt) {
        const int64_t b = i / np, p = p0 + i % np, r = row0 + b;
        const T from_out = grad_out ? grad_out[r * ld_grad_out + p] : T(0);
        dh_rows[r * P + p] = dh[b * P + p] + from_out;
        h_prev_rows[r * P + p] = b < prev_rows ? layer.out[(prev_row0 + b) * ld_out + p]
                                               : layer.h0[b * P + p];
      }
      if (dm) {
        ctx.grid_sync();  // dL/dm needs every h unit's dL/dh_t
        if constexpr (kTensorCores) {
          tile_product(
              ctx, Bt, P, [&](int64_t b, int64_t k) { return float(dh_rows[(row0 + b) * P + k]); },
              w_hr_t, tl.w2_ld, nj, stage, acc, tl.acc_ld,
              [&](int64_t b, int64_t jl, float v) { dm[b * H + j0 + jl] = T(v); });
        }
      } else {
        ctx.sync();
      }
      // this block's units: dL/dm (projection; with tensor cores made above), then the cell
      for (int64_t i = tid; i < Bt * nj; i += nt) {
        const int64_t b = i / nj, jl = i % nj, j = j0 + jl, r = row0 + b;
        if constexpr (!kTensorCores) {
          if (dm) {
            const T* wr = w_hr_t + jl * P;
            const T* dr = dh_rows + r * P;
            C sum = 0;
            for (int64_t k = 0; k < P; ++k) sum += C(wr[k]) * C(dr[k]);
            dm[b * H + j] = T(sum);
          }
        }
        const bool from_prev = b < prev_rows;
        BackwardRow<T> row;
        row.dh = dm ? dm + b * H : dh_rows + r * P;
        row.saved = layer.saved ? layer.saved + r * SH : nullptr;
        row.h_prev = from_prev ? layer.out + (prev_row0 + b) * ld_out : layer.h0 + b * P;
        row.h = layer.out + r * ld_out;
        if constexpr (Cell::kHasCellState) {
          row.dc = dc + b * H;
          row.c_prev = from_prev ? Cell::saved_c(layer.saved + (prev_row0 + b) * SH, H)
                                 : layer.c0 + b * H;
          if constexpr (Flags::kRecordCellGrad) row.dc_total = dc_total_rows + r * H;
        }
        row.dx_pre = dgx + r * GH;
        row.dh_pre = dgh + r * GH;
        row.dh_prev_direct = dh + b * P;  // read above into dh_rows
        Cell::template backward<Flags>(j, H, row, layer.options);
        if constexpr (Cell::kHasProjection) {
          if (m_rows) m_rows[r * H + j] = Cell::unprojected_h(j, H, row.saved);
        }
      }
      ctx.grid_sync();  // dL/dh_{t-1} needs every unit's dL/d(W_hh h_{t-1})
      if (s > 0 || want_h0) {
        // dL/dh_{t-1} = dgh_t W_hh for this block's h units, added to the direct part the
        // GRU left in dh
        if constexpr (kTensorCores) {
          tile_product(
              ctx, Bt, GH, [&](int64_t b, int64_t k) { return float(dgh[(row0 + b) * GH + k]); },
              w_t, tl.w_ld, np, stage, acc, tl.acc_ld, [&](int64_t b, int64_t pl, float v) {
                T* d = dh + b * P + p0 + pl;
                *d = Cell::kSplitHiddenGrad ? T(float(*d) + v) : T(v);
              });
        } else {
          for (int64_t i = tid; i < Bt * np; i += nt) {
            const int64_t b = i / np, pl = i % np;
            const T* wr = w_t + pl * GH;
            const T* gr = dgh + (row0 + b) * GH;
            C sum = Cell::kSplitHiddenGrad ? C(dh[b * P + p0 + pl]) : C(0);
            for (int64_t k = 0; k < GH; ++k) sum += C(gr[k]) * C(wr[k]);
            dh[b * P + p0 + pl] = T(sum);
          }
        }
      }
      ctx.sync();  // the next step reads this block's dh; no other block does before its sync
    }
  }
};

}  // namespace fastrnn::cuda
