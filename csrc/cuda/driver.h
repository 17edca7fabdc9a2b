// The CUDA layer driver for core/stack.h, written against an Exec (cuda/exec.h) so that it runs
// on a GPU (cuda/rnn_cuda.cu) and under host emulation (cuda/emulator.cpp). Two paths per layer
// and direction, chosen by cuda/plan.h (sizes, device, occupancy; FASTRNN_CUDA_PATH overrides):
// - alternating: forward is W_ih x of all N rows as one GEMM, then per step the recurrent GEMM
//   over the active rows and one ForwardStep kernel (plus the projection GEMM), the state
//   updated in place; backward per step in reverse the output's gradient added, one
//   BackwardStep kernel and the recurrent GEMM;
// - persistent: the same W_ih x GEMM, then one cooperative kernel for all T steps
//   (cuda/persistent.cuh), its blocks keeping their slices of W_hh (W_hr) in shared memory;
//   backward one cooperative kernel too.
// Both then compute the input and weight gradients as whole-sequence GEMMs and the bias
// gradients as deterministic column sums. The sums run in another order than the CPU drivers'
// (cuBLAS's, the persistent kernels' dot products, the column sums'), so results agree to the
// tolerances of tests/tolerances.py, not bitwise.
//
// Operand: the layer's own dtype where scalar_t is a float32 stand-in for it (bfloat16 or
// float16 through cuda/through_float.h), else scalar_t. The persistent kernels multiply on
// tensor cores in it (and float32 as TF32 where exec.allow_tf32()): persistent.cuh's Mma. Every
// GEMM multiplies Operand too (exec.gemm; for the 16-bit types its 16-bit overload, float32
// sums): the weights and the first layer's input are the stack's own 16-bit tensors (`source`,
// read through layer.index), and the float32 rows the driver made (h_{t-1}, m, dL/dh, the
// gates' gradients, h_{t-1} of every row, m of every row, an inner layer's input) are rounded to
// Operand right before the product, as the CPU's bfloat16 kernels round theirs (cpu/gemm_bf16.h,
// rnn_cpu.cpp bf16_weight_grads).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>
#include <utility>

#include "cells/cells.h"
#include "core/stack.h"
#include "cuda/exec.h"
#include "cuda/kernels.cuh"
#include "cuda/persistent.cuh"
#include "cuda/plan.h"

namespace fastrnn::cuda {

template <class Exec, typename scalar_t, typename Operand = scalar_t>
class Driver {
  static constexpr bool kRounds = !std::is_same_v<Operand, scalar_t>;  // a 16-bit stack

 public:
  explicit Driver(Exec& exec) : exec_(exec) {}
  // A 16-bit stack through float32 (cuda/through_float.h): `source` its own params, whose weights
  // and input the GEMMs read.
  Driver(Exec& exec, const RnnParams<Operand>& source)
    requires kRounds
      : exec_(exec), source_(&source) {}

  auto buffer(int64_t n) const { return exec_.template buffer<scalar_t>(n); }

  void mask(const scalar_t* src, const scalar_t* mask, int64_t n, scalar_t* dst) const {
    exec_.launch(Multiply<scalar_t>{n, src, mask, dst}, per_unit(n, 1));
  }

  template <class Cell>
  void layer_forward(const Layer<scalar_t>& layer) const {
    const int64_t B = layer.B, N = layer.N, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const bool training = layer.saved != nullptr;
    const bool project = layer.w.w_hr != nullptr;
    const LayerWeights<Operand> w = gemm_weights(layer);
    // W_ih x of every row; when training straight into the saved rows, which the cell then
    // overwrites in place with what it saves (as the CPU driver does)
    const auto gx_buffer = buffer(training ? 0 : N * GH);
    scalar_t* gx = training ? layer.saved : gx_buffer.get();
    const int64_t ld_gx = training ? SH : GH;
    gemm(false, true, N, GH, layer.I, gemm_input(layer).data, layer.ldx, w.w_ih, layer.I, 0, gx,
         ld_gx);

    // h twice: the persistent path's two buffers taking turns (the alternating path uses one)
    const auto h = buffer(2 * B * P), c = buffer(Cell::kHasCellState ? B * H : 0);
    const auto m = buffer(project ? B * H : 0);
    exec_.copy(h.get(), layer.h0, B * P);
    exec_.copy(h.get() + B * P, layer.h0, B * P);
    if constexpr (Cell::kHasCellState) exec_.copy(c.get(), layer.c0, B * H);
    const scalar_t* h_last = h.get();
    bool_switch(training, [&](auto kTraining) {
      bool_switch(layer.w.b_ih != nullptr, [&](auto kHasBias) {
        using Flags = CellFlags<decltype(kTraining)::value, decltype(kHasBias)::value>;
        const bool persistent = with_mma([&](auto mma) {
          using Persistent = PersistentForward<Cell, Flags, scalar_t, typename decltype(mma)::type>;
          const auto plan = persistent_plan<Persistent, Cell>(layer, false);
          if (!plan) return false;
          const auto steps = steps_on_device(layer);
          const auto gh = exec_.template buffer<compute_t<scalar_t>>(B * GH);
          Persistent kernel{on_device(layer, steps.get()), plan->units, plan->proj_units, gx,
                            ld_gx, gh.get(), {h.get(), h.get() + B * P}, c.get(),
                            project ? m.get() : nullptr};
          exec_.launch_cooperative(kernel, cooperative_launch(*plan));
          return true;
        });
        if (persistent) {
          h_last = h.get() + (layer.T % 2) * B * P;
          return;
        }
        const auto gh = buffer(B * GH);
        const auto row_stage = stage(B * std::max(P, H));  // h or m, rounded
        for (int64_t s = 0; s < layer.T; ++s) {
          const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
          gemm(false, true, Bt, GH, P, rounded(h.get(), Bt, P, P, row_stage.get()), P, w.w_hh, P,
               0, gh.get(), GH);
          ForwardStep<Cell, Flags, scalar_t> step{
              Bt, H, gx + row0 * ld_gx, ld_gx, gh.get(), layer.w.b_ih, layer.w.b_hh, h.get(), P,
              c.get(), project ? m.get() : h.get(), project ? H : P,
              training ? layer.saved + row0 * SH : nullptr, layer.options};
          exec_.launch(step, per_unit(H, Bt));
          if (project) {
            gemm(false, true, Bt, P, H, rounded(m.get(), Bt, H, H, row_stage.get()), H, w.w_hr, H,
                 0, h.get(), P);
          }
          copy_rows(h.get(), P, Bt, P, layer.out + row0 * layer.ld_out, layer.ld_out, false);
        }
      });
    });
    exec_.copy(layer.h_n, h_last, B * P);
    if constexpr (Cell::kHasCellState) exec_.copy(layer.c_n, c.get(), B * H);
  }

  template <class Cell>
  void layer_backward(const Layer<scalar_t>& layer, const LayerGradIO<scalar_t>& g) const {
    const int64_t B = layer.B, N = layer.N, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const bool project = layer.w.w_hr != nullptr;
    const LayerWeights<Operand> w = gemm_weights(layer);
    const bool record = g.h_norms != nullptr;
    const auto dgx = buffer(N * GH), dgh_buffer = buffer(Cell::kSplitHiddenGrad ? N * GH : 0);
    scalar_t* dgh = Cell::kSplitHiddenGrad ? dgh_buffer.get() : dgx.get();
    const auto h_prev_rows = buffer(N * P);  // h_{t-1} of every row, for dW_hh
    const auto dh = buffer(B * P), dc = buffer(Cell::kHasCellState ? B * H : 0);
    const auto dm = buffer(project ? B * H : 0), dh_rows = buffer(project ? N * P : 0);
    const auto m_rows = buffer(project ? N * H : 0);
    const auto dc_total = buffer(record && Cell::kHasCellState ? B * H : 0);
    if (g.grad_h_n) {
      exec_.copy(dh.get(), g.grad_h_n, B * P);
    } else {
      exec_.zero(dh.get(), B * P);
    }
    if constexpr (Cell::kHasCellState) {
      if (g.grad_c_n) {
        exec_.copy(dc.get(), g.grad_c_n, B * H);
      } else {
        exec_.zero(dc.get(), B * H);
      }
    }
    const bool want_h0 = g.grad_h0 != nullptr;
    bool_switch(record, [&](auto kRecord) {
      using Flags = BackwardFlags<decltype(kRecord)::value>;
      const bool persistent = with_mma([&](auto mma) {
        using Persistent = PersistentBackward<Cell, Flags, scalar_t, typename decltype(mma)::type>;
        const auto plan = persistent_plan<Persistent, Cell>(layer, true);
        if (!plan) return false;
        const auto steps = steps_on_device(layer);
        const auto dh_all = buffer(project ? 0 : N * P);  // with a projection: dh_rows
        const auto dc_total_rows = buffer(record && Cell::kHasCellState ? N * H : 0);
        scalar_t* dh_total = project ? dh_rows.get() : dh_all.get();
        Persistent kernel{on_device(layer, steps.get()), plan->units, plan->proj_units,
                          g.grad_out, g.ld_grad_out, dh.get(), dc.get(), dh_total,
                          project ? dm.get() : nullptr, dgx.get(), dgh, h_prev_rows.get(),
                          project ? m_rows.get() : nullptr, dc_total_rows.get(), want_h0};
        exec_.launch_cooperative(kernel, cooperative_launch(*plan));
        for (int64_t t = 0; record && t < layer.T; ++t) {
          const int64_t Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
          norm(dh_total + row0 * P, P, Bt, P, g.h_norms + t);
          if constexpr (Cell::kHasCellState) {
            norm(dc_total_rows.get() + row0 * H, H, Bt, H, g.c_norms + t);
          }
        }
        return true;
      });
      if (persistent) return;
      const auto row_stage = stage(B * std::max(P, GH));  // dL/dh or dgh, rounded
      for (int64_t s = layer.T - 1; s >= 0; --s) {
        const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
        if (g.grad_out) {
          copy_rows(g.grad_out + row0 * g.ld_grad_out, g.ld_grad_out, Bt, P, dh.get(), P, true);
        }
        if (record) norm(dh.get(), P, Bt, P, g.h_norms + t);
        const scalar_t* dh_cell = dh.get();
        int64_t ld_dh_cell = P;
        if (project) {
          copy_rows(dh.get(), P, Bt, P, dh_rows.get() + row0 * P, P, false);
          gemm(false, false, Bt, H, P, rounded(dh.get(), Bt, P, P, row_stage.get()), P, w.w_hr,
               H, 0, dm.get(), H);
          dh_cell = dm.get(), ld_dh_cell = H;
        }
        const int64_t prev = layer.prev_of(t), prev_rows = layer.rows_from_prev(t);
        const int64_t prev_row0 = prev >= 0 ? layer.offsets[prev] : 0;
        const scalar_t* prev_out = layer.out + prev_row0 * layer.ld_out;
        exec_.launch(GatherPrev<scalar_t>{Bt, P, prev_out, layer.ld_out, prev_rows, layer.h0,
                                          h_prev_rows.get() + row0 * P},
                     per_unit(P, Bt));
        BackwardStep<Cell, Flags, scalar_t> step{
            Bt, H, P, dh_cell, ld_dh_cell, dc.get(),
            layer.saved ? layer.saved + row0 * SH : nullptr, layer.out + row0 * layer.ld_out,
            prev_out, layer.saved ? layer.saved + prev_row0 * SH : nullptr, layer.ld_out,
            prev_rows, layer.h0, layer.c0, dgx.get() + row0 * GH, dgh + row0 * GH, dh.get(),
            dc_total.get(), project ? m_rows.get() + row0 * H : nullptr, layer.options};
        exec_.launch(step, per_unit(H, Bt));
        if constexpr (decltype(kRecord)::value && Cell::kHasCellState) {
          norm(dc_total.get(), H, Bt, H, g.c_norms + t);
        }
        // dL/dh_{t-1} = dgh_t W_hh, added to the direct part the GRU left in dh
        if (s > 0 || want_h0) {
          gemm(false, false, Bt, P, GH, rounded(dgh + row0 * GH, Bt, GH, GH, row_stage.get()),
               GH, w.w_hh, P, Cell::kSplitHiddenGrad ? 1 : 0, dh.get(), P);
        }
      }
    });
    if (want_h0) exec_.copy(g.grad_h0, dh.get(), B * P);
    if constexpr (Cell::kHasCellState) exec_.copy(g.grad_c0, dc.get(), B * H);
    // the whole-sequence products; a 16-bit stack rounds dgx once for those that read it (dgh
    // is dgx but for the GRU)
    const Staged dgx_in = staged(dgx.get(), N, GH, GH);
    if (g.grad_x) {
      gemm(false, false, N, layer.I, GH, dgx_in.data, GH, w.w_ih, layer.I,
           g.accumulate_grad_x ? 1 : 0, g.grad_x, g.ld_grad_x);
    }
    gemm(true, false, GH, layer.I, N, dgx_in.data, GH, gemm_input(layer).data, layer.ldx, 0,
         g.grads.w_ih, layer.I);
    {
      const Staged dgh_in =
          Cell::kSplitHiddenGrad ? staged(dgh, N, GH, GH) : Staged{Stage{}, dgx_in.data};
      gemm(true, false, GH, P, N, dgh_in.data, GH, staged(h_prev_rows.get(), N, P, P).data, P, 0,
           g.grads.w_hh, P);
    }
    if (g.grads.b_ih) column_sums(dgx.get(), N, GH, g.grads.b_ih);
    if (g.grads.b_hh) column_sums(dgh, N, GH, g.grads.b_hh);
    if (project) {
      gemm(true, false, P, H, N, staged(dh_rows.get(), N, P, P).data, P,
           staged(m_rows.get(), N, H, H).data, H, 0, g.grads.w_hr, H);
    }
  }

 private:
  // f(std::type_identity<Mma>{}) with the persistent kernels' Mma for this layer: the 16-bit
  // Operand; float (TF32) for float32 where torch allows TF32; else void (FMA).
  template <class F>
  bool with_mma(F&& f) const {
    if constexpr (!std::is_same_v<Operand, scalar_t>) {
      return f(std::type_identity<Operand>{});
    } else if constexpr (std::is_same_v<scalar_t, float>) {
      return exec_.allow_tf32() ? f(std::type_identity<float>{}) : f(std::type_identity<void>{});
    } else {
      return f(std::type_identity<void>{});
    }
  }

  // The persistent kernel's launch shape where this layer runs the persistent path (cuda/plan.h),
  // else nothing: the alternating path.
  template <class Kernel, class Cell>
  std::optional<PersistentPlan> persistent_plan(const Layer<scalar_t>& layer,
                                                bool backward) const {
    PersistentSizes sizes;
    sizes.B = layer.B, sizes.H = layer.H, sizes.P = layer.P, sizes.G = Cell::kGates;
    sizes.tensor_cores = Kernel::kTensorCores;
    sizes.element_bytes = sizes.tensor_cores ? sizeof(Operand) : sizeof(scalar_t);
    sizes.project = layer.w.w_hr != nullptr, sizes.backward = backward;
    const DeviceLimits device = exec_.limits();
    const PersistentPlan plan = plan_persistent(sizes, device, [&](int64_t threads, int64_t bytes) {
      return exec_.template resident_blocks<Kernel>(threads, bytes);
    });
    if (!use_persistent(exec_.requested_path(), sizes, plan, device)) return std::nullopt;
    return plan;
  }

  static Launch cooperative_launch(const PersistentPlan& plan) {
    Launch l;
    l.blocks = plan.blocks, l.threads = plan.threads, l.shared_bytes = plan.shared_bytes;
    return l;
  }

  // batch_sizes and offsets (host memory) copied to the device for a persistent kernel, [2, T].
  auto steps_on_device(const Layer<scalar_t>& layer) const {
    auto steps = exec_.template buffer<int64_t>(2 * layer.T);
    exec_.to_device(steps.get(), layer.batch_sizes, layer.T);
    exec_.to_device(steps.get() + layer.T, layer.offsets, layer.T);
    return steps;
  }

  static Layer<scalar_t> on_device(Layer<scalar_t> layer, const int64_t* steps) {
    layer.batch_sizes = steps, layer.offsets = steps + layer.T;
    return layer;
  }

  // Row-major C[M, N] = op(A) op(B) + beta C as cuBLAS's column-major call: a row-major matrix
  // is its transpose in column-major, so C^T = op(B)^T op(A)^T, operands swapped. A and B in
  // Operand (for a 16-bit stack exec.gemm's 16-bit overload, float32 sums).
  void gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, const Operand* A,
            int64_t lda, const Operand* B, int64_t ldb, scalar_t beta, scalar_t* C,
            int64_t ldc) const {
    exec_.gemm(trans_b, trans_a, N, M, K, B, ldb, A, lda, beta, C, ldc);
  }

  // The GEMMs' operands, in Operand. The layer's weights, or a 16-bit stack's own.
  LayerWeights<Operand> gemm_weights(const Layer<scalar_t>& layer) const {
    if constexpr (kRounds) {
      return source_->weights[layer.index];
    } else {
      return layer.w;
    }
  }

  // n elements to round rows into: a 16-bit stack's (none else).
  using Stage = decltype(std::declval<Exec&>().template buffer<Operand>(0));
  Stage stage(int64_t n) const {
    if constexpr (kRounds) {
      return exec_.template buffer<Operand>(n);
    } else {
      return Stage{};
    }
  }

  // rows x cols of src (leading dimension ld) as they are, or for a 16-bit stack rounded to
  // Operand (to nearest even) into stage (the same leading dimension).
  const Operand* rounded(const scalar_t* src, int64_t rows, int64_t cols, int64_t ld,
                         Operand* stage) const {
    if constexpr (kRounds) {
      if (rows * cols > 0) {
        exec_.launch(Convert<scalar_t, Operand>{rows, cols, src, ld, stage, ld},
                     per_unit(rows * cols, 1));
      }
      return stage;
    } else {
      return src;
    }
  }

  // An operand with the stage it was rounded into (empty where it was not).
  struct Staged {
    Stage stage;
    const Operand* data;
  };
  Staged staged(const scalar_t* src, int64_t rows, int64_t cols, int64_t ld) const {
    Stage s = stage(rows * ld);
    const Operand* data = rounded(src, rows, cols, ld, s.get());
    return {std::move(s), data};
  }

  // The layer's input: a 16-bit stack's own x in its first layer (through_float.h makes no
  // float32 copy of it), else the layer's rows (an inner layer's input rounded).
  Staged gemm_input(const Layer<scalar_t>& layer) const {
    if constexpr (kRounds) {
      if (layer.index < source_->D) return {Stage{}, source_->x};
    }
    return staged(layer.x, layer.N, layer.I, layer.ldx);
  }

  void copy_rows(const scalar_t* src, int64_t ld_src, int64_t rows, int64_t cols, scalar_t* dst,
                 int64_t ld_dst, bool accumulate) const {
    exec_.launch(CopyRows<scalar_t>{rows, cols, src, ld_src, dst, ld_dst, accumulate},
                 per_unit(cols, rows));
  }

  void column_sums(const scalar_t* rows, int64_t n, int64_t cols, scalar_t* sums) const {
    Launch l;
    l.blocks = std::min<int64_t>(cols, 1024), l.threads = kReduceThreads;
    l.shared_bytes = kReduceThreads * int64_t{sizeof(compute_t<scalar_t>)};
    exec_.launch(ColumnSums<scalar_t>{n, cols, rows, cols, sums}, l);
  }

  void norm(const scalar_t* data, int64_t ld, int64_t rows, int64_t cols, float* out) const {
    Launch l;
    l.threads = kReduceThreads, l.shared_bytes = kReduceThreads * int64_t{sizeof(double)};
    exec_.launch(RowsNorm<scalar_t>{rows, cols, data, ld, out}, l);
  }

  Exec& exec_;
  const RnnParams<Operand>* source_ = nullptr;  // a 16-bit stack's own params (kRounds)
};

}  // namespace fastrnn::cuda
