#include "cpu/rnn_cpu.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "cells/cells.h"
#include "core/stack.h"
#include "cpu/barrier.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"
#include "cpu/tuning.h"

// Compiled once per instruction set (CMakeLists.txt), each copy in its own namespace
// FASTRNN_CPU_ISA; cpu/dispatch.cpp picks one at run time.
namespace fastrnn::cpu::FASTRNN_CPU_ISA {
namespace {

// sums[g*H + j] += row[g*H + j] for the G gates of units [j0, j1): the bias gradients, summed
// by the thread owning the units as it makes each row of dL/d(pre-activations)
template <typename scalar_t>
void add_units(const scalar_t* row, int64_t G, int64_t H, int64_t j0, int64_t j1,
               scalar_t* sums) {
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t j = j0; j < j1; ++j) sums[g * H + j] += row[g * H + j];
  }
}

// Columns [c0, c1) of `rows` rows.
template <typename scalar_t>
void copy_columns(const scalar_t* src, int64_t ld_src, int64_t rows, int64_t c0, int64_t c1,
                  scalar_t* dst, int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(src + r * ld_src + c0, src + r * ld_src + c1, dst + r * ld_dst + c0);
  }
}

// The part `rank` of [0, n) cut into `size` near-equal parts of whole blocks of `block`.
inline std::pair<int64_t, int64_t> share(int64_t n, int64_t block, int64_t rank, int64_t size) {
  const int64_t blocks = (n + block - 1) / block;
  return {std::min(n, blocks * rank / size * block),
          std::min(n, blocks * (rank + 1) / size * block)};
}

// Whether a layer's step products pack their weights (RecurrentGemm) or read them where they
// are (cpu/tuning.h).
template <typename scalar_t>
bool pack_step_weights(const Layer<scalar_t>& layer) {
  return layer.N > kDirectMaxRows;
}

// Whether a layer's steps compute W_ih x themselves (layer_forward; cpu/tuning.h): always in a
// call too short to pack for, and otherwise where its weights stay in L2 at a batch that keeps
// the packed kernel at its full rate, or the batch is large enough to hide streaming them.
template <class Cell, typename scalar_t>
bool input_in_steps(const Layer<scalar_t>& layer) {
  const int64_t bytes = Cell::kGates * layer.H * (layer.I + layer.P) * int64_t{sizeof(scalar_t)};
  return RecurrentGemm<scalar_t>::kPacked &&
         (!pack_step_weights(layer) || layer.B >= kStepInputStreamingMinBatch ||
          (layer.B >= kStepInputMinBatch && bytes <= kStepWeightBytes));
}

// The CPU's layer driver for core/stack.h: one layer in one direction on a team of threads,
// with the context's threads and whole-sequence GEMM engine.
template <typename scalar_t>
class Driver {
  static constexpr int64_t kUnits = RecurrentGemm<scalar_t>::kPanel;  // units per block

 public:
  explicit Driver(const Context<scalar_t>& ctx) : ctx_(ctx) {}

  auto buffer(int64_t n) const { return scratch<scalar_t>(n); }

  void mask(const scalar_t* src, const scalar_t* mask, int64_t n, scalar_t* dst) const {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i] * mask[i];
  }

  // The steps of a layer run on a team of threads (Threads::team). Each thread owns a share of
  // the hidden units, in blocks of kUnits (RecurrentGemm's unit blocks): per step it multiplies its
  // units' columns of the recurrent product, runs the cell on them, and waits for the others once
  // (the next product reads all of h). With a projection, h = W_hr m needs all of m first: a
  // second wait, and each thread owns a share of h's columns too.
  template <class Cell>
  void layer_forward(const Layer<scalar_t>& layer) const {
    const int64_t B = layer.B, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const CellOptions options = layer.options;  // a local copy: the cell loops read it freely
    const bool training = layer.saved != nullptr;
    const bool project = layer.w.w_hr != nullptr;

    // W_ih x of every row. When training, it goes straight into the saved rows, which the cell
    // then overwrites in place with its activations: no separate buffer of N * G*H. With a small
    // W_ih (input_in_steps) each thread computes its units' columns of the step's rows in the
    // step, before the recurrent product; in inference they then need only B rows.
    const Threads& threads = ctx_.threads;
    const bool fuse_input = input_in_steps<Cell>(layer);
    const auto gx_buffer = scratch<scalar_t>(training ? 0 : (fuse_input ? B : layer.N) * GH);
    scalar_t* gx = training ? layer.saved : gx_buffer.get();
    const int64_t ld_gx = training ? SH : GH;
    const bool gx_per_batch_row = fuse_input && !training;  // gx row b, not row r
    const bool pack = pack_step_weights(layer);
    std::optional<RecurrentGemm<scalar_t>> input;
    if (fuse_input) {
      input.emplace(layer.w.w_ih, GH, layer.I, /*w_transposed=*/false, Cell::kGates, pack);
    } else {
      whole_sequence_gemm(false, true, layer.N, GH, layer.I, layer.x, layer.ldx, layer.w.w_ih,
                          layer.I, 0, gx, ld_gx);
    }

    // The running state: row b holds the latest h (and c) of sequence b. Rows of sequences that
    // have ended keep their last state, which is h_n; rows not yet started hold h0. h is double
    // buffered (the others still read h_{t-1} while a thread writes its columns of h_t); c, gh and
    // m are only touched by the thread owning the unit, in place.
    std::vector<scalar_t> h(layer.h0, layer.h0 + B * P), h_next(B * P);
    std::vector<scalar_t> c;
    if constexpr (Cell::kHasCellState) c.assign(layer.c0, layer.c0 + B * H);
    const auto gh = scratch<scalar_t>(B * GH);  // W_hh h_{t-1} of the active rows
    const auto m = scratch<scalar_t>(project ? B * H : 0);  // the cell's output before W_hr
    std::optional<RecurrentGemm<scalar_t>> projection;  // h = m W_hr^T, in blocks of columns
    if (project) projection.emplace(layer.w.w_hr, P, H, /*w_transposed=*/false, 1, pack);
    const RecurrentGemm<scalar_t> recurrent(layer.w.w_hh, GH, P, /*w_transposed=*/false,
                                            Cell::kGates, pack);
    const int64_t blocks = recurrent.unit_blocks();
    SpinBarrier barrier;

    bool_switch(training, [&](auto kTraining) {
      bool_switch(layer.w.b_ih != nullptr, [&](auto kHasBias) {
        threads.team(std::min(threads.count, blocks), [&](int64_t rank, int64_t size) {
          const auto [j0, j1] = share(H, kUnits, rank, size);  // this thread's units
          const int64_t u0 = j0 / kUnits, u1 = (j1 + kUnits - 1) / kUnits;
          const auto [p0, p1] = project ? share(P, kUnits, rank, size) : std::pair{j0, j1};  // of h
          const int64_t q0 = p0 / kUnits, q1 = (p1 + kUnits - 1) / kUnits;  // as the projection's
          recurrent.pack_units(u0, u1);
          if (input) input->pack_units(u0, u1);
          if (projection) projection->pack_units(q0, q1);
          scalar_t* h_prev = h.data();
          scalar_t* h_cur = h_next.data();
          // gx of the first row of step t
          auto gx_of = [&](int64_t t) {
            return gx + (gx_per_batch_row ? 0 : layer.offsets[t] * ld_gx);
          };
          // W_ih x of step s, this thread's units: it depends on no other thread's work
          auto input_product = [&](int64_t s) {
            const int64_t t = layer.step(s);
            input->multiply_units(u0, u1, layer.batch_sizes[t],
                                  layer.x + layer.offsets[t] * layer.ldx, layer.ldx, gx_of(t),
                                  ld_gx, /*accumulate=*/false);
          };
          if (input) input_product(0);
          for (int64_t s = 0; s < layer.T; ++s) {
            const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
            scalar_t* gx_step = gx_of(t);
            recurrent.multiply_units(u0, u1, Bt, h_prev, P, gh.get(), GH, /*accumulate=*/false);
            for (int64_t b = 0; b < Bt; ++b) {
              const int64_t r = row0 + b;
              scalar_t* h_row = project ? m.get() + b * H : h_cur + b * P;
              scalar_t* c_row = Cell::kHasCellState ? c.data() + b * H : nullptr;
              ForwardRow<scalar_t> row;
              row.x_pre = gx_step + b * ld_gx;
              row.h_pre = gh.get() + b * GH;
              row.b_ih = layer.w.b_ih, row.b_hh = layer.w.b_hh;
              row.h_prev = h_prev + b * P;
              row.c_prev = row.c = c_row;
              row.h = h_row;
              row.saved = kTraining ? layer.saved + r * SH : nullptr;
              // units are independent; in-place rows (saved over gx, c over c_prev) are read
              // before they are written within each unit, so the loop vectorises
#pragma GCC ivdep
              for (int64_t j = j0; j < j1; ++j) {
                Cell::template forward<CellFlags<kTraining, kHasBias>>(j, H, row, options);
              }
            }
            if (project) {
              barrier.wait(size);  // m of every unit
              projection->multiply_units(q0, q1, Bt, m.get(), H, h_cur, P, /*accumulate=*/false);
            }
            copy_columns(h_cur, P, Bt, p0, p1, layer.out + row0 * layer.ld_out, layer.ld_out);
            // rows no longer (or not yet) active keep their state
            copy_columns(h_prev + Bt * P, P, B - Bt, p0, p1, h_cur + Bt * P, P);
            // h_t whole before the next product reads it; meanwhile the next step's input
            // product, which fills the time a thread would spin waiting for a later one
            const int64_t round = barrier.arrive(size);
            if (input && s + 1 < layer.T) input_product(s + 1);
            barrier.await(round);
            std::swap(h_prev, h_cur);
          }
        });
      });
    });
    const std::vector<scalar_t>& h_last = layer.T % 2 == 0 ? h : h_next;
    std::copy(h_last.begin(), h_last.end(), layer.h_n);
    if constexpr (Cell::kHasCellState) std::copy(c.begin(), c.end(), layer.c_n);
  }

  // Backward walks the steps in reverse on a team, like forward: each thread owns a share of the
  // units, runs the cell's backward on them, waits once for the others (the product reads dgh of
  // every unit), then computes its columns of dL/dh_{t-1} = dgh_t W_hh, which are its own units'
  // (with a projection its share of h's columns, and a second wait before dL/dm = dh W_hr).
  template <class Cell>
  void layer_backward(const Layer<scalar_t>& layer, const LayerGradIO<scalar_t>& g) const {
    const int64_t B = layer.B, N = layer.N, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const CellOptions options = layer.options;  // a local copy: the cell loops read it freely
    const bool project = layer.w.w_hr != nullptr;
    const Threads& threads = ctx_.threads;

    // dL/d(pre-activations) of every row: of W_ih x (dgx) and of W_hh h_{t-1} (dgh), the same
    // buffer except for the GRU.
    const auto dgx = scratch<scalar_t>(N * GH);
    const auto dgh_buffer = scratch<scalar_t>(Cell::kSplitHiddenGrad ? N * GH : 0);
    scalar_t* dgh = Cell::kSplitHiddenGrad ? dgh_buffer.get() : dgx.get();
    const auto h_prev_rows = scratch<scalar_t>(N * P);  // h_{t-1} of every row, for dW_hh
    // dL/dh_{t-1} = dgh_t W_hh at every step but the first, whose result only dL/dh0 wants: at T=1
    // without it, no product at all (nor its packing).
    const bool want_h0 = g.grad_h0 != nullptr;
    std::optional<RecurrentGemm<scalar_t>> recurrent;
    const bool pack = pack_step_weights(layer);
    if (layer.T > 1 || want_h0) {
      recurrent.emplace(layer.w.w_hh, P, GH, /*w_transposed=*/true, 1, pack);
    }
    // Where forward computes W_ih x in the steps (input_in_steps), backward computes dL/dx =
    // dgx W_ih in them too, each thread a share of x's columns, for a step whose dgx is whole:
    // while it waits for the others at the next step's barrier.
    const bool want_x = g.grad_x != nullptr;
    std::optional<RecurrentGemm<scalar_t>> input_grad;
    if (want_x && input_in_steps<Cell>(layer)) {
      input_grad.emplace(layer.w.w_ih, layer.I, GH, /*w_transposed=*/true, 1, pack);
    }

    // dL/dh and dL/dc flowing back through the running state, row b for sequence b
    std::vector<scalar_t> dh(B * P, scalar_t(0));
    std::vector<scalar_t> dc(Cell::kHasCellState ? B * H : 0, scalar_t(0));
    if (g.grad_h_n) std::copy(g.grad_h_n, g.grad_h_n + B * P, dh.begin());
    if (Cell::kHasCellState && g.grad_c_n) std::copy(g.grad_c_n, g.grad_c_n + B * H, dc.begin());

    // With a projection h = W_hr m: dL/dm of the active rows, and for the W_hr gradient dL/dh and
    // m of every row.
    const auto dm = scratch<scalar_t>(project ? B * H : 0);
    const auto dh_rows = scratch<scalar_t>(project ? N * P : 0);
    const auto m_rows = scratch<scalar_t>(project ? N * H : 0);
    std::optional<RecurrentGemm<scalar_t>> projection;  // dm = dh W_hr, the units' columns
    if (project) projection.emplace(layer.w.w_hr, H, P, /*w_transposed=*/true, 1, pack);
    SpinBarrier barrier;

    // The bias gradients are the column sums of dgx and dgh; where those are one buffer, b_hh's
    // is a copy of b_ih's, made at the end.
    scalar_t* const db_ih = g.grads.b_ih;
    const bool copy_db = !Cell::kSplitHiddenGrad && db_ih && g.grads.b_hh;
    scalar_t* const db_hh = copy_db ? nullptr : g.grads.b_hh;

    // Recorded gradient norms: each thread's sums of squares of its columns, per step, added in
    // rank order after the steps.
    const bool record = g.h_norms != nullptr;
    const int64_t team = std::min(threads.count, (H + kUnits - 1) / kUnits);
    std::vector<double> squares(record ? 2 * layer.T * team : 0, 0.0);
    const auto dc_total = scratch<scalar_t>(record && Cell::kHasCellState ? B * H : 0);
    const auto sum_squares = [](const scalar_t* rows, int64_t ld, int64_t count, int64_t c0,
                                int64_t c1) {
      double sum = 0;
      for (int64_t b = 0; b < count; ++b) {
        for (int64_t k = c0; k < c1; ++k) {
          const double v = rows[b * ld + k];
          sum += v * v;
        }
      }
      return sum;
    };

    bool_switch(record, [&](auto kRecord) {
      threads.team(team, [&](int64_t rank, int64_t size) {
        const auto [j0, j1] = share(H, kUnits, rank, size);  // this thread's units
        const int64_t u0 = j0 / kUnits, u1 = (j1 + kUnits - 1) / kUnits;
        // and its columns of dh: its units, or with a projection a share of P
        const auto [p0, p1] = project ? share(P, kUnits, rank, size) : std::pair{j0, j1};
        const int64_t q0 = p0 / kUnits, q1 = (p1 + kUnits - 1) / kUnits;  // as the product's
        const auto [i0, i1] = share(layer.I, kUnits, rank, size);  // and of dL/dx
        const int64_t v0 = i0 / kUnits, v1 = (i1 + kUnits - 1) / kUnits;
        if (recurrent) recurrent->pack_units(q0, q1);
        if (projection) projection->pack_units(u0, u1);
        if (input_grad) input_grad->pack_units(v0, v1);
        auto input_grad_product = [&](int64_t s) {  // dL/dx of step s, this thread's columns
          const int64_t t = layer.step(s), row0 = layer.offsets[t];
          input_grad->multiply_units(v0, v1, layer.batch_sizes[t], dgx.get() + row0 * GH, GH,
                                     g.grad_x + row0 * g.ld_grad_x, g.ld_grad_x,
                                     g.accumulate_grad_x);
        };
        for (scalar_t* db : {db_ih, db_hh}) {
          if (!db) continue;
          for (int64_t k = 0; k < Cell::kGates; ++k) {
            std::fill(db + k * H + j0, db + k * H + j1, scalar_t(0));
          }
        }
        for (int64_t s = layer.T - 1; s >= 0; --s) {
          const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
          if (g.grad_out) {
            for (int64_t b = 0; b < Bt; ++b) {
              const scalar_t* go = g.grad_out + (row0 + b) * g.ld_grad_out;
              for (int64_t k = p0; k < p1; ++k) dh[b * P + k] += go[k];
            }
          }
          if constexpr (decltype(kRecord)::value) {  // dL/dh_t whole: from the output and t+1
            squares[(t * team + rank) * 2] = sum_squares(dh.data(), P, Bt, p0, p1);
          }
          const scalar_t* dh_cell = dh.data();  // dL/d(the cell's output), [Bt, H]
          if (project) {
            copy_columns(dh.data(), P, Bt, p0, p1, dh_rows.get() + row0 * P, P);
            barrier.wait(size);  // dh of every column
            projection->multiply_units(u0, u1, Bt, dh.data(), P, dm.get(), H, /*accumulate=*/false);
            dh_cell = dm.get();
          }
          for (int64_t b = 0; b < Bt; ++b) {
            const int64_t r = row0 + b;
            const int64_t prev = layer.prev_step(t, b);
            const int64_t prev_row = prev >= 0 ? layer.offsets[prev] + b : -1;
            const scalar_t* h_prev =
                prev >= 0 ? layer.out + prev_row * layer.ld_out : layer.h0 + b * P;
            std::copy(h_prev + p0, h_prev + p1, h_prev_rows.get() + r * P + p0);
            const scalar_t* saved_row = layer.saved ? layer.saved + r * SH : nullptr;
            BackwardRow<scalar_t> row;
            row.dh = dh_cell + b * H;
            row.saved = saved_row;
            row.h_prev = h_prev;
            row.h = layer.out + r * layer.ld_out;
            if constexpr (Cell::kHasCellState) {
              row.dc = dc.data() + b * H;
              row.c_prev =
                  prev >= 0 ? Cell::saved_c(layer.saved + prev_row * SH, H) : layer.c0 + b * H;
              if constexpr (decltype(kRecord)::value) row.dc_total = dc_total.get() + b * H;
            }
            row.dx_pre = dgx.get() + r * GH;
            row.dh_pre = dgh + r * GH;
            // dh's row doubles as the GRU's dh_prev_direct output: each unit reads its value first
            row.dh_prev_direct = dh.data() + b * P;
#pragma GCC ivdep
            for (int64_t j = j0; j < j1; ++j) {
              Cell::template backward<BackwardFlags<decltype(kRecord)::value>>(j, H, row, options);
            }
            if (db_ih) add_units(dgx.get() + r * GH, Cell::kGates, H, j0, j1, db_ih);
            if (db_hh) add_units(dgh + r * GH, Cell::kGates, H, j0, j1, db_hh);
            if constexpr (Cell::kHasProjection) {
              if (project) {
                for (int64_t j = j0; j < j1; ++j) {
                  m_rows[r * H + j] = Cell::unprojected_h(j, H, saved_row);
                }
              }
            }
          }
          if constexpr (decltype(kRecord)::value && Cell::kHasCellState) {
            squares[(t * team + rank) * 2 + 1] = sum_squares(dc_total.get(), H, Bt, j0, j1);
          }
          const int64_t round = barrier.arrive(size);  // dgh (and dgx) of every unit
          if (input_grad && s + 1 < layer.T) input_grad_product(s + 1);
          barrier.await(round);
          // dL/dh_{t-1} = dgh_t W_hh, plus the direct path the GRU left in dh
          if (s > 0 || want_h0) {
            recurrent->multiply_units(q0, q1, Bt, dgh + row0 * GH, GH, dh.data(), P,
                                      /*accumulate=*/Cell::kSplitHiddenGrad);
          }
        }
        if (input_grad) input_grad_product(0);
      });
    });
    if (record) {
      for (int64_t t = 0; t < layer.T; ++t) {
        double h_sum = 0, c_sum = 0;
        for (int64_t r = 0; r < team; ++r) {
          h_sum += squares[(t * team + r) * 2];
          c_sum += squares[(t * team + r) * 2 + 1];
        }
        g.h_norms[t] = static_cast<float>(std::sqrt(h_sum));
        if constexpr (Cell::kHasCellState) g.c_norms[t] = static_cast<float>(std::sqrt(c_sum));
      }
    }
    if (want_h0) std::copy(dh.begin(), dh.end(), g.grad_h0);
    if constexpr (Cell::kHasCellState) std::copy(dc.begin(), dc.end(), g.grad_c0);

    if (want_x && !input_grad) {
      whole_sequence_gemm(false, false, N, layer.I, GH, dgx.get(), GH, layer.w.w_ih, layer.I,
                            g.accumulate_grad_x ? 1 : 0, g.grad_x, g.ld_grad_x);
    }
    whole_sequence_gemm(true, false, GH, layer.I, N, dgx.get(), GH, layer.x, layer.ldx, 0,
                        g.grads.w_ih, layer.I);
    whole_sequence_gemm(true, false, GH, P, N, dgh, GH, h_prev_rows.get(), P, 0, g.grads.w_hh,
                          P);
    if (copy_db) std::copy(db_ih, db_ih + GH, g.grads.b_hh);
    if (project) {
      whole_sequence_gemm(true, false, P, H, N, dh_rows.get(), P, m_rows.get(), H, 0,
                            g.grads.w_hr, H);
    }
  }

 private:
  // C = op(A) op(B) + beta C over all rows of the sequence: on the engine the glue chose, else
  // split over the threads.
  void whole_sequence_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                           const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                           scalar_t beta, scalar_t* C, int64_t ldc) const {
    if (ctx_.sequence_gemm) {
      ctx_.sequence_gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    } else {
      parallel_gemm<scalar_t>(ctx_.threads, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C,
                              ldc);
    }
  }

  const Context<scalar_t>& ctx_;
};

}  // namespace

template <typename scalar_t>
void rnn_forward(const RnnParams<scalar_t>& p, const Context<scalar_t>& ctx) {
  run_stack_forward(Driver<scalar_t>(ctx), p);
}

template <typename scalar_t>
void rnn_backward(const RnnGradParams<scalar_t>& p, const Context<scalar_t>& ctx) {
  run_stack_backward(Driver<scalar_t>(ctx), p);
}

template void rnn_forward<float>(const RnnParams<float>&, const Context<float>&);
template void rnn_forward<double>(const RnnParams<double>&, const Context<double>&);
template void rnn_backward<float>(const RnnGradParams<float>&, const Context<float>&);
template void rnn_backward<double>(const RnnGradParams<double>&, const Context<double>&);

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA
