// The CUDA drivers under host emulation against the CPU drivers, without torch: a standalone
// binary that .ci/emulation-sanitizers builds with ThreadSanitizer and with AddressSanitizer +
// UBSan (torch's libraries are not instrumented, this binary has none of them). For every cell,
// float, float with TF32 (the persistent path's products as tensor-core tiles, ctx.mma_tile),
// double and bfloat16 (the 16-bit GEMMs of cuda/through_float.h, and on the persistent path
// tensor-core tiles of bfloat16 weights in shared memory), a packed, bidirectional, two-layer
// stack (with a projection for the LSTM, dropout masks, grad_clip, recorded norms): forward and
// backward of both drivers on the same random values, the CUDA drivers on each of their paths:
// alternating, and persistent (cooperative launches: every thread of every block a host thread,
// block and grid barriers) on an emulated A100 and on one of 3 SMs (blocks of several units);
// exits 1 if any output or gradient differs beyond rounding, or a path or product did not run.
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "core/params.h"
#include "core/reserve.h"
#include "cpu/rnn_cpu.h"
#include "cuda/emulator.h"

namespace {

using namespace fastrnn;

template <typename T>
double value(T x) {
  return static_cast<compute_t<T>>(x);
}

template <typename Scalar>
struct Problem {
  using T = Scalar;
  CellKind cell;
  int64_t steps = 5, B = 3, N = 0, I = 4, H, P, L = 2, D = 2, G, S;
  std::vector<int64_t> batch_sizes{3, 3, 2, 1, 1}, offsets;
  std::vector<T> x, hx, cx, masks;
  std::vector<std::vector<T>> w;  // per (l, d): w_ih, w_hh, b_ih, b_hh, w_hr
  std::vector<LayerWeights<T>> lw;

  Problem(CellKind kind, int64_t hidden, int64_t proj, std::mt19937& rng) : cell(kind), H(hidden) {
    visit_cell(kind, [&](auto c) {
      G = decltype(c)::kGates;
      S = decltype(c)::kSaved;
    });
    P = proj ? proj : H;
    for (int64_t b : batch_sizes) offsets.push_back(N), N += b;
    std::uniform_real_distribution<double> u(-0.5, 0.5);
    auto fill = [&](int64_t n, double scale = 1.0) {
      std::vector<T> v(n);
      for (T& e : v) e = T(u(rng) * scale);
      return v;
    };
    const double k = 2 / std::sqrt(double(H));  // torch.nn's init range, 1/sqrt(H)
    x = fill(N * I), hx = fill(L * D * B * P), cx = fill(L * D * B * H);
    masks = fill((L - 1) * N * D * P);
    for (T& m : masks) m = value(m) > -0.2 ? T(1.4) : T(0);
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t d = 0; d < D; ++d) {
        const int64_t I_l = l == 0 ? I : D * P;
        w.push_back(fill(G * H * I_l, k)), w.push_back(fill(G * H * P, k));
        w.push_back(fill(G * H, k)), w.push_back(fill(G * H, k)), w.push_back(fill(P * H, k));
      }
    }
    for (int64_t k = 0; k < L * D; ++k) {
      LayerWeights<T> one;
      one.w_ih = w[5 * k].data(), one.w_hh = w[5 * k + 1].data();
      one.b_ih = w[5 * k + 2].data(), one.b_hh = w[5 * k + 3].data();
      one.w_hr = proj ? w[5 * k + 4].data() : nullptr;
      lw.push_back(one);
    }
  }
};

template <typename T>
struct Run {
  std::vector<T> output, h_n, c_n, reserve, grad_x, grad_hx, grad_cx;
  std::vector<std::vector<T>> grads;
  std::vector<float> norms;
};

template <typename T, class Forward, class Backward>
Run<T> run(const Problem<T>& pr, Forward forward, Backward backward) {
  Run<T> r;
  RnnParams<T> p;
  p.cell = pr.cell;
  p.options.grad_clip = 0.05;
  p.T = pr.steps, p.B = pr.B, p.N = pr.N, p.I = pr.I, p.H = pr.H, p.P = pr.P, p.L = pr.L, p.D = pr.D;
  p.batch_sizes = pr.batch_sizes.data(), p.offsets = pr.offsets.data();
  p.x = pr.x.data(), p.ldx = pr.I, p.hx = pr.hx.data();
  p.cx = pr.cell == CellKind::kLstm ? pr.cx.data() : nullptr;
  p.weights = pr.lw.data(), p.dropout_masks = pr.masks.data();
  r.output.resize(pr.N * pr.D * pr.P), r.h_n.resize(pr.L * pr.D * pr.B * pr.P);
  r.c_n.resize(pr.L * pr.D * pr.B * pr.H);
  r.reserve.resize(pr.N * reserve_width(pr.L, pr.D, pr.S, pr.H, pr.P));
  p.output = r.output.data(), p.h_n = r.h_n.data(), p.reserve = r.reserve.data();
  p.c_n = pr.cell == CellKind::kLstm ? r.c_n.data() : nullptr;
  forward(p);

  RnnGradParams<T> g;
  g.fwd = p;
  std::vector<T> grad_out(r.output.size(), T(0.3));
  for (size_t i = 0; i < grad_out.size(); i += 3) grad_out[i] = T(-0.7);
  g.grad_output = grad_out.data();
  r.grad_x.resize(pr.N * pr.I), r.grad_hx.resize(r.h_n.size()), r.grad_cx.resize(r.c_n.size());
  g.grad_x = r.grad_x.data(), g.grad_hx = r.grad_hx.data();
  g.grad_cx = pr.cell == CellKind::kLstm ? r.grad_cx.data() : nullptr;
  std::vector<LayerGrads<T>> lg(pr.L * pr.D);
  for (size_t k = 0; k < pr.w.size(); ++k) r.grads.emplace_back(pr.w[k].size());
  for (int64_t k = 0; k < pr.L * pr.D; ++k) {
    lg[k].w_ih = r.grads[5 * k].data(), lg[k].w_hh = r.grads[5 * k + 1].data();
    lg[k].b_ih = r.grads[5 * k + 2].data(), lg[k].b_hh = r.grads[5 * k + 3].data();
    lg[k].w_hr = pr.lw[k].w_hr ? r.grads[5 * k + 4].data() : nullptr;
  }
  g.grads = lg.data();
  r.norms.resize(2 * pr.L * pr.D * pr.steps);
  g.grad_norms = r.norms.data();
  backward(g);
  return r;
}

template <typename T>
double max_diff(const std::vector<T>& a, const std::vector<T>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, std::abs(value(a[i]) - value(b[i])) / (1 + std::abs(value(b[i]))));
  }
  return worst;
}

template <typename T>
bool check(CellKind kind, int64_t hidden, int64_t proj, const char* name, const char* path,
           std::mt19937& rng, bool tf32 = false) {
  constexpr bool half = std::is_same_v<T, bfloat16>;
  const Problem<T> pr(kind, hidden, proj, rng);
  const cpu::Context<compute_t<T>> ctx;  // one thread, the drivers' own BLAS calls
  const Run<T> cpu = run(pr, [&](const auto& p) { cpu::baseline::rnn_forward(p, ctx); },
                         [&](const auto& g) { cpu::baseline::rnn_backward(g, ctx); });
  const cuda::EmulationStats before = cuda::emulation_stats();
  const Run<T> gpu = run(pr, [&](const auto& p) { cuda::emulated_forward(p, tf32); },
                         [&](const auto& g) { cuda::emulated_backward(g, tf32); });
  const cuda::EmulationStats after = cuda::emulation_stats();
  // bfloat16: every GEMM a 16-bit one, none elsewhere
  const int64_t gemms = after.gemms - before.gemms, half_gemms = after.half_gemms - before.half_gemms;
  const bool products_ok = gemms > 0 && half_gemms == (half ? gemms : 0);
  double worst = std::max({max_diff(cpu.output, gpu.output), max_diff(cpu.h_n, gpu.h_n),
                           max_diff(cpu.c_n, gpu.c_n), max_diff(cpu.grad_x, gpu.grad_x),
                           max_diff(cpu.grad_hx, gpu.grad_hx), max_diff(cpu.grad_cx, gpu.grad_cx),
                           max_diff(cpu.norms, gpu.norms)});
  for (size_t k = 0; k < cpu.grads.size(); ++k) {
    worst = std::max(worst, max_diff(cpu.grads[k], gpu.grads[k]));
  }
  // TF32 (the persistent path's products on tensor cores): operands of 11 significant bits,
  // unit roundoff 2^-11 = 4.9e-4; 4 of them (measured at most 2.6e-4; the alternating path
  // multiplies in float32 whatever the flag). bfloat16: the CPU drivers here multiply float32
  // copies, the CUDA drivers bfloat16 operands (rounded rows), and both round what they store:
  // about one rounding of bfloat16 apart (unit roundoff 2^-8 = 3.9e-3; measured at most 5.0e-3);
  // four of them, 2^-6
  const bool tiles = tf32 && std::string(path) == "persistent";
  const double tol = half ? 0x1p-6 : tiles ? 2e-3 : sizeof(T) == 4 ? 2e-5 : 1e-12;
  const bool ok = worst <= tol && products_ok;
  std::printf("%-11s %-8s %-8s H=%-3ld P=%-3ld max relative difference %.2e %s\n", path, name,
              half ? "bfloat16" : tf32 ? "tf32" : sizeof(T) == 4 ? "float" : "double",
              long(hidden), long(proj ? proj : hidden), worst,
              ok ? "ok" : products_ok ? "FAILED" : "FAILED (16-bit GEMMs)");
  return ok;
}

}  // namespace

int main() {
  // the bfloat16 checks draw from a generator of their own, so that the others' values do not
  // depend on which bfloat16 checks run
  std::mt19937 rng(0), rng16(1);
  bool ok = true;
  const struct {
    CellKind kind;
    const char* name;
    int64_t proj;
  } cells[] = {{CellKind::kLstm, "lstm", 3}, {CellKind::kLstm, "lstm", 0},
               {CellKind::kGru, "gru", 0},   {CellKind::kRnnTanh, "rnn_tanh", 0},
               {CellKind::kRnnRelu, "rnn_relu", 0}};
  const struct {
    const char* path;
    int64_t sms;  // of the emulated A100; 0: its own 108
  } paths[] = {{"alternating", 0}, {"persistent", 0}, {"persistent", 3}};
  for (const auto& p : paths) {
    const bool persistent = std::string(p.path) == "persistent";
    cuda::set_emulation_settings({p.path, "a100", p.sms});
    cuda::reset_emulation_stats();
    for (const auto& c : cells) {
      // 70: two blocks of threads per row (alternating); on 3 SMs, blocks of 24 units
      for (const int64_t hidden : {5, 70}) {
        if (p.sms == 0 && persistent && hidden > 5) continue;
        ok &= check<float>(c.kind, hidden, c.proj, c.name, p.path, rng);
        ok &= check<double>(c.kind, hidden, c.proj, c.name, p.path, rng);
        ok &= check<float>(c.kind, hidden, c.proj, c.name, p.path, rng, true);
        // bfloat16, not everywhere for the sanitizers' run time: every cell at H=5 (the
        // persistent path on the A100's 108 SMs, one unit a block, only the LSTM with a
        // projection), and on 3 SMs the tanh RNN at H=70 (several tiles a block); not the ReLU
        // RNN at H=70, where a pre-activation within a bfloat16 rounding of 0 flips its
        // derivative between the drivers (an O(1) difference)
        const bool one_unit_a_block = persistent && p.sms == 0;
        if (hidden == 5 ? !one_unit_a_block || c.proj > 0
                        : c.kind == CellKind::kRnnTanh && persistent) {
          ok &= check<bfloat16>(c.kind, hidden, c.proj, c.name, p.path, rng16);
        }
      }
    }
    const cuda::EmulationStats stats = cuda::emulation_stats();
    std::printf("%s (%ld SMs): %ld launches (%ld synchronising, %ld cooperative), %ld GEMMs "
                "(%ld 16-bit), %ld tensor-core tiles\n",
                p.path, long(p.sms ? p.sms : 108), long(stats.launches),
                long(stats.synced_launches), long(stats.cooperative_launches), long(stats.gemms),
                long(stats.half_gemms), long(stats.mma_tiles));
    ok &= stats.synced_launches > 0 && (stats.cooperative_launches > 0) == persistent;
    ok &= stats.half_gemms > 0;  // the bfloat16 runs' GEMMs
    ok &= (stats.mma_tiles > 0) == persistent;  // the TF32 and bfloat16 runs' products
  }
  std::printf("%s\n", ok ? "emulation_check: OK" : "emulation_check: FAILED");
  return ok ? 0 : 1;
}
