#include "cpu/rnn_cpu.h"

#include <algorithm>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "cells/cells.h"
#include "cpu/barrier.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"

// Compiled once per instruction set (CMakeLists.txt), each copy in its own namespace
// FASTRNN_CPU_ISA; cpu/dispatch.cpp picks one at run time.
namespace fastrnn::cpu::FASTRNN_CPU_ISA {
namespace {

// One layer in one direction, as its drivers see it. Rows and steps as in params.h.
template <typename scalar_t>
struct Layer {
  int64_t T, B, N, I, H, P;
  const int64_t* batch_sizes;
  const int64_t* offsets;
  bool reverse;
  const scalar_t* x;  // [N, I], leading dimension ldx
  int64_t ldx;
  const scalar_t* h0;  // [B, P]
  const scalar_t* c0;  // [B, H] or nullptr
  LayerWeights<scalar_t> w;
  scalar_t* out;  // [N, P], leading dimension ld_out (read only in backward)
  int64_t ld_out;
  scalar_t* saved;  // [N, S*H] or nullptr (inference, or S == 0)
  scalar_t* h_n;    // [B, P], written by forward
  scalar_t* c_n;    // [B, H] or nullptr
  const Threads* threads;
  GemmFn<scalar_t> sequence_gemm;  // or nullptr (params.h)

  // C = op(A) op(B) + beta C over all rows of the sequence: on the engine the glue chose, else
  // split over the threads.
  void whole_sequence_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                           const scalar_t* A, int64_t lda, const scalar_t* B, int64_t ldb,
                           scalar_t beta, scalar_t* C, int64_t ldc) const {
    if (sequence_gemm) {
      sequence_gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    } else {
      parallel_gemm<scalar_t>(*threads, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, C, ldc);
    }
  }

  // The time step processed s-th: forward walks t = 0 .. T-1, the reverse direction T-1 .. 0.
  int64_t step(int64_t s) const { return reverse ? T - 1 - s : s; }

  // The step before t in processing order whose row b holds the state step t starts from, or
  // -1 where b starts from the initial state (the first step, or a packed sequence's first step
  // in the reverse direction).
  int64_t prev_step(int64_t t, int64_t b) const {
    const int64_t prev = reverse ? t + 1 : t - 1;
    return prev >= 0 && prev < T && b < batch_sizes[prev] ? prev : -1;
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
};

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
  return {std::min(n, blocks * rank / size * block), std::min(n, blocks * (rank + 1) / size * block)};
}

template <class Cell>
constexpr bool kIsLstm = std::is_same_v<Cell, LstmCell>;

// Whether a layer's step products pack their weights (RecurrentGemm) or read them where they
// are. Packing is a pass over each W per call, into fresh memory, repaid over the rows
// multiplied; a call of a few rows in all (a decoder's step at a small batch, a short sequence
// at batch 1) is faster without it. benchmarks/ab.py, Zen 4, 2 threads, H = 256, time packed /
// direct, 12-14 rounds, T x B: 1x1 LSTM 1.70, GRU 1.55, RNN 1.26 (training LSTM 1.24); 2x1 and
// 1x2 LSTM 1.42, 1.39; 4x1 LSTM, GRU, RNN 1.24-1.25 (training LSTM 2.00, 2x2 GRU 2.22); 8x1
// 1.10-1.14 (training 1.08-1.53), 1x8 1.00-1.05; but 16 rows 0.92-1.39, 32-64 rows 0.87-0.98.
// Such a call also computes W_ih x in its steps (input_in_steps), from W_ih as it is: one team
// of threads for the whole call, where a product over the sequence would take a second.
inline constexpr int64_t kDirectMaxRows = 8;

template <typename scalar_t>
bool pack_step_weights(const Layer<scalar_t>& L) {
  return L.N > kDirectMaxRows;
}

// Whether a layer's steps compute W_ih x themselves (layer_forward): always in a call too short
// to pack for (above), and otherwise as follows. Then W_ih x never makes a
// round trip through memory (the cell reads it from L1) and runs on the packed kernel, but each
// step streams the thread's packed share of W_ih as well as of W_hh, which the kernel reuses for
// only the step's B rows: worth it where both shares stay in the core's L2 (kStepWeightBytes
// in all; on two threads 1 MiB each) and B is large enough for the step's product to run at
// the kernel's full rate, or where B is large enough to hide streaming them from L3 or memory.
// Measured on 2 threads, T=100, inference, medians of 16-50 alternating rounds, time before /
// after (benchmarks/ab.py):
//   Zen 3 (512 KiB L2), limit 512 KiB: B=32 LSTM H=128 1.06-1.09x, GRU H=128 1.07x, RNN H=256
//     1.02-1.03x (training within +-3%: noise); B=1 0.84-0.87x, where the step's extra product
//     lengthens the chain of dependent steps while the whole-sequence product of 100 rows is
//     cheap.
//   Zen 4 (1 MiB L2), no limit: B=32 H=256 LSTM 1.05x (1 thread 1.07x), GRU 1.05x, training
//     1.01-1.02x; B=256 LSTM H=1024 (32 MiB) 1.06x; B=64 LSTM H=512 (8 MiB) 1.01x; but B=16
//     LSTM H=512 0.98x.
// The choice does not depend on the thread count, so neither do the outputs
// (tests/test_threads.py).
inline constexpr int64_t kStepWeightBytes = 2 * 1024 * 1024;
inline constexpr int64_t kStepInputMinBatch = 16;
inline constexpr int64_t kStepInputStreamingMinBatch = 64;

template <class Cell, typename scalar_t>
bool input_in_steps(const Layer<scalar_t>& L) {
  const int64_t bytes = Cell::kGates * L.H * (L.I + L.P) * int64_t{sizeof(scalar_t)};
  return RecurrentGemm<scalar_t>::kPacked &&
         (!pack_step_weights(L) || L.B >= kStepInputStreamingMinBatch ||
          (L.B >= kStepInputMinBatch && bytes <= kStepWeightBytes));
}

// The steps of a layer run on a team of threads (Threads::team). Each thread owns a share of
// the hidden units, in blocks of 64 (RecurrentGemm's unit blocks): per step it multiplies its
// units' columns of the recurrent product, runs the cell on them, and waits for the others once
// (the next product reads all of h). With a projection, h = W_hr m needs all of m first: a
// second wait, and each thread owns a share of h's columns too.
template <class Cell, typename scalar_t>
void layer_forward(const Layer<scalar_t>& L) {
  const int64_t B = L.B, H = L.H, P = L.P;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
  const bool training = L.saved != nullptr;
  const bool project = L.w.w_hr != nullptr;

  // W_ih x of every row. When training, it goes straight into the saved rows, which the cell
  // then overwrites in place with its activations: no separate buffer of N * G*H. With a small
  // W_ih (input_in_steps) each thread computes its units' columns of the step's rows in the
  // step, before the recurrent product; in inference they then need only B rows.
  const Threads& threads = *L.threads;
  const bool fuse_input = input_in_steps<Cell>(L);
  const auto gx_buffer = scratch<scalar_t>(training ? 0 : (fuse_input ? B : L.N) * GH);
  scalar_t* gx = training ? L.saved : gx_buffer.get();
  const int64_t ld_gx = training ? SH : GH;
  const bool gx_per_batch_row = fuse_input && !training;  // gx row b, not row r
  const bool pack = pack_step_weights(L);
  std::optional<RecurrentGemm<scalar_t>> input;
  if (fuse_input) {
    input.emplace(L.w.w_ih, GH, L.I, /*w_transposed=*/false, Cell::kGates, pack);
  } else {
    L.whole_sequence_gemm(false, true, L.N, GH, L.I, L.x, L.ldx, L.w.w_ih, L.I, 0, gx, ld_gx);
  }

  // The running state: row b holds the latest h (and c) of sequence b. Rows of sequences that
  // have ended keep their last state, which is h_n; rows not yet started hold h0. h is double
  // buffered (the others still read h_{t-1} while a thread writes its columns of h_t); c, gh and
  // m are only touched by the thread owning the unit, in place.
  std::vector<scalar_t> h(L.h0, L.h0 + B * P), h_next(B * P);
  std::vector<scalar_t> c;
  if constexpr (Cell::kHasCellState) c.assign(L.c0, L.c0 + B * H);
  const auto gh = scratch<scalar_t>(B * GH);  // W_hh h_{t-1} of the active rows
  const auto m = scratch<scalar_t>(project ? B * H : 0);  // the cell's output before W_hr
  std::optional<RecurrentGemm<scalar_t>> projection;  // h = m W_hr^T, in blocks of 64 columns
  if (project) projection.emplace(L.w.w_hr, P, H, /*w_transposed=*/false, 1, pack);
  const RecurrentGemm<scalar_t> recurrent(L.w.w_hh, GH, P, /*w_transposed=*/false,
                                          Cell::kGates, pack);
  const int64_t blocks = recurrent.unit_blocks();
  SpinBarrier barrier;

  bool_switch(training, [&](auto kTraining) {
    bool_switch(L.w.b_ih != nullptr, [&](auto kHasBias) {
      threads.team(std::min(threads.count, blocks), [&](int64_t rank, int64_t size) {
        const auto [j0, j1] = share(H, 64, rank, size);  // this thread's units
        const int64_t u0 = j0 / 64, u1 = (j1 + 63) / 64;
        const auto [p0, p1] = project ? share(P, 64, rank, size) : std::pair{j0, j1};  // of h
        const int64_t q0 = p0 / 64, q1 = (p1 + 63) / 64;  // as unit blocks of the projection
        recurrent.pack_units(u0, u1);
        if (input) input->pack_units(u0, u1);
        if (projection) projection->pack_units(q0, q1);
        scalar_t* h_prev = h.data();
        scalar_t* h_cur = h_next.data();
        // gx of the first row of step t
        auto gx_of = [&](int64_t t) { return gx + (gx_per_batch_row ? 0 : L.offsets[t] * ld_gx); };
        // W_ih x of step s, this thread's units: it depends on no other thread's work
        auto input_product = [&](int64_t s) {
          const int64_t t = L.step(s);
          input->multiply_units(u0, u1, L.batch_sizes[t], L.x + L.offsets[t] * L.ldx, L.ldx,
                                gx_of(t), ld_gx, /*accumulate=*/false);
        };
        if (input) input_product(0);
        for (int64_t s = 0; s < L.T; ++s) {
          const int64_t t = L.step(s), Bt = L.batch_sizes[t], row0 = L.offsets[t];
          scalar_t* gx_step = gx_of(t);
          recurrent.multiply_units(u0, u1, Bt, h_prev, P, gh.get(), GH, /*accumulate=*/false);
          for (int64_t b = 0; b < Bt; ++b) {
            const int64_t r = row0 + b;
            scalar_t* h_row = project ? m.get() + b * H : h_cur + b * P;
            scalar_t* c_row = Cell::kHasCellState ? c.data() + b * H : nullptr;
            scalar_t* saved_row = kTraining ? L.saved + r * SH : nullptr;
            // units are independent; in-place rows (saved over gx, c over c_prev) are read
            // before they are written within each unit, so the loop vectorises
#pragma GCC ivdep
            for (int64_t j = j0; j < j1; ++j) {
              Cell::template forward<kTraining, kHasBias>(
                  j, H, gx_step + b * ld_gx, gh.get() + b * GH, L.w.b_ih, L.w.b_hh,
                  h_prev + b * P, c_row, h_row, c_row, saved_row);
            }
          }
          if (project) {
            barrier.wait(size);  // m of every unit
            projection->multiply_units(q0, q1, Bt, m.get(), H, h_cur, P, /*accumulate=*/false);
          }
          copy_columns(h_cur, P, Bt, p0, p1, L.out + row0 * L.ld_out, L.ld_out);
          // rows no longer (or not yet) active keep their state
          copy_columns(h_prev + Bt * P, P, B - Bt, p0, p1, h_cur + Bt * P, P);
          // h_t whole before the next product reads it; meanwhile the next step's input
          // product, which fills the time a thread would spin waiting for a later one
          const int64_t round = barrier.arrive(size);
          if (input && s + 1 < L.T) input_product(s + 1);
          barrier.await(round);
          std::swap(h_prev, h_cur);
        }
      });
    });
  });
  const std::vector<scalar_t>& h_last = L.T % 2 == 0 ? h : h_next;
  std::copy(h_last.begin(), h_last.end(), L.h_n);
  if constexpr (Cell::kHasCellState) std::copy(c.begin(), c.end(), L.c_n);
}

// Backward walks the steps in reverse on a team, like forward: each thread owns a share of the
// units, runs the cell's backward on them, waits once for the others (the product reads dgh of
// every unit), then computes its columns of dL/dh_{t-1} = dgh_t W_hh, which are its own units'
// (with a projection its share of h's columns, and a second wait before dL/dm = dh W_hr).
template <class Cell, typename scalar_t>
void layer_backward(const Layer<scalar_t>& L, const LayerGradIO<scalar_t>& g) {
  const int64_t B = L.B, N = L.N, H = L.H, P = L.P;
  const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
  const bool project = L.w.w_hr != nullptr;
  const Threads& threads = *L.threads;

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
  const bool pack = pack_step_weights(L);
  if (L.T > 1 || want_h0) recurrent.emplace(L.w.w_hh, P, GH, /*w_transposed=*/true, 1, pack);
  // Where forward computes W_ih x in the steps (input_in_steps), backward computes dL/dx =
  // dgx W_ih in them too, each thread a share of x's columns, for a step whose dgx is whole:
  // while it waits for the others at the next step's barrier.
  const bool want_x = g.grad_x != nullptr;
  std::optional<RecurrentGemm<scalar_t>> input_grad;
  if (want_x && input_in_steps<Cell>(L)) {
    input_grad.emplace(L.w.w_ih, L.I, GH, /*w_transposed=*/true, 1, pack);
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
  if (project) projection.emplace(L.w.w_hr, H, P, /*w_transposed=*/true, 1, pack);
  SpinBarrier barrier;

  // The bias gradients are the column sums of dgx and dgh; where those are one buffer, b_hh's
  // is a copy of b_ih's, made at the end.
  scalar_t* const db_ih = g.grads.b_ih;
  const bool copy_db = !Cell::kSplitHiddenGrad && db_ih && g.grads.b_hh;
  scalar_t* const db_hh = copy_db ? nullptr : g.grads.b_hh;

  threads.team(std::min(threads.count, (H + 63) / 64), [&](int64_t rank, int64_t size) {
    const auto [j0, j1] = share(H, 64, rank, size);  // this thread's units
    const int64_t u0 = j0 / 64, u1 = (j1 + 63) / 64;
    // and its columns of dh: its units, or with a projection a share of P
    const auto [p0, p1] = project ? share(P, 64, rank, size) : std::pair{j0, j1};
    const int64_t q0 = p0 / 64, q1 = (p1 + 63) / 64;  // as unit blocks of the product
    const auto [i0, i1] = share(L.I, 64, rank, size);  // and of dL/dx
    const int64_t v0 = i0 / 64, v1 = (i1 + 63) / 64;
    if (recurrent) recurrent->pack_units(q0, q1);
    if (projection) projection->pack_units(u0, u1);
    if (input_grad) input_grad->pack_units(v0, v1);
    auto input_grad_product = [&](int64_t s) {  // dL/dx of step s, this thread's columns
      const int64_t t = L.step(s), row0 = L.offsets[t];
      input_grad->multiply_units(v0, v1, L.batch_sizes[t], dgx.get() + row0 * GH, GH,
                                 g.grad_x + row0 * g.ld_grad_x, g.ld_grad_x,
                                 g.accumulate_grad_x);
    };
    for (scalar_t* db : {db_ih, db_hh}) {
      if (!db) continue;
      for (int64_t k = 0; k < Cell::kGates; ++k) {
        std::fill(db + k * H + j0, db + k * H + j1, scalar_t(0));
      }
    }
    for (int64_t s = L.T - 1; s >= 0; --s) {
      const int64_t t = L.step(s), Bt = L.batch_sizes[t], row0 = L.offsets[t];
      if (g.grad_out) {
        for (int64_t b = 0; b < Bt; ++b) {
          const scalar_t* go = g.grad_out + (row0 + b) * g.ld_grad_out;
          for (int64_t k = p0; k < p1; ++k) dh[b * P + k] += go[k];
        }
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
        const int64_t prev = L.prev_step(t, b);
        const int64_t prev_row = prev >= 0 ? L.offsets[prev] + b : -1;
        const scalar_t* h_prev = prev >= 0 ? L.out + prev_row * L.ld_out : L.h0 + b * P;
        std::copy(h_prev + p0, h_prev + p1, h_prev_rows.get() + r * P + p0);
        const scalar_t* c_prev = nullptr;
        if constexpr (Cell::kHasCellState) {
          c_prev = prev >= 0 ? L.saved + prev_row * SH + Cell::kSavedCellSlot * H : L.c0 + b * H;
        }
        const scalar_t* saved_row = L.saved ? L.saved + r * SH : nullptr;
        scalar_t* dc_row = Cell::kHasCellState ? dc.data() + b * H : nullptr;
        // dh's row doubles as the GRU's dh_prev_direct output: each unit reads its value first
#pragma GCC ivdep
        for (int64_t j = j0; j < j1; ++j) {
          Cell::backward(j, H, dh_cell[b * H + j], dc_row, saved_row, h_prev,
                         L.out + r * L.ld_out, c_prev, dgx.get() + r * GH, dgh + r * GH,
                         dh.data() + b * P);
        }
        if (db_ih) add_units(dgx.get() + r * GH, Cell::kGates, H, j0, j1, db_ih);
        if (db_hh) add_units(dgh + r * GH, Cell::kGates, H, j0, j1, db_hh);
        if constexpr (kIsLstm<Cell>) {
          if (project) {
            for (int64_t j = j0; j < j1; ++j) {
              m_rows[r * H + j] = Cell::unprojected_h(j, H, saved_row);
            }
          }
        }
      }
      const int64_t round = barrier.arrive(size);  // dgh (and dgx) of every unit
      if (input_grad && s + 1 < L.T) input_grad_product(s + 1);
      barrier.await(round);
      // dL/dh_{t-1} = dgh_t W_hh, plus the direct path the GRU left in dh
      if (s > 0 || want_h0) {
        recurrent->multiply_units(q0, q1, Bt, dgh + row0 * GH, GH, dh.data(), P,
                                  /*accumulate=*/Cell::kSplitHiddenGrad);
      }
    }
    if (input_grad) input_grad_product(0);
  });
  if (want_h0) std::copy(dh.begin(), dh.end(), g.grad_h0);
  if constexpr (Cell::kHasCellState) std::copy(dc.begin(), dc.end(), g.grad_c0);

  if (want_x && !input_grad) {
    L.whole_sequence_gemm(false, false, N, L.I, GH, dgx.get(), GH, L.w.w_ih, L.I,
                          g.accumulate_grad_x ? 1 : 0, g.grad_x, g.ld_grad_x);
  }
  L.whole_sequence_gemm(true, false, GH, L.I, N, dgx.get(), GH, L.x, L.ldx, 0, g.grads.w_ih, L.I);
  L.whole_sequence_gemm(true, false, GH, P, N, dgh, GH, h_prev_rows.get(), P, 0, g.grads.w_hh,
                        P);
  if (copy_db) std::copy(db_ih, db_ih + GH, g.grads.b_hh);
  if (project) {
    L.whole_sequence_gemm(true, false, P, H, N, dh_rows.get(), P, m_rows.get(), H, 0,
                          g.grads.w_hr, H);
  }
}

// Where the reserve keeps the saved rows of layer l, direction d, and the output of layer l.
template <class Cell, typename scalar_t>
struct ReserveLayout {
  const RnnParams<scalar_t>& p;
  scalar_t* saved(int64_t l, int64_t d) const {
    return Cell::kSaved ? p.reserve + (l * p.D + d) * p.N * Cell::kSaved * p.H : nullptr;
  }
  scalar_t* layer_output(int64_t l) const {
    return p.reserve + p.L * p.D * p.N * Cell::kSaved * p.H + l * p.N * p.D * p.P;
  }
};

// dst[i] = src[i] * mask[i] (dst may be src)
template <typename scalar_t>
void apply_mask(const scalar_t* src, const scalar_t* mask, int64_t n, scalar_t* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i] * mask[i];
}

// Layer l, direction d of the stack, reading x ([N, I] with leading dimension ldx) and writing
// its columns of the layer output `out` ([N, D*P]).
template <typename scalar_t>
Layer<scalar_t> make_layer(const RnnParams<scalar_t>& p, int64_t l, int64_t d, const scalar_t* x,
                           int64_t I, int64_t ldx, scalar_t* out, scalar_t* saved) {
  const int64_t k = l * p.D + d;  // index of (l, d) in weights, hx, h_n, ...
  Layer<scalar_t> layer;
  layer.T = p.T, layer.B = p.B, layer.N = p.N, layer.I = I, layer.H = p.H, layer.P = p.P;
  layer.batch_sizes = p.batch_sizes, layer.offsets = p.offsets;
  layer.reverse = d == 1;
  layer.x = x, layer.ldx = ldx;
  layer.h0 = p.hx + k * p.B * p.P;
  layer.c0 = p.cx ? p.cx + k * p.B * p.H : nullptr;
  layer.w = p.weights[k];
  layer.out = out + d * p.P, layer.ld_out = p.D * p.P;
  layer.saved = saved;
  layer.h_n = p.h_n ? p.h_n + k * p.B * p.P : nullptr;
  layer.c_n = p.c_n ? p.c_n + k * p.B * p.H : nullptr;
  layer.threads = &p.threads;
  layer.sequence_gemm = p.sequence_gemm;
  return layer;
}

template <class Cell, typename scalar_t>
void stack_forward(const RnnParams<scalar_t>& p) {
  const int64_t N = p.N, DP = p.D * p.P;
  const bool training = p.reserve != nullptr;
  const ReserveLayout<Cell, scalar_t> reserve{p};
  // Inference keeps the outputs of inner layers in two buffers taking turns; training keeps
  // them in the reserve, and the dropout-masked copy feeding the next layer in `masked`.
  const auto turns = scratch<scalar_t>(!training && p.L > 1 ? (p.L > 2 ? 2 : 1) * N * DP : 0);
  const auto masked = scratch<scalar_t>(training && p.dropout_masks ? N * DP : 0);

  const scalar_t* x = p.x;
  int64_t I = p.I, ldx = p.ldx;
  for (int64_t l = 0; l < p.L; ++l) {
    scalar_t* out = l == p.L - 1 ? p.output
                    : training   ? reserve.layer_output(l)
                                 : turns.get() + (l % 2) * N * DP;
    for (int64_t d = 0; d < p.D; ++d) {
      scalar_t* saved = training ? reserve.saved(l, d) : nullptr;
      layer_forward<Cell>(make_layer(p, l, d, x, I, ldx, out, saved));
    }
    x = out;
    if (l < p.L - 1 && p.dropout_masks) {
      scalar_t* dst = training ? masked.get() : out;  // inference may overwrite its own buffer
      apply_mask(out, p.dropout_masks + l * N * DP, N * DP, dst);
      x = dst;
    }
    I = ldx = DP;
  }
}

template <class Cell, typename scalar_t>
void stack_backward(const RnnGradParams<scalar_t>& g) {
  const RnnParams<scalar_t>& p = g.fwd;
  const int64_t N = p.N, DP = p.D * p.P;
  const ReserveLayout<Cell, scalar_t> reserve{p};
  // dL/d(output of layer l-1), computed by layer l: two buffers taking turns; and the masked
  // input of layer l recomputed from the output of layer l-1
  const auto turns = scratch<scalar_t>(p.L > 1 ? (p.L > 2 ? 2 : 1) * N * DP : 0);
  const auto masked = scratch<scalar_t>(p.L > 1 && p.dropout_masks ? N * DP : 0);

  const scalar_t* grad_out = g.grad_output;  // dL/d(output of layer l), [N, D*P] or nullptr
  for (int64_t l = p.L - 1; l >= 0; --l) {
    const scalar_t* x = p.x;
    int64_t I = p.I, ldx = p.ldx;
    if (l > 0) {
      x = reserve.layer_output(l - 1);
      I = ldx = DP;
      if (p.dropout_masks) {
        apply_mask(x, p.dropout_masks + (l - 1) * N * DP, N * DP, masked.get());
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
      layer_backward<Cell>(make_layer(p, l, d, x, I, ldx, out, reserve.saved(l, d)), io);
    }
    if (l > 0 && p.dropout_masks) {
      apply_mask(grad_x, p.dropout_masks + (l - 1) * N * DP, N * DP, grad_x);
    }
    grad_out = grad_x;
  }
}

}  // namespace

template <typename scalar_t>
void rnn_forward(const RnnParams<scalar_t>& p) {
  visit_cell(p.cell, [&](auto cell) { stack_forward<decltype(cell), scalar_t>(p); });
}

template <typename scalar_t>
void rnn_backward(const RnnGradParams<scalar_t>& p) {
  visit_cell(p.fwd.cell, [&](auto cell) { stack_backward<decltype(cell), scalar_t>(p); });
}

template void rnn_forward<float>(const RnnParams<float>&);
template void rnn_forward<double>(const RnnParams<double>&);
template void rnn_backward<float>(const RnnGradParams<float>&);
template void rnn_backward<double>(const RnnGradParams<double>&);

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA
