// GEMMs on the kernels' threads: parallel_gemm() for any product, and RecurrentGemm for the
// product a step takes with the same matrix T times: C[M, N] (+)= A[M, K] W^T with W [N, K]
// (forward: gh = h W_hh^T, N = G*H, K = P), or W given transposed, [K, N] (backward:
// dh = dgh W_hh, N = P, K = G*H). Included by rnn_cpu.cpp, once per instruction set.
//
// RecurrentGemm computes a range of "unit blocks" (kPanel columns of every gate) on the calling
// thread, so each thread of a team can multiply and then run the cell on its own units. With
// AVX-512 or AVX2, in float and double, W^T is packed once per layer call into strips of columns
// ([K][64] floats or [K][32] doubles with AVX-512, [K][16] or [K][8] with AVX2, zero padded) that
// a register-blocked kernel (6 rows x one strip of accumulators) streams contiguously at every
// step; a thread touches only its own strips, so its share of W stays in its core's cache across
// steps. A product of a few rows in all is not worth packing (cpu/tuning.h, kDirectMaxRows):
// then W is read where it is, by dot products (W [N, K]) or row updates (W given transposed).
// Either way each element of C is summed in one fixed order, whichever thread computes it.
// Elsewhere (the baseline x86-64 build, a type without Simd) each thread makes single-threaded
// BLAS calls on its columns.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "cpu/blas.h"
#include "cpu/scratch.h"
#include "cpu/context.h"

// GCC 12's AVX-512 headers make their "undefined" vectors by initialising a variable from itself
// (`__m256d __Y = __Y;`), which -Wmaybe-uninitialized reports wherever a shuffle or extract is
// inlined into this file's kernels; the warnings are about the headers, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

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
      gemm<scalar_t>(trans_a, trans_b, end - begin, N, K, trans_a ? A + begin : A + begin * lda,
                     lda, B, ldb, beta, C + begin * ldc, ldc);
    } else {
      gemm<scalar_t>(trans_a, trans_b, M, end - begin, K, A, lda,
                     trans_b ? B + begin * ldb : B + begin, ldb, beta, C + begin, ldc);
    }
  });
}


// The packed kernel's vector operations, for the widest registers the build has, per element
// type: Simd<float> and Simd<double> (16 floats or 8 doubles to a zmm register, 8 or 4 to a ymm)
// share their instruction set's register blocking (SimdBlocking), so one kernel serves both. A
// "strip" is the kVectors vectors of columns one row of a micro-kernel block accumulates: with
// AVX-512 64 floats or 32 doubles (6 rows x 4 vectors of accumulators, the 4 vectors of the strip
// and a broadcast fit 32 zmm), with AVX2 16 floats or 8 doubles (6 rows x 2 vectors in 16 ymm).
// An element type without a specialisation, and every type on the baseline build, has none
// (kAvailable false): RecurrentGemm then makes BLAS calls.
template <typename T>
struct Simd {
  static constexpr bool kAvailable = false;
};

#if defined(__AVX512F__)
struct SimdBlocking {
  static constexpr bool kAvailable = true;
  static constexpr int64_t kVectors = 4;
  // Rows of a strip per slice: 256 KiB, so only K > 1024 is cut: on Zen 4 slices that fit L1
  // were slower (benchmarks/README.md, "Thresholds of cpu/tuning.h"); the hardware prefetcher
  // streams a strip from L2 fast enough, and each slice past the first reloads C. (Measured with
  // floats; a strip row of doubles has the same bytes.)
  static constexpr int64_t kKc = 1024;
  static constexpr int kUnrollK = 1;  // the k loop as written (unrolling not measured here)
  // Independent sets of accumulators taking alternate k: with few rows, enough FMAs in flight
  // to hide their latency.
  static constexpr int sets(int rows) { return rows <= 2 ? 2 : 1; }
};

template <>
struct Simd<float> : SimdBlocking {
  using V = __m512;
  static constexpr int64_t kLanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }  // one fixed order of additions
  // The first n lanes (0 <= n <= kLanes) of p, zero in the others; memory past them is not read.
  static V load_first(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store_first(float* p, V v, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1u); }

  // r[i][j] becomes r[j][i]. Pairs of rows interleave, then pairs of those as doubles: lane L
  // of r[4i + j] is then column 4L + j of rows 4i..4i+3; two rounds of 128-bit lane shuffles
  // gather each column's four lanes.
  static void transpose(V r[16]) {
    V t[16];
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
};

template <>
struct Simd<double> : SimdBlocking {
  using V = __m512d;
  static constexpr int64_t kLanes = 8;
  static V zero() { return _mm512_setzero_pd(); }
  static V load(const double* p) { return _mm512_loadu_pd(p); }
  static void store(double* p, V v) { _mm512_storeu_pd(p, v); }
  static V broadcast(const double* p) { return _mm512_set1_pd(*p); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm512_add_pd(a, b); }
  static double sum(V v) { return _mm512_reduce_add_pd(v); }  // one fixed order of additions
  static V load_first(const double* p, int64_t n) { return _mm512_maskz_loadu_pd(mask(n), p); }
  static void store_first(double* p, V v, int64_t n) { _mm512_mask_storeu_pd(p, mask(n), v); }
  static __mmask8 mask(int64_t n) { return static_cast<__mmask8>((1u << n) - 1u); }

  // r[i][j] becomes r[j][i]. Pairs of rows interleave: lane L (128 bits) of t[2i + e] holds
  // rows 2i, 2i+1 of column 2L + e; two rounds of 128-bit lane shuffles gather each column's
  // four lanes (lanes 0, 2 with 0x88, lanes 1, 3 with 0xdd).
  static void transpose(V r[8]) {
    V t[8], u[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]);
    }
    for (int e = 0; e < 2; ++e) {  // even columns, then odd ones
      u[4 * e] = _mm512_shuffle_f64x2(t[e], t[2 + e], 0x88);          // lanes 0, 2 of rows 0-3
      u[4 * e + 1] = _mm512_shuffle_f64x2(t[e], t[2 + e], 0xdd);      // lanes 1, 3 of rows 0-3
      u[4 * e + 2] = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0x88);  // of rows 4-7
      u[4 * e + 3] = _mm512_shuffle_f64x2(t[4 + e], t[6 + e], 0xdd);
    }
    for (int e = 0; e < 2; ++e) {
      r[e] = _mm512_shuffle_f64x2(u[4 * e], u[4 * e + 2], 0x88);          // lane 0
      r[4 + e] = _mm512_shuffle_f64x2(u[4 * e], u[4 * e + 2], 0xdd);      // lane 2
      r[2 + e] = _mm512_shuffle_f64x2(u[4 * e + 1], u[4 * e + 3], 0x88);  // lane 1
      r[6 + e] = _mm512_shuffle_f64x2(u[4 * e + 1], u[4 * e + 3], 0xdd);  // lane 3
    }
  }
};
#define FASTRNN_PACKED_KERNEL 1
#elif defined(__AVX2__) && defined(__FMA__)
struct SimdBlocking {
  static constexpr bool kAvailable = true;
  static constexpr int64_t kVectors = 2;
  static constexpr int64_t kKc = 256;  // rows of a strip per L1-resident slice: 16 KiB
  static constexpr int kUnrollK = 4;  // Zen 3, floats: M=32 and 64 products 4-9% faster than 1
  // 2 FMA ports x 4 cycles of latency want 8 chains: 1 row x 2 vectors x 4 sets, 2 x 2 x 3,
  // 3 x 2 x 2 (and all fit the 16 registers with the two strip vectors and a broadcast).
  static constexpr int sets(int rows) { return rows == 1 ? 4 : rows == 2 ? 3 : rows == 3 ? 2 : 1; }
};

template <>
struct Simd<float> : SimdBlocking {
  using V = __m256;
  static constexpr int64_t kLanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static float sum(V v) {  // halves, then pairs: one fixed order of additions
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
  }
  // The first n lanes (0 <= n <= kLanes) of p, zero in the others; memory past them is not read.
  // (Masked moves are slow on AMD: whole vectors take plain ones.)
  static V load_first(const float* p, int64_t n) {
    return n == kLanes ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, mask(n));
  }
  static void store_first(float* p, V v, int64_t n) {
    if (n == kLanes) {
      _mm256_storeu_ps(p, v);
    } else {
      _mm256_maskstore_ps(p, mask(n), v);
    }
  }
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }

  // r[i][j] becomes r[j][i]: pairs of rows interleave, shuffles gather four rows' values of a
  // column in each 128-bit half, and the halves of rows 0-3 and 4-7 then join.
  static void transpose(V r[8]) {
    V t[8], s[8];
    for (int i = 0; i < 4; ++i) {
      t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);      // a0 b0 a1 b1 | a4 b4 a5 b5
      t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);  // a2 b2 a3 b3 | a6 b6 a7 b7
    }
    for (int h = 0; h < 2; ++h) {  // rows 0-3, then 4-7
      const V* u = t + 4 * h;
      s[4 * h] = _mm256_shuffle_ps(u[0], u[2], 0x44);      // column 0 | 4 of four rows
      s[4 * h + 1] = _mm256_shuffle_ps(u[0], u[2], 0xee);  // 1 | 5
      s[4 * h + 2] = _mm256_shuffle_ps(u[1], u[3], 0x44);  // 2 | 6
      s[4 * h + 3] = _mm256_shuffle_ps(u[1], u[3], 0xee);  // 3 | 7
    }
    for (int j = 0; j < 4; ++j) {
      r[j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x20);
      r[4 + j] = _mm256_permute2f128_ps(s[j], s[4 + j], 0x31);
    }
  }
};

template <>
struct Simd<double> : SimdBlocking {
  using V = __m256d;
  static constexpr int64_t kLanes = 4;
  static V zero() { return _mm256_setzero_pd(); }
  static V load(const double* p) { return _mm256_loadu_pd(p); }
  static void store(double* p, V v) { _mm256_storeu_pd(p, v); }
  static V broadcast(const double* p) { return _mm256_broadcast_sd(p); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_pd(a, b, c); }
  static V add(V a, V b) { return _mm256_add_pd(a, b); }
  static double sum(V v) {  // halves, then the pair: one fixed order of additions
    const __m128d q = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    return _mm_cvtsd_f64(_mm_add_sd(q, _mm_unpackhi_pd(q, q)));
  }
  static V load_first(const double* p, int64_t n) {
    return n == kLanes ? _mm256_loadu_pd(p) : _mm256_maskload_pd(p, mask(n));
  }
  static void store_first(double* p, V v, int64_t n) {
    if (n == kLanes) {
      _mm256_storeu_pd(p, v);
    } else {
      _mm256_maskstore_pd(p, mask(n), v);
    }
  }
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
  }

  // r[i][j] becomes r[j][i]: pairs of rows interleave (a0 b0 | a2 b2, a1 b1 | a3 b3), and the
  // 128-bit halves of rows 0-1 and 2-3 then join.
  static void transpose(V r[4]) {
    const V t0 = _mm256_unpacklo_pd(r[0], r[1]), t1 = _mm256_unpackhi_pd(r[0], r[1]);
    const V t2 = _mm256_unpacklo_pd(r[2], r[3]), t3 = _mm256_unpackhi_pd(r[2], r[3]);
    r[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
    r[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
    r[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
    r[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
  }
};
#define FASTRNN_PACKED_KERNEL 1
#endif

// Columns per strip of the packed kernel for T (0 where it has none).
template <typename T>
constexpr int64_t strip_columns() {
  if constexpr (Simd<T>::kAvailable) {
    return Simd<T>::kLanes * Simd<T>::kVectors;
  } else {
    return 0;
  }
}

template <typename scalar_t>
class RecurrentGemm {
 public:
  using S = Simd<scalar_t>;
  static constexpr bool kPacked = S::kAvailable;
  // Columns per unit block and per packed panel: 64, and 32 in double, whose products take twice
  // as long per column, so that a layer of 33 to 64 units still spreads over two threads (one
  // panel is then one AVX-512 strip). The drivers share units among threads in these blocks.
  static constexpr int64_t kPanel = std::is_same_v<scalar_t, double> ? 32 : 64;

  // w: [N, K], or [K, N] when w_transposed. The N columns of C form `groups` equal groups (the
  // gates); a unit block u is columns [kPanel u, kPanel (u + 1)) of every group, its panels packed
  // next to each other, so one thread can compute all gates of its units (multiply_units).
  // Each thread packs the unit blocks it multiplies (pack_units) before it multiplies them.
  // pack false: a product taken with few rows in all (a short sequence at a small batch), which
  // would not repay packing, reads W where it is instead (direct_units); pack_units does nothing.
  RecurrentGemm(const scalar_t* w, int64_t N, int64_t K, bool w_transposed, int64_t groups,
                bool pack)
      : w_(w), N_(N), K_(K), w_transposed_(w_transposed), groups_(groups),
        width_(N / groups), unit_blocks_((N / groups + kPanel - 1) / kPanel),
        packed_(kPacked && pack) {
    if (packed_) panels_ = scratch<scalar_t>(unit_blocks_ * groups_ * K * kPanel);
  }

  // Packs the panels of unit blocks [u0, u1), on the calling thread (whose cache then holds them).
  // A panel is kPanel columns of W^T, stored as strips of kStrip columns, each [K][kStrip] and
  // contiguous; strips wholly past the last panel's width are neither stored nor multiplied,
  // the last one is zero padded. Given transposed, a strip's rows are pieces of W's rows;
  // otherwise square tiles of W are transposed in registers (3x faster than gathering W's
  // columns: at batch 1 the packing is as long as a third of the steps' products).
  void pack_units(int64_t u0, int64_t u1) const {
#if defined(FASTRNN_PACKED_KERNEL)
    if constexpr (kPacked) {
      if (!packed_) return;
      constexpr int64_t L = S::kLanes;
      for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
        const int64_t n0 = panel_column(p), width = panel_width(p);
        if (w_transposed_) {
          for (int64_t s = 0; s < strips(p); ++s) {
            scalar_t* dst = strip_data(p, s);
            const int64_t c0 = s * kStrip, valid = std::min(kStrip, width - c0);
            for (int64_t k = 0; k < K_; ++k, dst += kStrip) {
              const scalar_t* src = w_ + k * N_ + n0 + c0;
              std::copy(src, src + valid, dst);
              std::fill(dst + valid, dst + kStrip, scalar_t(0));
            }
          }
          continue;
        }
        for (int64_t k0 = 0; k0 < K_; k0 += L) {
          const int64_t k_count = std::min(L, K_ - k0);
          for (int64_t c0 = 0; c0 < strips(p) * kStrip; c0 += L) {
            // W's rows n0 + c0 + i, zero past the panel's width, become the strip's columns
            const int64_t rows = std::clamp<int64_t>(width - c0, 0, L);
            typename S::V tile[L];
            for (int64_t i = 0; i < L; ++i) {
              tile[i] = i < rows ? S::load_first(w_ + (n0 + c0 + i) * K_ + k0, k_count)
                                 : S::zero();
            }
            S::transpose(tile);
            scalar_t* dst = strip_data(p, c0 / kStrip) + k0 * kStrip + c0 % kStrip;
            for (int64_t i = 0; i < k_count; ++i) S::store(dst + i * kStrip, tile[i]);
          }
        }
      }
    }
#endif
  }

  // Unit blocks of kPanel columns per group; multiply_units() takes a range of them.
  int64_t unit_blocks() const { return unit_blocks_; }

  // The columns of unit blocks [u0, u1) of every group of C[M, N] (leading dimension ldc) =
  // A[M, K] (leading dimension lda) W^T, added to C when accumulate; on the calling thread.
  // step_rows: the rows of the whole product these M rows are part of (M when it is all of
  // them), which alone sets each element's order of sums (the K blocks and the sets of
  // accumulators below), so that threads sharing a step's rows compute them as one thread would.
  // (Unpacked, the order does not depend on the rows: direct_units.)
  void multiply_units(int64_t u0, int64_t u1, int64_t M, const scalar_t* A, int64_t lda,
                      scalar_t* C, int64_t ldc, bool accumulate, int64_t step_rows = 0) const {
    if (u0 >= u1 || M == 0) return;
#if defined(FASTRNN_PACKED_KERNEL)
    if constexpr (kPacked) {
      if (!packed_) {
        direct_units(u0, u1, M, A, lda, C, ldc, accumulate);
        return;
      }
      const int64_t rows = std::max(M, step_rows);
      // With more rows than one register block, W is read once per block of rows: cut K so a
      // strip's slice stays in cache meanwhile.
      const int64_t k_blocks = rows > 6 ? (K_ + S::kKc - 1) / S::kKc : 1;
      // few rows in all: more sets keep enough FMAs in flight (every block of a product the same)
      const int sets = S::sets(static_cast<int>(std::min<int64_t>(rows, 6)));
      for (int64_t p = u0 * groups_; p < u1 * groups_; ++p) {
        for (int64_t s = 0; s < strips(p); ++s) {
          for (int64_t kb = 0; kb < k_blocks; ++kb) {
            const int64_t k0 = K_ * kb / k_blocks, k1 = K_ * (kb + 1) / k_blocks;
            strip_product(p, s, k0, k1, M, sets, A, lda, C, ldc, accumulate || kb > 0);
          }
        }
      }
      return;
    }
#endif
    {
      const int64_t j0 = u0 * kPanel, cols = std::min(width_, u1 * kPanel) - j0;
      const scalar_t beta = accumulate ? 1 : 0;
      for (int64_t g = 0; g < groups_; ++g) {
        const int64_t n0 = g * width_ + j0;
        if (w_transposed_) {
          gemm<scalar_t>(false, false, M, cols, K_, A, lda, w_ + n0, N_, beta, C + n0, ldc);
        } else {
          gemm<scalar_t>(false, true, M, cols, K_, A, lda, w_ + n0 * K_, K_, beta, C + n0,
                         ldc);
        }
      }
    }
  }

 private:
#if defined(FASTRNN_PACKED_KERNEL)
  static constexpr int64_t kStrip = strip_columns<scalar_t>();
  static_assert(kPanel % kStrip == 0);

  // C[0:MR, columns of strip s of panel p] (+)= A[0:MR, k0:k1) W^T[k0:k1, those columns]: MR
  // rows x kVectors vectors of accumulators in kSets sets taking alternate k; only the strip's
  // valid columns are stored.
  template <int MR, int kSets>
  void block(int64_t p, int64_t s, int64_t k0, int64_t k1, const scalar_t* A, int64_t lda,
             scalar_t* C, int64_t ldc, bool accumulate) const {
    using V = typename S::V;
    constexpr int kV = S::kVectors;
    constexpr int64_t L = S::kLanes;
    const scalar_t* w = strip_data(p, s);
    V acc[kSets][MR][kV];
#pragma GCC unroll 8
    for (int q = 0; q < kSets; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (int v = 0; v < kV; ++v) acc[q][r][v] = S::zero();
      }
    }
    // (a lambda taking the accumulators by reference made GCC keep them in memory: 4x slower)
    int64_t k = k0;
#pragma GCC unroll SimdBlocking::kUnrollK  // (GCC 12 crashes on S::kUnrollK, dependent)
    for (; k + kSets <= k1; k += kSets) {
#pragma GCC unroll 8
      for (int q = 0; q < kSets; ++q) {
        const scalar_t* wk = w + (k + q) * kStrip;
        V b[kV];
#pragma GCC unroll 8
        for (int v = 0; v < kV; ++v) b[v] = S::load(wk + L * v);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          const V a = S::broadcast(A + r * lda + k + q);
#pragma GCC unroll 8
          for (int v = 0; v < kV; ++v) acc[q][r][v] = S::fma(a, b[v], acc[q][r][v]);
        }
      }
    }
    for (; k < k1; ++k) {  // the k left over by the sets
      const scalar_t* wk = w + k * kStrip;
      V b[kV];
#pragma GCC unroll 8
      for (int v = 0; v < kV; ++v) b[v] = S::load(wk + L * v);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const V a = S::broadcast(A + r * lda + k);
#pragma GCC unroll 8
        for (int v = 0; v < kV; ++v) acc[0][r][v] = S::fma(a, b[v], acc[0][r][v]);
      }
    }
#pragma GCC unroll 8
    for (int q = 1; q < kSets; ++q) {
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 8
        for (int v = 0; v < kV; ++v) acc[0][r][v] = S::add(acc[0][r][v], acc[q][r][v]);
      }
    }
    const int64_t n0 = panel_column(p) + s * kStrip;
    const int64_t valid = std::min(kStrip, panel_width(p) - s * kStrip);
#pragma GCC unroll 8
    for (int v = 0; v < kV; ++v) {
      const int64_t cols = std::clamp<int64_t>(valid - L * v, 0, L);
      if (cols == 0) break;
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        scalar_t* c = C + r * ldc + n0 + L * v;
        S::store_first(
            c, accumulate ? S::add(acc[0][r][v], S::load_first(c, cols)) : acc[0][r][v],
            cols);
      }
    }
  }

  // C[0:M, columns of strip s of panel p] (+)= A[0:M, k0:k1) W^T[k0:k1, those columns]
  // block<MR, sets>: a product's sets are those of its rows in all, never more than its
  // blocks' own (S::sets falls as the rows grow), so only those are made.
  template <int MR>
  void block_sets(int sets, int64_t p, int64_t s, int64_t k0, int64_t k1, const scalar_t* A,
                  int64_t lda, scalar_t* C, int64_t ldc, bool accumulate) const {
    if constexpr (S::sets(MR) >= 4) {
      if (sets == 4) return block<MR, 4>(p, s, k0, k1, A, lda, C, ldc, accumulate);
    }
    if constexpr (S::sets(MR) >= 3) {
      if (sets == 3) return block<MR, 3>(p, s, k0, k1, A, lda, C, ldc, accumulate);
    }
    if constexpr (S::sets(MR) >= 2) {
      if (sets == 2) return block<MR, 2>(p, s, k0, k1, A, lda, C, ldc, accumulate);
    }
    block<MR, 1>(p, s, k0, k1, A, lda, C, ldc, accumulate);
  }

  void strip_product(int64_t p, int64_t s, int64_t k0, int64_t k1, int64_t M, int sets,
                     const scalar_t* A, int64_t lda, scalar_t* C, int64_t ldc,
                     bool accumulate) const {
    // rows in blocks of at most 6, as even as can be (32 rows: 5 5 6 5 5 6, not 6 x 5 + 2)
    const int64_t blocks = (M + 5) / 6;
    for (int64_t i = 0, m = 0; i < blocks; ++i) {
      const int64_t rows = M * (i + 1) / blocks - m;
      const scalar_t* a = A + m * lda;
      scalar_t* c = C + m * ldc;
      m += rows;
      switch (rows) {
        case 6: block_sets<6>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        case 5: block_sets<5>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        case 4: block_sets<4>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        case 3: block_sets<3>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        case 2: block_sets<2>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        case 1: block_sets<1>(sets, p, s, k0, k1, a, lda, c, ldc, accumulate); break;
        default: break;
      }
    }
  }

  // multiply_units on W as it is, for an unpacked product. Every element of C is computed by
  // the same sequence of operations whichever columns and rows it is computed with, so results
  // do not depend on how the units are shared among threads (as BLAS calls of different widths
  // did: tests/test_threads.py).
  void direct_units(int64_t u0, int64_t u1, int64_t M, const scalar_t* A, int64_t lda, scalar_t* C,
                    int64_t ldc, bool accumulate) const {
    for (int64_t g = 0; g < groups_; ++g) {
      const int64_t n0 = g * width_ + u0 * kPanel;
      const int64_t n1 = g * width_ + std::min(width_, u1 * kPanel);
      for (int64_t b = 0; b < M; b += 2) {
        const bool pair = b + 1 < M;
        if (w_transposed_) {
          for (int64_t n = n0; n < n1; n += kStrip) {
            const int64_t cols = std::min(kStrip, n1 - n);
            if (pair) {
              axpy_rows<2>(n, cols, A + b * lda, lda, C + b * ldc, ldc, accumulate);
            } else {
              axpy_rows<1>(n, cols, A + b * lda, lda, C + b * ldc, ldc, accumulate);
            }
          }
        } else if (pair) {
          dot_rows<2>(n0, n1, A + b * lda, lda, C + b * ldc, ldc, accumulate);
        } else {
          dot_rows<1>(n0, n1, A + b * lda, lda, C + b * ldc, ldc, accumulate);
        }
      }
    }
  }

  // W [N, K]: C[r, n] (+)= dot(A[r, :], W[n, :]) for R rows and columns [n0, n1), four columns
  // at a time: lane-wise partial sums over k (the last piece masked), then S::sum.
  template <int R>
  void dot_rows(int64_t n0, int64_t n1, const scalar_t* A, int64_t lda, scalar_t* C, int64_t ldc,
                bool accumulate) const {
    using V = typename S::V;
    constexpr int64_t L = S::kLanes;
    constexpr int kCols = 4;
    for (int64_t n = n0; n < n1; n += kCols) {
      const int cols = static_cast<int>(std::min<int64_t>(kCols, n1 - n));
      const scalar_t* w[kCols];
      for (int c = 0; c < kCols; ++c) w[c] = w_ + (n + std::min(c, cols - 1)) * K_;
      V acc[R][kCols];
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
        for (int c = 0; c < kCols; ++c) acc[r][c] = S::zero();
      }
      int64_t k = 0;
      for (; k + L <= K_; k += L) {
        V a[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) a[r] = S::load(A + r * lda + k);
#pragma GCC unroll 8
        for (int c = 0; c < kCols; ++c) {
          const V wc = S::load(w[c] + k);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][c] = S::fma(a[r], wc, acc[r][c]);
        }
      }
      if (k < K_) {
        const int64_t rest = K_ - k;
        V a[R];
#pragma GCC unroll 8
        for (int r = 0; r < R; ++r) a[r] = S::load_first(A + r * lda + k, rest);
#pragma GCC unroll 8
        for (int c = 0; c < kCols; ++c) {
          const V wc = S::load_first(w[c] + k, rest);
#pragma GCC unroll 8
          for (int r = 0; r < R; ++r) acc[r][c] = S::fma(a[r], wc, acc[r][c]);
        }
      }
      for (int r = 0; r < R; ++r) {
        for (int c = 0; c < cols; ++c) {
          const scalar_t v = S::sum(acc[r][c]);
          scalar_t& out = C[r * ldc + n + c];
          out = accumulate ? out + v : v;
        }
      }
    }
  }

  // W given transposed, [K, N]: C[r, n:n+cols] (+)= sum over k of A[r, k] W[k, n:n+cols], for R
  // rows and cols <= kStrip columns, each lane an FMA chain over k (partial vectors masked).
  template <int R>
  void axpy_rows(int64_t n, int64_t cols, const scalar_t* A, int64_t lda, scalar_t* C, int64_t ldc,
                 bool accumulate) const {
    using V = typename S::V;
    constexpr int64_t L = S::kLanes;
    constexpr int kV = S::kVectors;
    int64_t valid[kV];
    for (int v = 0; v < kV; ++v) valid[v] = std::clamp<int64_t>(cols - L * v, 0, L);
    V acc[R][kV];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
      for (int v = 0; v < kV; ++v) acc[r][v] = S::zero();
    }
    const scalar_t* wk = w_ + n;
    for (int64_t k = 0; k < K_; ++k, wk += N_) {
      V b[kV];
#pragma GCC unroll 8
      for (int v = 0; v < kV; ++v) b[v] = S::load_first(wk + L * v, valid[v]);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) {
        const V a = S::broadcast(A + r * lda + k);
#pragma GCC unroll 8
        for (int v = 0; v < kV; ++v) acc[r][v] = S::fma(a, b[v], acc[r][v]);
      }
    }
    for (int v = 0; v < kV && valid[v] > 0; ++v) {
      for (int r = 0; r < R; ++r) {
        scalar_t* c = C + r * ldc + n + L * v;
        S::store_first(
            c, accumulate ? S::add(acc[r][v], S::load_first(c, valid[v])) : acc[r][v],
            valid[v]);
      }
    }
  }

  // Strips of panel p that hold columns, and where strip s of it starts.
  int64_t strips(int64_t p) const { return (panel_width(p) + kStrip - 1) / kStrip; }
  scalar_t* strip_data(int64_t p, int64_t s) const {
    return panels_.get() + (p * kPanel + s * kStrip) * K_;
  }
#endif

  // Panel p holds unit block p / groups of group p % groups.
  int64_t panel_column(int64_t p) const { return (p % groups_) * width_ + (p / groups_) * kPanel; }
  int64_t panel_width(int64_t p) const {
    return std::min<int64_t>(kPanel, width_ - (p / groups_) * kPanel);
  }

  const scalar_t* w_;
  int64_t N_, K_;
  bool w_transposed_;
  int64_t groups_, width_, unit_blocks_;
  bool packed_;
  Scratch<scalar_t> panels_;  // written by pack_units
};

}  // namespace fastrnn::cpu::FASTRNN_CPU_ISA

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
