#include "cpu/rnn_cpu.h"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <optional>
#include <type_traits>
#include <utility>
#include <vector>

#include "cells/cells.h"
#include "core/stack.h"
#include "cpu/barrier.h"
#include "cpu/gemm.h"
#include "cpu/gemm_bf16.h"
#include "cpu/scratch.h"
#include "cpu/tuning.h"

// Compiled once per instruction set (CMakeLists.txt), each copy in its own namespace
// FASTRNN_CPU_ISA; cpu/dispatch.cpp picks one at run time.
namespace fastrnn::cpu::FASTRNN_CPU_ISA {
namespace {

// x as another of the element types: float or double as it is, a 16-bit type through float.
template <typename To, typename From>
To convert(From x) {
  if constexpr (std::is_same_v<To, From>) {
    return x;
  } else {
    return To(static_cast<float>(x));
  }
}

// sums[g*H + j] += row[g*H + j] for the G gates of units [j0, j1): the bias gradients, summed
// by the thread owning the units as it makes each row of dL/d(pre-activations)
template <typename C>
void add_units(const C* row, int64_t G, int64_t H, int64_t j0, int64_t j1, C* sums) {
  for (int64_t g = 0; g < G; ++g) {
    for (int64_t j = j0; j < j1; ++j) sums[g * H + j] += row[g * H + j];
  }
}

// Columns [c0, c1) of `rows` rows, converted to dst's type.
template <typename Src, typename Dst>
void copy_columns(const Src* src, int64_t ld_src, int64_t rows, int64_t c0, int64_t c1,
                  Dst* dst, int64_t ld_dst) {
  for (int64_t r = 0; r < rows; ++r) {
    const Src* s = src + r * ld_src;
    Dst* d = dst + r * ld_dst;
    for (int64_t k = c0; k < c1; ++k) d[k] = convert<Dst>(s[k]);
  }
}

// Values as the compute type C: for a 16-bit storage type a contiguous converted copy, made here
// (the products and the running state work in C); for float and double the values where they
// are. n values (a weight), or rows [0, rows) x cols of a matrix with leading dimension ld (a
// layer's input); nullptr stays nullptr.
template <typename C, typename T>
class AsCompute {
 public:
  AsCompute(const T* src, int64_t n) : AsCompute(src, 1, n, n) {}
  AsCompute(const T* src, int64_t rows, int64_t cols, int64_t ld) : ld_(ld) {
    if constexpr (std::is_same_v<C, T>) {
      data_ = src;
    } else if (src) {
      copy_ = scratch<C>(rows * cols);
      copy_columns(src, ld, rows, 0, cols, copy_.get(), cols);
      data_ = copy_.get(), ld_ = cols;
    }
  }
  const C* get() const { return data_; }
  int64_t ld() const { return ld_; }

 private:
  const C* data_ = nullptr;
  int64_t ld_;
  Scratch<C> copy_;
};

// Where a result of n values of type T is made: in place when T is the compute type, else in a
// C buffer that store() converts into the destination (adding to it when `accumulate`).
template <typename C, typename T>
class ComputeOut {
 public:
  ComputeOut(T* dst, int64_t n) : dst_(dst), n_(n) {
    if constexpr (std::is_same_v<C, T>) {
      data_ = dst;
    } else if (dst) {
      buffer_ = scratch<C>(n);
      data_ = buffer_.get();
    }
  }
  C* get() const { return data_; }
  void store(bool accumulate = false) const {
    if constexpr (!std::is_same_v<C, T>) {
      if (!dst_) return;
      for (int64_t i = 0; i < n_; ++i) {
        dst_[i] = accumulate ? T(static_cast<float>(dst_[i]) + data_[i]) : T(data_[i]);
      }
    }
  }

 private:
  T* dst_;
  int64_t n_;
  C* data_ = nullptr;
  Scratch<C> buffer_;
};

// The part `rank` of [0, n) cut into `size` near-equal parts of whole blocks of `block`.
inline std::pair<int64_t, int64_t> share(int64_t n, int64_t block, int64_t rank, int64_t size) {
  const int64_t blocks = (n + block - 1) / block;
  return {std::min(n, blocks * rank / size * block),
          std::min(n, blocks * (rank + 1) / size * block)};
}

// How many of step t's active rows [0, batch_sizes[t]) fall in [b0, b1): when the steps are
// shared by rows (split_by_rows), the thread owning [b0, b1) runs rows [b0, b0 + that).
template <typename T>
int64_t active_rows(const Layer<T>& layer, int64_t t, int64_t b0, int64_t b1) {
  return std::max<int64_t>(0, std::min(b1, layer.batch_sizes[t]) - b0);
}

// With the steps shared by rows every thread multiplies every panel of each step product: each
// packs a share of their unit blocks, then waits for the others (nullptr: no such product).
template <class Gemm>
void pack_every_panel(std::initializer_list<const Gemm*> gemms, int64_t rank, int64_t size,
                      SpinBarrier& barrier) {
  for (const Gemm* gemm : gemms) {
    if (!gemm) continue;
    const auto [v0, v1] = share(gemm->unit_blocks(), 1, rank, size);
    gemm->pack_units(v0, v1);
  }
  barrier.wait(size);
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
// With the bfloat16 kernel (Bf16Gemm), always: the whole-sequence GEMM engines have no bfloat16
// product with a float32 result.
template <class Cell, bool kBf16Dot, typename scalar_t>
bool input_in_steps(const Layer<scalar_t>& layer) {
  using C = compute_t<scalar_t>;
  const int64_t bytes = Cell::kGates * layer.H * (layer.I + layer.P) * int64_t{sizeof(C)};
  if (kBf16Dot) return true;
  return RecurrentGemm<C>::kPacked &&
         (!pack_step_weights(layer) || layer.B >= kStepInputStreamingMinBatch ||
          (layer.B >= kStepInputMinBatch && bytes <= kStepWeightBytes));
}

// How layer_forward and layer_backward share a layer's steps between threads (cpu/tuning.h): by
// units, each thread all rows of its units, h (dL/dh in backward; and m or dL/dm with a
// projection) crossing between the threads every step with a wait for each; or, with the packed
// float32 or bfloat16 kernels where the weights are small, by rows, each thread every unit of
// its rows, nothing crossing and no wait. Where the two vCPUs sit far apart, what crosses costs
// 6x as much (benchmarks/README.md): LSTM 100x32x256 inference was 1.3-1.5x faster by rows
// there, and 1.03-1.05x where they sit close (training 1.01-1.10x). Each element of a step
// product is summed in the same order either way (its step_rows), so the outputs are the same;
// the bias gradients are summed by each thread over its rows, then across the threads.
template <class Cell, bool kBf16Dot, typename scalar_t>
bool split_by_rows(const Layer<scalar_t>& layer, int64_t threads) {
  using C = compute_t<scalar_t>;
  int64_t min_rows = 0, element_bytes = 0;
  if constexpr (kBf16Dot) {
    min_rows = kRowSplitMinRowsBf16, element_bytes = sizeof(bfloat16);
  } else if constexpr (std::is_same_v<C, float> && RecurrentGemm<float>::kPacked) {
    min_rows = kRowSplitMinRows, element_bytes = sizeof(float);
  } else {  // double (its products run at half the rate: the exchange matters less), or BLAS
    return false;
  }
  const int64_t weights =
      Cell::kGates * layer.H * (layer.I + layer.P) + (layer.w.w_hr ? layer.P * layer.H : 0);
  return threads > 1 && layer.B >= min_rows * threads &&
         weights * element_bytes <= kRowSplitWeightBytes;
}

// The CPU's layer driver for core/stack.h: one layer in one direction on a team of threads,
// with the context's threads and whole-sequence GEMM engine.
//
// Storage type scalar_t, compute type C (cells/rows.h). For a 16-bit scalar_t the products run
// in C on C copies of the weights and of the layer's input (AsCompute: G*H*(I+P) + N*I values
// per layer call, N*I again in backward), the running state and the gate pre-activations are C,
// and only what leaves the layer is rounded to scalar_t: its output and saved rows, h_n and c_n,
// and the gradients. kBf16Dot (bfloat16 on a CPU with AVX512_BF16): the step products instead
// multiply the bfloat16 weights as they are (Bf16Gemm), A's rows rounded to bfloat16.
template <typename scalar_t, bool kBf16Dot = false>
class Driver {
  using C = compute_t<scalar_t>;
  static constexpr bool kSameTypes = std::is_same_v<C, scalar_t>;
  using StepGemm = std::conditional_t<kBf16Dot, Bf16Gemm, RecurrentGemm<C>>;
  static constexpr int64_t kUnits = StepGemm::kPanel;  // units per block

  // A weight (or the layer's input) as the step products take it: as it is for Bf16Gemm, else
  // its C copy.
  static auto step_weight(const scalar_t* w, const AsCompute<C, scalar_t>& copy) {
    if constexpr (kBf16Dot) {
      return w;
    } else {
      return copy.get();
    }
  }
  // The C copy of a weight that step_weight needs (none for Bf16Gemm).
  static const scalar_t* copied(const scalar_t* w) { return kBf16Dot ? nullptr : w; }

 public:
  explicit Driver(const Context<C>& ctx) : ctx_(ctx) {}

  auto buffer(int64_t n) const { return scratch<scalar_t>(n); }

  void mask(const scalar_t* src, const scalar_t* mask, int64_t n, scalar_t* dst) const {
    for (int64_t i = 0; i < n; ++i) {
      dst[i] = convert<scalar_t>(convert<C>(src[i]) * convert<C>(mask[i]));
    }
  }

  // The steps of a layer run on a team of threads (Threads::team). Each thread owns a share of
  // the hidden units, in blocks of kUnits (RecurrentGemm's unit blocks): per step it multiplies its
  // units' columns of the recurrent product, runs the cell on them, and waits for the others once
  // (the next product reads all of h). With a projection, h = W_hr m needs all of m first: a
  // second wait, and each thread owns a share of h's columns too. Or (split_by_rows) each thread
  // owns a share of the batch's rows, all units of them, and never waits within the steps.
  template <class Cell>
  void layer_forward(const Layer<scalar_t>& layer) const {
    const int64_t B = layer.B, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const CellOptions options = layer.options;  // a local copy: the cell loops read it freely
    const bool training = layer.saved != nullptr;
    const bool project = layer.w.w_hr != nullptr;

    // W_ih x of every row. When training (and the saved rows are C), it goes straight into the
    // saved rows, which the cell then overwrites in place with its activations: no separate
    // buffer of N * G*H. With a small W_ih (input_in_steps) each thread computes its units'
    // columns of the step's rows in the step, before the recurrent product; they then need only
    // B rows, unless they are the saved rows.
    const Threads& threads = ctx_.threads;
    const bool fuse_input = input_in_steps<Cell, kBf16Dot>(layer);
    const bool gx_in_saved = training && kSameTypes;
    const auto gx_buffer = scratch<C>(gx_in_saved ? 0 : (fuse_input ? B : layer.N) * GH);
    C* gx = gx_buffer.get();
    if constexpr (kSameTypes) {
      if (gx_in_saved) gx = layer.saved;
    }
    const int64_t ld_gx = gx_in_saved ? SH : GH;
    const bool gx_per_batch_row = fuse_input && !gx_in_saved;  // gx row b, not row r
    const bool pack = pack_step_weights(layer);
    // the input as the step products take it (Bf16Gemm: as it is; else its C copy)
    const AsCompute<C, scalar_t> x(copied(layer.x), layer.N, layer.I, layer.ldx);
    const auto* x_rows = step_weight(layer.x, x);
    const int64_t ld_x = x.ld();
    // Without an initial state h0 is zero, and so is the first step's W_hh h_{t-1}: skipped
    // (the cells read a zero row), and at T = 1 W_hh is neither copied nor packed: a cell's
    // first step reads W_ih alone.
    const bool recurrent_unused = layer.h0_zero && layer.T == 1;
    const AsCompute<C, scalar_t> w_ih(copied(layer.w.w_ih), GH * layer.I);
    const AsCompute<C, scalar_t> w_hh(recurrent_unused ? nullptr : copied(layer.w.w_hh), GH * P);
    const AsCompute<C, scalar_t> w_hr(copied(layer.w.w_hr), P * H);
    std::optional<StepGemm> input;
    if (fuse_input) {
      input.emplace(step_weight(layer.w.w_ih, w_ih), GH, layer.I, /*w_transposed=*/false,
                    Cell::kGates, pack);
    } else {
      whole_sequence_gemm(false, true, layer.N, GH, layer.I, x.get(), x.ld(), w_ih.get(),
                          layer.I, 0, gx, ld_gx);
    }

    // The running state: row b holds the latest h (and c) of sequence b. Rows of sequences that
    // have ended keep their last state, which is h_n; rows not yet started hold h0. h is double
    // buffered (the others still read h_{t-1} while a thread writes its columns of h_t); c, gh and
    // m are only touched by the thread owning the unit, in place.
    std::vector<C> h(B * P), h_next(B * P);
    std::transform(layer.h0, layer.h0 + B * P, h.begin(), convert<C, scalar_t>);
    std::vector<C> c;
    if constexpr (Cell::kHasCellState) {
      c.resize(B * H);
      std::transform(layer.c0, layer.c0 + B * H, c.begin(), convert<C, scalar_t>);
    }
    const auto gh = scratch<C>(B * GH);  // W_hh h_{t-1} of the active rows
    const auto m = scratch<C>(project ? B * H : 0);  // the cell's output before W_hr
    std::optional<StepGemm> projection;  // h = m W_hr^T, in blocks of columns
    if (project) {
      projection.emplace(step_weight(layer.w.w_hr, w_hr), P, H, /*w_transposed=*/false, 1, pack);
    }
    const auto zero_gh = scratch<C>(layer.h0_zero ? GH : 0);
    std::fill(zero_gh.get(), zero_gh.get() + (layer.h0_zero ? GH : 0), C(0));
    const StepGemm recurrent(step_weight(layer.w.w_hh, w_hh), GH, P, /*w_transposed=*/false,
                             Cell::kGates, pack);
    const int64_t blocks = recurrent.unit_blocks();
    const bool by_rows = split_by_rows<Cell, kBf16Dot>(layer, threads.count);
    SpinBarrier barrier;

    bool_switch(training, [&](auto kTraining) {
      bool_switch(layer.w.b_ih != nullptr, [&](auto kHasBias) {
        const int64_t team = std::min(threads.count, by_rows ? B : blocks);
        threads.team(team, [&](int64_t rank, int64_t size) {
          // this thread's units [j0, j1), columns of h [p0, p1) and rows [b0, b1)
          const auto [j0, j1] = by_rows ? std::pair{int64_t{0}, H} : share(H, kUnits, rank, size);
          const int64_t u0 = j0 / kUnits, u1 = (j1 + kUnits - 1) / kUnits;
          const auto [p0, p1] = by_rows   ? std::pair{int64_t{0}, P}
                                : project ? share(P, kUnits, rank, size)
                                          : std::pair{j0, j1};
          const int64_t q0 = p0 / kUnits, q1 = (p1 + kUnits - 1) / kUnits;  // as the projection's
          const auto [b0, b1] = by_rows ? share(B, 1, rank, size) : std::pair{int64_t{0}, B};
          if (by_rows) {
            pack_every_panel<StepGemm>({recurrent_unused ? nullptr : &recurrent,
                                        input ? &*input : nullptr,
                                        projection ? &*projection : nullptr},
                                       rank, size, barrier);
          } else {
            if (!recurrent_unused) recurrent.pack_units(u0, u1);
            if (input) input->pack_units(u0, u1);
            if (projection) projection->pack_units(q0, q1);
          }
          C* h_prev = h.data();
          C* h_cur = h_next.data();
          // gx of the first row of step t
          auto gx_of = [&](int64_t t) {
            return gx + (gx_per_batch_row ? 0 : layer.offsets[t] * ld_gx);
          };
          // W_ih x of step s, this thread's units: it depends on no other thread's work
          auto input_product = [&](int64_t s) {
            const int64_t t = layer.step(s);
            input->multiply_units(u0, u1, active_rows(layer, t, b0, b1), x_rows + (layer.offsets[t] + b0) * ld_x,
                                  ld_x, gx_of(t) + b0 * ld_gx, ld_gx, /*accumulate=*/false,
                                  layer.batch_sizes[t]);
          };
          if (input) input_product(0);
          for (int64_t s = 0; s < layer.T; ++s) {
            const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
            const int64_t rows = active_rows(layer, t, b0, b1), b_end = b0 + rows;
            C* gx_step = gx_of(t);
            const bool zero_product = s == 0 && layer.h0_zero;
            if (!zero_product) {
              recurrent.multiply_units(u0, u1, rows, h_prev + b0 * P, P, gh.get() + b0 * GH, GH,
                                       /*accumulate=*/false, Bt);
            }
            for (int64_t b = b0; b < b_end; ++b) {
              const int64_t r = row0 + b;
              C* h_row = project ? m.get() + b * H : h_cur + b * P;
              C* c_row = Cell::kHasCellState ? c.data() + b * H : nullptr;
              ForwardRow<scalar_t> row;
              row.x_pre = gx_step + b * ld_gx;
              row.h_pre = zero_product ? zero_gh.get() : gh.get() + b * GH;
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
              if (!by_rows) barrier.wait(size);  // m of every unit
              projection->multiply_units(q0, q1, rows, m.get() + b0 * H, H, h_cur + b0 * P, P,
                                         /*accumulate=*/false, Bt);
            }
            copy_columns(h_cur + b0 * P, P, rows, p0, p1,
                         layer.out + (row0 + b0) * layer.ld_out, layer.ld_out);
            // rows no longer (or not yet) active keep their state
            copy_columns(h_prev + b_end * P, P, b1 - b_end, p0, p1, h_cur + b_end * P, P);
            if (by_rows) {  // no other thread reads this one's rows
              if (input && s + 1 < layer.T) input_product(s + 1);
            } else {
              // h_t whole before the next product reads it; meanwhile the next step's input
              // product, which fills the time a thread would spin waiting for a later one
              const int64_t round = barrier.arrive(size);
              if (input && s + 1 < layer.T) input_product(s + 1);
              barrier.await(round);
            }
            std::swap(h_prev, h_cur);
          }
        });
      });
    });
    const std::vector<C>& h_last = layer.T % 2 == 0 ? h : h_next;
    std::transform(h_last.begin(), h_last.end(), layer.h_n, convert<scalar_t, C>);
    if constexpr (Cell::kHasCellState) {
      std::transform(c.begin(), c.end(), layer.c_n, convert<scalar_t, C>);
    }
  }

  // Backward walks the steps in reverse on a team, like forward: each thread owns a share of the
  // units, runs the cell's backward on them, waits once for the others (the product reads dgh of
  // every unit), then computes its columns of dL/dh_{t-1} = dgh_t W_hh, which are its own units'
  // (with a projection its share of h's columns, and a second wait before dL/dm = dh W_hr).
  // Or (split_by_rows) each thread owns a share of the batch's rows, as in forward.
  template <class Cell>
  void layer_backward(const Layer<scalar_t>& layer, const LayerGradIO<scalar_t>& g) const {
    const int64_t B = layer.B, N = layer.N, H = layer.H, P = layer.P;
    const int64_t GH = Cell::kGates * H, SH = Cell::kSaved * H;
    const CellOptions options = layer.options;  // a local copy: the cell loops read it freely
    const bool project = layer.w.w_hr != nullptr;
    const Threads& threads = ctx_.threads;

    // dL/d(pre-activations) of every row: of W_ih x (dgx) and of W_hh h_{t-1} (dgh), the same
    // buffer except for the GRU.
    const auto dgx = scratch<C>(N * GH);
    const auto dgh_buffer = scratch<C>(Cell::kSplitHiddenGrad ? N * GH : 0);
    C* dgh = Cell::kSplitHiddenGrad ? dgh_buffer.get() : dgx.get();
    const auto h_prev_rows = scratch<C>(N * P);  // h_{t-1} of every row, for dW_hh
    // (the whole-sequence product of dL/dx takes the C copy of W_ih, made where it runs)
    const bool fuse_input_grad = g.grad_x && input_in_steps<Cell, kBf16Dot>(layer);
    const AsCompute<C, scalar_t> w_ih(fuse_input_grad ? copied(layer.w.w_ih) : layer.w.w_ih,
                                      GH * layer.I);
    const AsCompute<C, scalar_t> w_hh(copied(layer.w.w_hh), GH * P);
    const AsCompute<C, scalar_t> w_hr(copied(layer.w.w_hr), P * H);
    // dL/dh_{t-1} = dgh_t W_hh at every step but the first, whose result only dL/dh0 wants: at T=1
    // without it, no product at all (nor its packing).
    const bool want_h0 = g.grad_h0 != nullptr;
    std::optional<StepGemm> recurrent;
    const bool pack = pack_step_weights(layer);
    if (layer.T > 1 || want_h0) {
      recurrent.emplace(step_weight(layer.w.w_hh, w_hh), P, GH, /*w_transposed=*/true, 1, pack);
    }
    // Where forward computes W_ih x in the steps (input_in_steps), backward computes dL/dx =
    // dgx W_ih in them too, each thread a share of x's columns, for a step whose dgx is whole:
    // while it waits for the others at the next step's barrier. dL/dx is made in C and stored
    // (added, for a second direction) as scalar_t after the steps.
    const bool want_x = g.grad_x != nullptr;
    const ComputeOut<C, scalar_t> grad_x(g.grad_x, N * layer.I);
    std::optional<StepGemm> input_grad;
    if (fuse_input_grad) {
      input_grad.emplace(step_weight(layer.w.w_ih, w_ih), layer.I, GH, /*w_transposed=*/true, 1,
                         pack);
    }
    const bool accumulate_grad_x = g.accumulate_grad_x && kSameTypes;  // else store() adds

    // dL/dh and dL/dc flowing back through the running state, row b for sequence b
    std::vector<C> dh(B * P, C(0));
    std::vector<C> dc(Cell::kHasCellState ? B * H : 0, C(0));
    if (g.grad_h_n) std::transform(g.grad_h_n, g.grad_h_n + B * P, dh.begin(), convert<C, scalar_t>);
    if (Cell::kHasCellState && g.grad_c_n) {
      std::transform(g.grad_c_n, g.grad_c_n + B * H, dc.begin(), convert<C, scalar_t>);
    }

    // With a projection h = W_hr m: dL/dm of the active rows, and for the W_hr gradient dL/dh and
    // m of every row.
    const auto dm = scratch<C>(project ? B * H : 0);
    const auto dh_rows = scratch<C>(project ? N * P : 0);
    const auto m_rows = scratch<C>(project ? N * H : 0);
    std::optional<StepGemm> projection;  // dm = dh W_hr, the units' columns
    if (project) {
      projection.emplace(step_weight(layer.w.w_hr, w_hr), H, P, /*w_transposed=*/true, 1, pack);
    }
    SpinBarrier barrier;

    // The bias gradients are the column sums of dgx and dgh; where those are one buffer, b_hh's
    // is a copy of b_ih's, made at the end.
    const bool copy_db = !Cell::kSplitHiddenGrad && g.grads.b_ih && g.grads.b_hh;
    const ComputeOut<C, scalar_t> db_ih_out(g.grads.b_ih, GH);
    const ComputeOut<C, scalar_t> db_hh_out(copy_db ? nullptr : g.grads.b_hh, GH);
    C* const db_ih = db_ih_out.get();
    C* const db_hh = db_hh_out.get();

    // Shared by units as forward is, or by rows (split_by_rows): each thread then sums the bias
    // gradients of its rows into its own GH values, added in rank order after the steps.
    const bool by_rows = split_by_rows<Cell, kBf16Dot>(layer, threads.count);
    const int64_t team = std::min(threads.count, by_rows ? B : (H + kUnits - 1) / kUnits);
    const auto db_parts = scratch<C>(by_rows ? 2 * team * GH : 0);  // [b_ih, b_hh][rank][GH]
    // (zeros: a team may have fewer threads than asked)
    std::fill(db_parts.get(), db_parts.get() + (by_rows ? 2 * team * GH : 0), C(0));

    // Recorded gradient norms: each thread's sums of squares of its columns (or rows), per
    // step, added in rank order after the steps.
    const bool record = g.h_norms != nullptr;
    std::vector<double> squares(record ? 2 * layer.T * team : 0, 0.0);
    const auto dc_total = scratch<C>(record && Cell::kHasCellState ? B * H : 0);
    const auto sum_squares = [](const C* rows, int64_t ld, int64_t count, int64_t c0,
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
        // this thread's units [j0, j1), rows [b0, b1), columns of dh [p0, p1) (its units, or with
        // a projection a share of P) and of dL/dx [i0, i1)
        const auto [j0, j1] = by_rows ? std::pair{int64_t{0}, H} : share(H, kUnits, rank, size);
        const int64_t u0 = j0 / kUnits, u1 = (j1 + kUnits - 1) / kUnits;
        const auto [p0, p1] = by_rows   ? std::pair{int64_t{0}, P}
                              : project ? share(P, kUnits, rank, size)
                                        : std::pair{j0, j1};
        const int64_t q0 = p0 / kUnits, q1 = (p1 + kUnits - 1) / kUnits;  // as the product's
        const auto [i0, i1] =
            by_rows ? std::pair{int64_t{0}, layer.I} : share(layer.I, kUnits, rank, size);
        const int64_t v0 = i0 / kUnits, v1 = (i1 + kUnits - 1) / kUnits;
        const auto [b0, b1] = by_rows ? share(B, 1, rank, size) : std::pair{int64_t{0}, B};
        if (by_rows) {
          pack_every_panel<StepGemm>({recurrent ? &*recurrent : nullptr,
                                      projection ? &*projection : nullptr,
                                      input_grad ? &*input_grad : nullptr},
                                     rank, size, barrier);
        } else {
          if (recurrent) recurrent->pack_units(q0, q1);
          if (projection) projection->pack_units(u0, u1);
          if (input_grad) input_grad->pack_units(v0, v1);
        }
        auto input_grad_product = [&](int64_t s) {  // dL/dx of step s, this thread's share
          const int64_t t = layer.step(s), row = layer.offsets[t] + b0;
          input_grad->multiply_units(v0, v1, active_rows(layer, t, b0, b1), dgx.get() + row * GH, GH,
                                     grad_x.get() + row * g.ld_grad_x, g.ld_grad_x,
                                     accumulate_grad_x, layer.batch_sizes[t]);
        };
        // the bias gradients this thread sums into: its units' of the whole, or its own part
        C* const my_db_ih = by_rows && db_ih ? db_parts.get() + rank * GH : db_ih;
        C* const my_db_hh = by_rows && db_hh ? db_parts.get() + (team + rank) * GH : db_hh;
        for (C* db : {my_db_ih, my_db_hh}) {
          if (!db) continue;
          for (int64_t k = 0; k < Cell::kGates; ++k) std::fill(db + k * H + j0, db + k * H + j1, C(0));
        }
        for (int64_t s = layer.T - 1; s >= 0; --s) {
          const int64_t t = layer.step(s), Bt = layer.batch_sizes[t], row0 = layer.offsets[t];
          const int64_t rows = active_rows(layer, t, b0, b1), b_end = b0 + rows;
          if (g.grad_out) {
            for (int64_t b = b0; b < b_end; ++b) {
              const scalar_t* go = g.grad_out + (row0 + b) * g.ld_grad_out;
              for (int64_t k = p0; k < p1; ++k) dh[b * P + k] += convert<C>(go[k]);
            }
          }
          if constexpr (decltype(kRecord)::value) {  // dL/dh_t whole: from the output and t+1
            squares[(t * team + rank) * 2] = sum_squares(dh.data() + b0 * P, P, rows, p0, p1);
          }
          const C* dh_cell = dh.data();  // dL/d(the cell's output), [Bt, H]
          if (project) {
            copy_columns(dh.data() + b0 * P, P, rows, p0, p1, dh_rows.get() + (row0 + b0) * P, P);
            if (!by_rows) barrier.wait(size);  // dh of every column
            projection->multiply_units(u0, u1, rows, dh.data() + b0 * P, P, dm.get() + b0 * H, H,
                                       /*accumulate=*/false, Bt);
            dh_cell = dm.get();
          }
          for (int64_t b = b0; b < b_end; ++b) {
            const int64_t r = row0 + b;
            const int64_t prev = layer.prev_step(t, b);
            const int64_t prev_row = prev >= 0 ? layer.offsets[prev] + b : -1;
            const scalar_t* h_prev =
                prev >= 0 ? layer.out + prev_row * layer.ld_out : layer.h0 + b * P;
            copy_columns(h_prev, P, 1, p0, p1, h_prev_rows.get() + r * P, P);
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
            if (my_db_ih) add_units(dgx.get() + r * GH, Cell::kGates, H, j0, j1, my_db_ih);
            if (my_db_hh) add_units(dgh + r * GH, Cell::kGates, H, j0, j1, my_db_hh);
            if constexpr (Cell::kHasProjection) {
              if (project) {
                for (int64_t j = j0; j < j1; ++j) {
                  m_rows[r * H + j] = convert<C>(Cell::unprojected_h(j, H, saved_row));
                }
              }
            }
          }
          if constexpr (decltype(kRecord)::value && Cell::kHasCellState) {
            squares[(t * team + rank) * 2 + 1] =
                sum_squares(dc_total.get() + b0 * H, H, rows, j0, j1);
          }
          if (by_rows) {  // no other thread reads this one's rows
            if (input_grad && s + 1 < layer.T) input_grad_product(s + 1);
          } else {
            const int64_t round = barrier.arrive(size);  // dgh (and dgx) of every unit
            if (input_grad && s + 1 < layer.T) input_grad_product(s + 1);
            barrier.await(round);
          }
          // dL/dh_{t-1} = dgh_t W_hh, plus the direct path the GRU left in dh
          if (s > 0 || want_h0) {
            recurrent->multiply_units(q0, q1, rows, dgh + (row0 + b0) * GH, GH,
                                      dh.data() + b0 * P, P,
                                      /*accumulate=*/Cell::kSplitHiddenGrad, Bt);
          }
        }
        if (input_grad) input_grad_product(0);
      });
    });
    if (by_rows) {  // the threads' bias gradients, in rank order
      for (auto [db, part] : {std::pair{db_ih, 0}, std::pair{db_hh, 1}}) {
        if (!db) continue;
        const C* parts = db_parts.get() + part * team * GH;
        std::copy(parts, parts + GH, db);
        for (int64_t r = 1; r < team; ++r) add_units(parts + r * GH, Cell::kGates, H, 0, H, db);
      }
    }
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
    if (want_h0) std::transform(dh.begin(), dh.end(), g.grad_h0, convert<scalar_t, C>);
    if constexpr (Cell::kHasCellState) {
      std::transform(dc.begin(), dc.end(), g.grad_c0, convert<scalar_t, C>);
    }

    if (want_x && !input_grad) {
      whole_sequence_gemm(false, false, N, layer.I, GH, dgx.get(), GH, w_ih.get(), layer.I,
                          accumulate_grad_x ? 1 : 0, grad_x.get(), g.ld_grad_x);
    }
    grad_x.store(g.accumulate_grad_x);
    // dW_hh sums dgh^T h_{t-1} over the rows; with h0 zero the first step's rows (the first
    // rows, or in the reverse direction the last) add nothing: left out (at T = 1, all of them).
    int64_t hh_row0 = 0, hh_rows = N;
    if (layer.h0_zero) {
      hh_rows -= layer.batch_sizes[layer.step(0)];
      if (!layer.reverse) hh_row0 = layer.batch_sizes[0];
    }
    if constexpr (kBf16Dot) {
      if (ctx_.bf16_gemm) {
        bf16_weight_grads<Cell>(layer, g, dgx.get(), dgh, h_prev_rows.get(), dh_rows.get(),
                                m_rows.get(), db_ih_out, db_hh_out, copy_db, hh_row0, hh_rows);
        return;
      }
    }
    {
      const AsCompute<C, scalar_t> x(layer.x, N, layer.I, layer.ldx);
      const ComputeOut<C, scalar_t> dw_ih(g.grads.w_ih, GH * layer.I);
      whole_sequence_gemm(true, false, GH, layer.I, N, dgx.get(), GH, x.get(), x.ld(), 0,
                          dw_ih.get(), layer.I);
      dw_ih.store();
    }
    const ComputeOut<C, scalar_t> dw_hh(g.grads.w_hh, GH * P);
    whole_sequence_gemm(true, false, GH, P, hh_rows, dgh + hh_row0 * GH, GH,
                        h_prev_rows.get() + hh_row0 * P, P, 0, dw_hh.get(), P);
    dw_hh.store();
    db_ih_out.store();
    db_hh_out.store();
    if (copy_db) std::copy(g.grads.b_ih, g.grads.b_ih + GH, g.grads.b_hh);
    if (project) {
      const ComputeOut<C, scalar_t> dw_hr(g.grads.w_hr, P * H);
      whole_sequence_gemm(true, false, P, H, N, dh_rows.get(), P, m_rows.get(), H, 0,
                          dw_hr.get(), H);
      dw_hr.store();
    }
  }

 private:
  // The weight gradients of a bfloat16 layer as bfloat16 products (ctx_.bf16_gemm, float32
  // sums): dgx, dgh, h_{t-1}, dL/dh and m of every row rounded to bfloat16 first (a pass over
  // each, split over the threads), then dW = (rows)^T (rows); the bias gradients are the float32
  // column sums made in the steps.
  template <class Cell>
  void bf16_weight_grads(const Layer<scalar_t>& layer, const LayerGradIO<scalar_t>& g,
                         const C* dgx, const C* dgh, const C* h_prev_rows, const C* dh_rows,
                         const C* m_rows, const ComputeOut<C, scalar_t>& db_ih,
                         const ComputeOut<C, scalar_t>& db_hh, bool copy_db, int64_t hh_row0,
                         int64_t hh_rows) const {
    const int64_t N = layer.N, H = layer.H, P = layer.P, GH = Cell::kGates * H;
    const auto rounded = [&](const C* src, int64_t n) {
      auto dst = scratch<scalar_t>(n);
      const int64_t tasks = std::min<int64_t>(ctx_.threads.count, (n + 4095) / 4096);
      ctx_.threads.run(tasks, [&](int64_t i) {
        const int64_t begin = n * i / tasks, end = n * (i + 1) / tasks;
        to_bfloat16(src + begin, dst.get() + begin, end - begin);
      });
      return dst;
    };
    const auto dgx16 = rounded(dgx, N * GH);
    const auto dgh16 = Cell::kSplitHiddenGrad ? rounded(dgh, N * GH) : Scratch<scalar_t>();
    const scalar_t* dgh_rows = Cell::kSplitHiddenGrad ? dgh16.get() : dgx16.get();
    ctx_.bf16_gemm(true, false, GH, layer.I, N, dgx16.get(), GH, layer.x, layer.ldx, 0,
                   g.grads.w_ih, layer.I);
    if (hh_rows > 0) {
      ctx_.bf16_gemm(true, false, GH, P, hh_rows, dgh_rows + hh_row0 * GH, GH,
                     rounded(h_prev_rows + hh_row0 * P, hh_rows * P).get(), P, 0, g.grads.w_hh,
                     P);
    } else {
      std::fill(g.grads.w_hh, g.grads.w_hh + GH * P, convert<scalar_t>(C(0)));
    }
    if (layer.w.w_hr) {
      ctx_.bf16_gemm(true, false, P, H, N, rounded(dh_rows, N * P).get(), P,
                     rounded(m_rows, N * H).get(), H, 0, g.grads.w_hr, H);
    }
    db_ih.store();
    db_hh.store();
    if (copy_db) std::copy(g.grads.b_ih, g.grads.b_ih + GH, g.grads.b_hh);
  }

  // C = op(A) op(B) + beta C over all rows of the sequence: on the engine the glue chose, else
  // split over the threads.
  void whole_sequence_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K,
                           const C* A, int64_t lda, const C* B, int64_t ldb, C beta, C* out,
                           int64_t ldc) const {
    if (K == 0) {  // no rows: C = beta C, which a BLAS may compute as garbage times zero
      for (int64_t i = 0; i < M; ++i) {
        C* row = out + i * ldc;
        for (int64_t j = 0; j < N; ++j) row[j] = beta == C(0) ? C(0) : beta * row[j];
      }
      return;
    }
    if (ctx_.sequence_gemm) {
      ctx_.sequence_gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, out, ldc);
    } else {
      parallel_gemm<C>(ctx_.threads, trans_a, trans_b, M, N, K, A, lda, B, ldb, beta, out, ldc);
    }
  }

  const Context<C>& ctx_;
};

}  // namespace

template <typename scalar_t>
void rnn_forward(const RnnParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx) {
#if defined(FASTRNN_BF16_KERNEL)
  if constexpr (std::is_same_v<scalar_t, bfloat16>) {
    if (has_bf16_dot()) return run_stack_forward(Driver<scalar_t, true>(ctx), p);
  }
#endif
  run_stack_forward(Driver<scalar_t>(ctx), p);
}

template <typename scalar_t>
void rnn_backward(const RnnGradParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx) {
#if defined(FASTRNN_BF16_KERNEL)
  if constexpr (std::is_same_v<scalar_t, bfloat16>) {
    if (has_bf16_dot()) return run_stack_backward(Driver<scalar_t, true>(ctx), p);
  }
#endif
  run_stack_backward(Driver<scalar_t>(ctx), p);
}

bool bf16_dot() { return has_bf16_dot(); }

#define FASTRNN_INSTANTIATE(T)                                                      \
  template void rnn_forward<T>(const RnnParams<T>&, const Context<compute_t<T>>&); \
  template void rnn_backward<T>(const RnnGradParams<T>&, const Context<compute_t<T>>&);
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA
