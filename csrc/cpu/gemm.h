// GEMMs on the kernels' threads: parallel_gemm() for any product, and RecurrentGemm for the
// product a step takes with the same matrix T times: C[M, N] (+)= A[M, K] W^T with W [N, K]
// (forward: gh = h W_hh^T, N = G*H, K = P), or W given transposed, [K, N] (backward:
// dh = dgh W_hh, N = P, K = G*H). Included by rnn_cpu.cpp, once per instruction set.
//
// RecurrentGemm computes a range of "unit blocks" (64 columns of every gate) on the calling
// thread, so each thread of a team can multiply and then run the cell on its own units. With
// AVX-512 and float, W^T is packed once per layer call into panels of 64 columns ([K][64] each,
// zero padded) that a register-blocked kernel (6 rows x 64 columns of accumulators) streams
// contiguously at every step; a thread touches only its own panels, so its share of W stays in
// its core's L2 across steps. Elsewhere each thread makes single-threaded BLAS calls on its
// columns.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cpu/blas.h"
#include "cpu/scratch.h"
#include "params.h"

namespace fastrnn::cpu::FASTRNN_CPU_ISA {

// gemm() on the thread pool: the larger of C's two sides is cut into one block per thread,
// each a single-threaded BLAS call (which then packs only its share of the operand it cuts).
// Blocks of columns are multiples of 16 (a cache line of floats); small products run as one call.
template <typename scalar_t>
inline void parallel_gemm(const Threads& threads, bool trans_a, bool trans_b, int64_t M,
                          int64_t N, int64_t K, const scalar_t* A, int64_t lda, const scalar_t* B,
                          int64_t ldb, scalar_t beta, scalar_t* C, int64_t ldc) {
  const bool split_rows = M >= N;
  const int64_t extent = split_rows ? M : N, align = split_rows ? 1 : 16;
  const int64_t units = (extent + align - 1) / align;
  const bool small = M * N * K < (int64_t{1} << 15);
  const int64_t tasks = small ? 1 : std::min<int64_t>(threads.count, units);
  threads.run(tasks, [&](int64_t i) {
    const int64_t begin = std::min(extent, units * i / tasks * align);
    const int64_t end = std::min(extent, units * (i + 1) / tasks * align);
    if (begin == end) return;
    if (split_rows) {
      gemm<scalar_t>(trans_a, trans_b, end - begin, N, K, 1, trans_a ? A + begin : A + begin * lda,
                     lda, B, ldb, beta, C + begin * ldc, ldc);
    } else {
      gemm<scalar_t>(trans_a, trans_b, M, end - begin, K, 1, A, lda,
                     trans_b ? B + begin * ldb : B + begin, ldb, beta, C + begin, ldc);
    }
  });
}


#if defined(__AVX512F__)
constexpr bool kPackedKernel = true;
#else
constexpr bool kPackedKernel = false;
#endif

template <typename scalar_t>
class RecurrentGemm {
 public:
  static constexpr bool kPacked = kPackedKernel && std::is_same_v<scalar_t, float>;
  static constexpr int64_t kPanel = 64;  // columns per panel: 4 AVX-512 vectors of floats
  static constexpr int64_t kKc = 128;    // rows of W^T per L1-resident slice of a panel

  // w: [N, K], or [K, N] when w_transposed. The N columns of C form `groups` equal groups (the
  // gates); a unit block u is columns [64u, 64u + 64) of every group, and its panels are packed
  // next to each other, so one thread can compute all gates of its units (multiply_units).
  // Each thread packs the unit blocks it multiplies (pack_units) before it multiplies them.
  RecurrentGemm(const scalar_t* w, int64_t N, int64_t K, bool w_transposed, int64_t groups = 1)
      : w_(w), N_(N), K_(K), w_transposed_(w_transposed), groups_(groups),
        width_(N / groups), unit_blocks_((N / groups + kPanel - 1) / kPanel) {
    if constexpr (kPacked) packed_ = scratch<scalar_t>(unit_blocks_ * groups_ * K * kPanel);
  }

  // Packs the panels of unit blocks [u0, u1), on the calling thread (whose cache then holds them).
  // Given transposed, a panel's rows are pieces of W's rows; otherwise 16x16 tiles of W are
  // transposed in registers (3x faster than gathering W's columns: at batch 1 the packing is
  // as long as a third of the steps' products).
  void pack_units(int64_t u0, int64_t u1) const {
#if defined(__AVX512F__)
    if constexpr (kPacked) {
      for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
        float* dst = packed_.get() + p * K_ * kPanel;
        const int64_t n0 = panel_column(p), width = panel_width(p);
        if (w_transposed_) {
          for (int64_t k = 0; k < K_; ++k, dst += kPanel) {
            const float* src = w_ + k * N_ + n0;
            std::copy(src, src + width, dst);
            std::fill(dst + width, dst + kPanel, 0.0f);
          }
          continue;
        }
        for (int64_t k0 = 0; k0 < K_; k0 += 16) {
          const int64_t k_count = std::min<int64_t>(16, K_ - k0);
          const auto k_mask = static_cast<__mmask16>((1u << k_count) - 1u);
          for (int64_t v = 0; v < 4; ++v) {  // W's rows n0 + 16v + i, zero past the panel's width
            const int64_t rows = std::clamp<int64_t>(width - 16 * v, 0, 16);
            __m512 tile[16];
            for (int64_t i = 0; i < 16; ++i) {
              tile[i] = i < rows ? _mm512_maskz_loadu_ps(k_mask, w_ + (n0 + 16 * v + i) * K_ + k0)
                                 : _mm512_setzero_ps();
            }
            transpose16(tile);
            for (int64_t i = 0; i < k_count; ++i) {
              _mm512_storeu_ps(dst + (k0 + i) * kPanel + 16 * v, tile[i]);
            }
          }
        }
      }
    }
#endif
  }

  // Unit blocks of 64 columns per group; multiply_units() takes a range of them.
  int64_t unit_blocks() const { return unit_blocks_; }

  // The columns of unit blocks [u0, u1) of every group of C[M, N] (leading dimension ldc) =
  // A[M, K] (leading dimension lda) W^T, added to C when accumulate; on the calling thread.
  void multiply_units(int64_t u0, int64_t u1, int64_t M, const scalar_t* A, int64_t lda,
                      scalar_t* C, int64_t ldc, bool accumulate) const {
    if (u0 >= u1 || M == 0) return;
    if constexpr (kPacked) {
      // With more rows than one register block, W is read once per block of rows: cut K so a
      // panel's slice (kc x 64 floats, 32 KiB) stays in L1 meanwhile.
      const int64_t k_blocks = M > 6 ? (K_ + kKc - 1) / kKc : 1;
      for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
        for (int64_t kb = 0; kb < k_blocks; ++kb) {
          const int64_t k0 = K_ * kb / k_blocks, k1 = K_ * (kb + 1) / k_blocks;
          panel(p, k0, k1, M, A, lda, C, ldc, accumulate || kb > 0);
        }
      }
    } else {
      const int64_t j0 = u0 * kPanel, cols = std::min(width_, u1 * kPanel) - j0;
      const scalar_t beta = accumulate ? 1 : 0;
      for (int64_t g = 0; g < groups_; ++g) {
        const int64_t n0 = g * width_ + j0;
        if (w_transposed_) {
          gemm<scalar_t>(false, false, M, cols, K_, 1, A, lda, w_ + n0, N_, beta, C + n0, ldc);
        } else {
          gemm<scalar_t>(false, true, M, cols, K_, 1, A, lda, w_ + n0 * K_, K_, beta, C + n0,
                         ldc);
        }
      }
    }
  }

 private:
#if defined(__AVX512F__)
  // r[i][j] becomes r[j][i]. Pairs of rows interleave, then pairs of those as doubles: lane L
  // of r[4i + j] is then column 4L + j of rows 4i..4i+3; two rounds of 128-bit lane shuffles
  // gather each column's four lanes.
  static void transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; ++i) {
      t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; ++i) {
      const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
      const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
      r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
      r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
      r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
      r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    for (int j = 0; j < 4; ++j) {  // lanes 0, 2 (0x88) or 1, 3 (0xdd) of a, then of b
      t[j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x88);
      t[4 + j] = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xdd);
      t[8 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x88);
      t[12 + j] = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xdd);
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0x88);
      r[8 + j] = _mm512_shuffle_f32x4(t[j], t[8 + j], 0xdd);
      r[4 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0x88);
      r[12 + j] = _mm512_shuffle_f32x4(t[4 + j], t[12 + j], 0xdd);
    }
  }

  // C[0:MR, 64p : 64p + 64) of one panel; the last panel stores only its valid columns. With
  // one or two rows, two sets of accumulators take alternate k, so that enough independent FMAs
  // are in flight to hide their latency.
  template <int MR>
  void block(int64_t p, int64_t k0, int64_t k1, const float* A, int64_t lda, float* C,
             int64_t ldc, bool accumulate) const {
    constexpr int kSets = MR <= 2 ? 2 : 1;
    const float* w = packed_.get() + p * K_ * kPanel;
    __m512 acc[kSets][MR][4];
#pragma GCC unroll 8
    for (int q = 0; q < kSets; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (int v = 0; v < 4; ++v) acc[q][r][v] = _mm512_setzero_ps();
      }
    }
    // (a lambda taking the accumulators by reference made GCC keep them in memory: 4x slower)
    int64_t k = k0;
    for (; k + kSets <= k1; k += kSets) {
#pragma GCC unroll 8
      for (int q = 0; q < kSets; ++q) {
        const float* wk = w + (k + q) * kPanel;
        const __m512 b0 = _mm512_loadu_ps(wk), b1 = _mm512_loadu_ps(wk + 16),
                     b2 = _mm512_loadu_ps(wk + 32), b3 = _mm512_loadu_ps(wk + 48);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m512 a = _mm512_set1_ps(A[r * lda + k + q]);
          acc[q][r][0] = _mm512_fmadd_ps(a, b0, acc[q][r][0]);
          acc[q][r][1] = _mm512_fmadd_ps(a, b1, acc[q][r][1]);
          acc[q][r][2] = _mm512_fmadd_ps(a, b2, acc[q][r][2]);
          acc[q][r][3] = _mm512_fmadd_ps(a, b3, acc[q][r][3]);
        }
      }
    }
    if (k < k1) {  // the odd last k of two sets
      const float* wk = w + k * kPanel;
      const __m512 b0 = _mm512_loadu_ps(wk), b1 = _mm512_loadu_ps(wk + 16),
                   b2 = _mm512_loadu_ps(wk + 32), b3 = _mm512_loadu_ps(wk + 48);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512 a = _mm512_set1_ps(A[r * lda + k]);
        acc[0][r][0] = _mm512_fmadd_ps(a, b0, acc[0][r][0]);
        acc[0][r][1] = _mm512_fmadd_ps(a, b1, acc[0][r][1]);
        acc[0][r][2] = _mm512_fmadd_ps(a, b2, acc[0][r][2]);
        acc[0][r][3] = _mm512_fmadd_ps(a, b3, acc[0][r][3]);
      }
    }
    if constexpr (kSets == 2) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (int v = 0; v < 4; ++v) acc[0][r][v] = _mm512_add_ps(acc[0][r][v], acc[1][r][v]);
      }
    }
    const int64_t n0 = panel_column(p), valid = panel_width(p);
#pragma GCC unroll 8
    for (int v = 0; v < 4; ++v) {
      const int64_t cols = std::clamp<int64_t>(valid - 16 * v, 0, 16);
      const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        float* c = C + r * ldc + n0 + 16 * v;
        const __m512 sum = accumulate
                               ? _mm512_add_ps(acc[0][r][v], _mm512_maskz_loadu_ps(mask, c))
                               : acc[0][r][v];
        _mm512_mask_storeu_ps(c, mask, sum);
      }
    }
  }
#endif

  // C[0:M, columns of panel p] (+)= A[0:M, k0:k1) W^T[k0:k1, columns of panel p]
  void panel(int64_t p, int64_t k0, int64_t k1, int64_t M, const scalar_t* A, int64_t lda,
             scalar_t* C, int64_t ldc, bool accumulate) const {
#if defined(__AVX512F__)
    if constexpr (kPacked) {
      // rows in blocks of at most 6, as even as can be (32 rows: 5 5 6 5 5 6, not 6 x 5 + 2)
      const int64_t blocks = (M + 5) / 6;
      for (int64_t i = 0, m = 0; i < blocks; ++i) {
        const int64_t rows = M * (i + 1) / blocks - m;
        const float* a = A + m * lda;
        float* c = C + m * ldc;
        m += rows;
        switch (rows) {
          case 6: block<6>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          case 5: block<5>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          case 4: block<4>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          case 3: block<3>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          case 2: block<2>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          case 1: block<1>(p, k0, k1, a, lda, c, ldc, accumulate); break;
          default: break;
        }
      }
    }
#endif
  }

  // Panel p holds unit block p / groups of group p % groups.
  int64_t panel_column(int64_t p) const { return (p % groups_) * width_ + (p / groups_) * kPanel; }
  int64_t panel_width(int64_t p) const {
    return std::min<int64_t>(kPanel, width_ - (p / groups_) * kPanel);
  }

  const scalar_t* w_;
  int64_t N_, K_;
  bool w_transposed_;
  int64_t groups_, width_, unit_blocks_;
  Scratch<scalar_t> packed_;  // written by pack_units
};

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA
