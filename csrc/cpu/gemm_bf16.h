// The step products of bfloat16 weights on CPUs with AVX512_BF16 (Zen 4, Cooper Lake, Sapphire
// Rapids and later): vdpbf16ps multiplies pairs of bfloat16 and adds both products to a float32
// lane, twice the multiply-adds of a float32 FMA per instruction. Bf16Gemm has RecurrentGemm's
// interface (cpu/gemm.h): C[M, N] (+)= A[M, K] W^T in unit blocks of 64 columns of every group,
// packed once per layer call by the thread that multiplies them, C in float32. Only in the
// AVX-512 build of the drivers, and only where the CPU has the instruction (has_bf16_dot):
// elsewhere the drivers run bfloat16 through float32 (cpu/rnn_cpu.cpp).
//
// Packed layout: a panel is 64 columns of W^T as K2 = ceil(K/2) rows of 64 pairs, each pair
// (W^T[2k, n], W^T[2k+1, n]) one 32-bit word, the odd K padded with a zero. A's rows are made
// pairs too (float A rounded to bfloat16, to nearest even), and a pair of A broadcast to every
// lane meets a row of the panel: lane n gains A[2k] W^T[2k, n] + A[2k+1] W^T[2k+1, n]. Each
// element of C is summed in the same order whichever rows and columns it is computed with, so
// results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "cells/half.h"
#include "cpu/gemm.h"
#include "cpu/scratch.h"

namespace fastrnn::cpu::FASTRNN_CPU_ISA {

#if defined(__AVX512F__)
#define FASTRNN_BF16_KERNEL 1
#define FASTRNN_TARGET_BF16 __attribute__((target("avx512bf16")))

// Whether this CPU has vdpbf16ps; FASTRNN_BF16_DOT=0 turns the kernel off (the tests run both).
inline bool has_bf16_dot() {
  static const bool has = [] {
    const char* want = std::getenv("FASTRNN_BF16_DOT");
    if (want && std::strcmp(want, "0") == 0) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512bf16") != 0;
  }();
  return has;
}

// dst[0:n] = src[0:n] rounded to bfloat16 (to nearest even), 32 at a time.
FASTRNN_TARGET_BF16 inline void to_bfloat16(const float* src, bfloat16* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
    _mm512_storeu_si512(dst + i, reinterpret_cast<const __m512i&>(v));
  }
  for (; i < n; ++i) dst[i] = bfloat16(src[i]);
}

class Bf16Gemm {
 public:
  static constexpr bool kPacked = true;
  static constexpr int64_t kPanel = 64;  // columns per unit block and per panel

  // w: bfloat16 [N, K], or [K, N] when w_transposed; `groups` equal groups of N's columns (the
  // gates), as RecurrentGemm. It always packs (`pack`, RecurrentGemm's choice, is ignored).
  Bf16Gemm(const bfloat16* w, int64_t N, int64_t K, bool w_transposed, int64_t groups,
           bool /*pack*/ = true)
      : w_(w), N_(N), K_(K), K2_((K + 1) / 2), w_transposed_(w_transposed), groups_(groups),
        width_(N / groups), unit_blocks_((N / groups + kPanel - 1) / kPanel),
        panels_(scratch<uint32_t>(unit_blocks_ * groups_ * K2_ * kPanel)) {}

  int64_t unit_blocks() const { return unit_blocks_; }

  // Packs the panels of unit blocks [u0, u1) on the calling thread: 16 columns of a pair of k
  // at a time (element by element it was 2% of a bfloat16 LSTM's inference at T = 100, B = 32).
  void pack_units(int64_t u0, int64_t u1) const {
    for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
      const int64_t n0 = panel_column(p), width = panel_width(p);
      uint32_t* dst = panel(p);
      if (w_transposed_) {
        pack_from_columns(n0, width, dst);
      } else if (K_ % 2 == 0) {
        pack_from_rows(n0, width, dst);
      } else {  // an odd K: rows of W are no whole pairs
        for (int64_t kp = 0; kp < K2_; ++kp, dst += kPanel) {
          for (int64_t c = 0; c < kPanel; ++c) dst[c] = c < width ? pair(n0 + c, kp) : 0;
        }
      }
    }
  }

  // The columns of unit blocks [u0, u1) of every group of C[M, N] (leading dimension ldc) =
  // A[M, K] (float or bfloat16, leading dimension lda) W^T, added to C when accumulate.
  // step_rows: the rows of the whole product these M rows are part of (M when it is all of
  // them), which alone sets each element's order of sums (below), so that threads sharing a
  // step's rows compute them as one thread would.
  template <typename TA>
  void multiply_units(int64_t u0, int64_t u1, int64_t M, const TA* A, int64_t lda, float* C,
                      int64_t ldc, bool accumulate, int64_t step_rows = 0) const {
    if (u0 >= u1 || M == 0) return;
    // one or two rows in all: two sets of accumulators (block) keep enough products in flight
    if (std::max(M, step_rows) <= 2) {
      multiply_rows<2>(u0, u1, M, A, lda, C, ldc, accumulate);
    } else {
      multiply_rows<1>(u0, u1, M, A, lda, C, ldc, accumulate);
    }
  }

 private:
  template <int kSets, typename TA>
  void multiply_rows(int64_t u0, int64_t u1, int64_t M, const TA* A, int64_t lda, float* C,
                     int64_t ldc, bool accumulate) const {
    thread_local std::vector<uint32_t> a_pairs;  // A's rows as pairs, [M][K2]
    a_pairs.resize(M * K2_);
    for (int64_t r = 0; r < M; ++r) to_pairs(A + r * lda, a_pairs.data() + r * K2_);
    // rows in blocks of at most 6, as even as can be
    const int64_t blocks = (M + 5) / 6;
    for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
      for (int64_t i = 0, m = 0; i < blocks; ++i) {
        const int64_t rows = M * (i + 1) / blocks - m;
        const uint32_t* a = a_pairs.data() + m * K2_;
        float* c = C + m * ldc;
        m += rows;
        switch (rows) {
          case 6: block<6, kSets>(p, a, c, ldc, accumulate); break;
          case 5: block<5, kSets>(p, a, c, ldc, accumulate); break;
          case 4: block<4, kSets>(p, a, c, ldc, accumulate); break;
          case 3: block<3, kSets>(p, a, c, ldc, accumulate); break;
          case 2: block<2, kSets>(p, a, c, ldc, accumulate); break;
          case 1: block<1, kSets>(p, a, c, ldc, accumulate); break;
          default: break;
        }
      }
    }
  }

  uint16_t w_bits(int64_t n, int64_t k) const {
    return (w_transposed_ ? w_[k * N_ + n] : w_[n * K_ + k]).bits;
  }
  uint32_t pair(int64_t n, int64_t kp) const {
    const uint32_t lo = w_bits(n, 2 * kp);
    const uint32_t hi = 2 * kp + 1 < K_ ? w_bits(n, 2 * kp + 1) : 0u;
    return lo | hi << 16;
  }

  // The panel of W [N, K] (K even) at columns n0 .. n0 + width - 1: row n of W is K2 pairs, and
  // the panel its transpose, [K2][kPanel], in 16 x 16 tiles of pairs (moved as floats: the
  // shuffles keep the bits), zero past the width.
  void pack_from_rows(int64_t n0, int64_t width, uint32_t* dst) const {
    using S = Simd<float>;
    const auto* rows = reinterpret_cast<const float*>(w_);  // pairs, K2 a row
    for (int64_t k0 = 0; k0 < K2_; k0 += 16) {
      const int64_t pairs = std::min<int64_t>(16, K2_ - k0);
      for (int64_t c0 = 0; c0 < kPanel; c0 += 16) {
        const int64_t valid = std::clamp<int64_t>(width - c0, 0, 16);
        S::V tile[16];
        for (int64_t i = 0; i < 16; ++i) {
          tile[i] = i < valid ? S::load_first(rows + (n0 + c0 + i) * K2_ + k0, pairs) : S::zero();
        }
        S::transpose(tile);
        for (int64_t j = 0; j < pairs; ++j) {
          S::store(reinterpret_cast<float*>(dst + (k0 + j) * kPanel + c0), tile[j]);
        }
      }
    }
  }

  // The panel of W^T given as [K, N]: pair kp of column n is rows 2kp and 2kp + 1 of W^T at n,
  // 16 columns at a time widened to 32 bits and joined (the odd K's last pair: a zero above).
  void pack_from_columns(int64_t n0, int64_t width, uint32_t* dst) const {
    const auto* w = reinterpret_cast<const uint16_t*>(w_);
    for (int64_t kp = 0; kp < K2_; ++kp, dst += kPanel) {
      const uint16_t* lo = w + 2 * kp * N_ + n0;
      const bool has_hi = 2 * kp + 1 < K_;
      for (int64_t c0 = 0; c0 < kPanel; c0 += 16) {
        const int64_t valid = std::clamp<int64_t>(width - c0, 0, 16);
        const auto mask = static_cast<__mmask16>((1u << valid) - 1u);
        // (the zero-masking forms: GCC 12 warns of the unmasked ones' undefined start value)
        const __m512i a =
            _mm512_maskz_cvtepu16_epi32(mask, _mm256_maskz_loadu_epi16(mask, lo + c0));
        const __m512i b =
            has_hi ? _mm512_maskz_cvtepu16_epi32(mask, _mm256_maskz_loadu_epi16(mask, lo + N_ + c0))
                   : _mm512_setzero_si512();
        _mm512_storeu_si512(dst + c0, _mm512_or_si512(a, _mm512_maskz_slli_epi32(mask, b, 16)));
      }
    }
  }

  // One row of A as K2 pairs, the odd K padded with a zero.
  void to_pairs(const bfloat16* a, uint32_t* out) const {
    std::memcpy(out, a, K_ * sizeof(bfloat16));
    if (K_ % 2) reinterpret_cast<uint16_t*>(out)[K_] = 0;
  }
  void to_pairs(const float* a, uint32_t* out) const {
    to_bfloat16(a, reinterpret_cast<bfloat16*>(out), K_);
    if (K_ % 2) reinterpret_cast<uint16_t*>(out)[K_] = 0;
  }

  // C[0:MR, columns of panel p] (+)= the rows' pairs times the panel: MR rows x 4 vectors of
  // accumulators, in kSets sets taking alternate pairs (two, where the product has only one or
  // two rows, keep enough dot products in flight).
  template <int MR, int kSets>
  FASTRNN_TARGET_BF16 void block(int64_t p, const uint32_t* a, float* C, int64_t ldc,
                                 bool accumulate) const {
    const uint32_t* w = panel(p);
    __m512 acc[kSets][MR][4];
#pragma GCC unroll 8
    for (int q = 0; q < kSets; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) acc[q][r][v] = _mm512_setzero_ps();
      }
    }
    int64_t kp = 0;
    for (; kp + kSets <= K2_; kp += kSets) {
#pragma GCC unroll 2
      for (int q = 0; q < kSets; ++q) {
        const uint32_t* wk = w + (kp + q) * kPanel;
        __m512bh b[4];
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          b[v] = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wk + 16 * v));
        }
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const __m512bh x = reinterpret_cast<__m512bh>(
              _mm512_set1_epi32(static_cast<int>(a[r * K2_ + kp + q])));
#pragma GCC unroll 4
          for (int v = 0; v < 4; ++v) acc[q][r][v] = _mm512_dpbf16_ps(acc[q][r][v], x, b[v]);
        }
      }
    }
    for (; kp < K2_; ++kp) {  // the pair left over by the sets
      const uint32_t* wk = w + kp * kPanel;
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512bh x =
            reinterpret_cast<__m512bh>(_mm512_set1_epi32(static_cast<int>(a[r * K2_ + kp])));
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          const __m512bh b = reinterpret_cast<__m512bh>(_mm512_loadu_si512(wk + 16 * v));
          acc[0][r][v] = _mm512_dpbf16_ps(acc[0][r][v], x, b);
        }
      }
    }
#pragma GCC unroll 2
    for (int q = 1; q < kSets; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) acc[0][r][v] = _mm512_add_ps(acc[0][r][v], acc[q][r][v]);
      }
    }
    const int64_t n0 = panel_column(p), valid = panel_width(p);
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) {
      const int64_t cols = std::clamp<int64_t>(valid - 16 * v, 0, 16);
      if (cols == 0) break;
      const __mmask16 mask = static_cast<__mmask16>((1u << cols) - 1u);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        float* c = C + r * ldc + n0 + 16 * v;
        const __m512 sum =
            accumulate ? _mm512_add_ps(acc[0][r][v], _mm512_maskz_loadu_ps(mask, c)) : acc[0][r][v];
        _mm512_mask_storeu_ps(c, mask, sum);
      }
    }
  }

  uint32_t* panel(int64_t p) const { return panels_.get() + p * K2_ * kPanel; }
  // Panel p holds unit block p / groups of group p % groups.
  int64_t panel_column(int64_t p) const { return (p % groups_) * width_ + (p / groups_) * kPanel; }
  int64_t panel_width(int64_t p) const {
    return std::min<int64_t>(kPanel, width_ - (p / groups_) * kPanel);
  }

  const bfloat16* w_;
  int64_t N_, K_, K2_;
  bool w_transposed_;
  int64_t groups_, width_, unit_blocks_;
  Scratch<uint32_t> panels_;  // written by pack_units
};
#else
class Bf16Gemm;  // named by the drivers' templates, never made in this build
inline bool has_bf16_dot() { return false; }
#endif

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA
