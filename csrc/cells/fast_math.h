// tanh and sigmoid (and for double the exp and expm1 they use) for float and double on the CPU,
// written without branches or library calls so that the compiler vectorises loops over hidden
// units (libm's are scalar calls).
//
// float, against double precision, measured on a 1e-4 grid over [-100, 100] and on tiny |x|:
// tanh 2.1 ulp, sigmoid 2.5 ulp (tests/test_fast_math.py checks these bounds). Out of range, the
// limits are selected: tanh(x) = +-1 for |x| > 9.1 (it rounds to +-1 from 9.01 on); sigmoid(x)
// = 1 for x > 87.3 (as it rounds from 17.4 on) and 0 for x < -88.3, where the exact value is
// below 5e-39, no normal float (torch's float sigmoid is 0 below -88.72, where its exp(-x)
// overflows); sigmoid(-inf) = 0 exactly, which non-finite propagation needs (r * inf must be
// NaN when r is sigmoid(-inf), as in torch.nn); NaN gives NaN, tanh(+-inf) = +-1.
//
// double, against x87 long double libm (64-bit significand: expl, expm1l, tanhl), measured on a
// 1e-4 grid over [-100, 100], a 1e-3 grid over [-746, 710] and |x| from 1e-320 to 1, in ulps of
// the double result (one C++ program including this header, built for AVX-512, AVX2 and
// baseline x86-64): exp 0.87 ulp, expm1 1.31, tanh 2.17, sigmoid 2.31; through the kernels
// tests/test_fast_math.py checks tanh <= 2.25 and sigmoid <= 2.5 against numpy's long double.
// No value saturates: exp overflows to +inf beyond ln(DBL_MAX) ~ 709.78 and underflows through
// the subnormals to 0 below -745.1, as libm's; so sigmoid(x) is 0 for x < -709.78 (as torch's
// double sigmoid) and sigmoid(-inf) = 0; NaN gives NaN, tanh(+-inf) = +-1, tanh(x) = x for
// subnormal x.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace fastrnn::fast {

// a where `pick_a`, else b (float or double), by bit masks: a `?:` with a constant arm GCC
// carries into the code that follows as a separate branch, and a loop with a branch does not
// vectorise (for AVX2 or SSE; with AVX-512 it computes every lane twice, masked).
template <typename F>
inline F select(bool pick_a, F a, F b) {
  using Bits = std::conditional_t<sizeof(F) == 4, int32_t, int64_t>;
  static_assert(sizeof(F) == sizeof(Bits));
  Bits a_bits, b_bits;
  std::memcpy(&a_bits, &a, sizeof a);
  std::memcpy(&b_bits, &b, sizeof b);
  const Bits mask = -static_cast<Bits>(pick_a);
  a_bits = (a_bits & mask) | (b_bits & ~mask);
  std::memcpy(&a, &a_bits, sizeof a);
  return a;
}

// x = n ln2 + r with |r| <= ln2/2; returns expm1(r) and sets scale = 2^n. Valid for x in
// [-87.3, 88.3], where 2^n is a normal float; outside, both are meaningless and the callers
// select their limits there instead of clamping x first (with a clamp ahead of the polynomial
// the LSTM cell's pass took 1.16-1.36x as long: it lengthens every activation's dependency
// chain, and GCC's `?:` form of it doubles the work). NaN gives NaN.
inline float expm1_reduced(float x, float& scale) {
  const float shifter = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float n = (x * 1.44269504088896341f + shifter) - shifter;
  // ln2 in two parts (Cody-Waite): n * ln2_hi is exact for |n| <= 128
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  // expm1(r) = r + r^2/2! + ... + r^7/7!: the next term is below 2e-8 relative for |r| <= ln2/2
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  std::memcpy(&scale, &bits, sizeof scale);
  return r + r * r * p;
}

// tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2), accurate near 0 where 1 - 2/(e^2x + 1) is not;
// 1 for |x| > 9.1, where tanh rounds to 1 (from 9.01 on).
inline float tanh(float x) {
  const float a = std::fabs(x);
  float scale;
  const float q = expm1_reduced(2.0f * a, scale);
  const float e = scale * q + (scale - 1.0f);  // expm1(2|x|)
  return std::copysign(select(a > 9.1f, 1.0f, e / (e + 2.0f)), x);
}

// 1 / (1 + exp(-x)); 1 for x > 87.3 (it rounds to 1 from 17.4 on), 0 for x < -88.3, where it is
// below 5e-39 and no normal float.
inline float sigmoid(float x) {
  float scale;
  const float q = expm1_reduced(-x, scale);
  const float y = 1.0f / (scale * q + scale + 1.0f);  // exp(-x) = scale * q + scale
  return select(x > 87.3f, 1.0f, select(x < -88.3f, 0.0f, y));
}

// ---- double ----

// x limited to [lo, hi], by bit masks (a `?:` clamp makes GCC branch, as for select); NaN
// stays NaN.
inline double clamp(double x, double lo, double hi) {
  int64_t x_bits, lo_bits, hi_bits;
  std::memcpy(&x_bits, &x, sizeof x);
  std::memcpy(&lo_bits, &lo, sizeof lo);
  std::memcpy(&hi_bits, &hi, sizeof hi);
  const int64_t below = -static_cast<int64_t>(x < lo), above = -static_cast<int64_t>(x > hi);
  x_bits = (x_bits & ~(below | above)) | (lo_bits & below) | (hi_bits & above);
  std::memcpy(&x, &x_bits, sizeof x);
  return x;
}

// Adding it to a double of magnitude below 2^51 rounds that to an integer, which then sits in
// the low bits of the sum's representation: 1.5 * 2^52.
inline constexpr double kShifter = 6755399441055744.0;

// 2^n for an integer n in [-1022, 1023], given as a double: n + 1023 is the exponent field,
// which the shifter puts in the low bits and a shift moves into place (no double-to-integer
// conversion, which AVX2 has no vector instruction for).
inline double pow2(double n) {
  const double biased = n + (kShifter + 1023.0);
  int64_t bits;
  std::memcpy(&bits, &biased, sizeof bits);
  bits <<= 52;  // the shifter's own bits (0x4338 << 48, its mantissa 2^51) leave or are zero
  double scale;
  std::memcpy(&scale, &bits, sizeof scale);
  return scale;
}

// x in [-746, 710] is n ln2 + r with |r| <= ln2/2; returns expm1(r) and sets s1 * s2 = 2^n,
// each factor a normal number (|n| reaches 1076, beyond one double's exponent range).
inline double expm1_reduced(double x, double& s1, double& s2, double& r, double& t) {
  const double n = (x * 1.4426950408889634 + kShifter) - kShifter;
  // ln2 in two parts (Cody-Waite, fdlibm's): n * ln2_hi is exact for |n| < 2^20
  const double hi = x - n * 6.93147180369123816490e-01, lo = n * 1.90821492927058770002e-10;
  r = hi - lo;
  const double c = (hi - r) - lo;  // r + c = hi - lo to about 2^-104 |r|: the error of r
  // expm1(r) = r + r^2/2! + ... + r^13/13!: the next term is below 1.2e-17 relative for
  // |r| <= ln2/2 (0.1 ulp)
  double p = 1.0 / 6227020800.0;
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  const double n1 = (n * 0.5 + kShifter) - kShifter;  // n/2, rounded to an integer
  s1 = pow2(n1);
  s2 = pow2(n - n1);
  t = r * r * p + c;
  return r + t;
}

// exp(x) = 2^n (1 + expm1(r)), one rounding to the result where it is normal. Beyond
// ln(DBL_MAX) ~ 709.78 the product overflows to +inf; below -708.4 the result is subnormal
// (gradually, as libm's), 0 below -745.1; the clamp keeps NaN and makes exp(+-inf) = inf, 0.
inline double exp(double x) {
  double s1, s2, r, t;
  const double q = expm1_reduced(clamp(x, -746.0, 710.0), s1, s2, r, t);
  return (s1 * q + s1) * s2;
}

// expm1(x) = 2^n expm1(r) + (2^n - 1): no cancellation when x is near 0 (n = 0). 2^n itself
// overflows for n = 1024 (x > 709.4): there, as exp(x), from which expm1(x) differs by far less
// than an ulp.
inline double expm1(double x) {
  double s1, s2, r, t;
  const double q = expm1_reduced(clamp(x, -746.0, 710.0), s1, s2, r, t);
  const double s = s1 * s2;
  return select(x > 709.0, (s1 * q + s1) * s2, (s * r + (s - 1.0)) + s * t);
}

// tanh(|x|) = expm1(2|x|) / (expm1(2|x|) + 2) as for float; tanh(20) rounds to 1, so |x| is
// limited to 20 there (expm1 overflows at 2|x| > 709.8).
inline double tanh(double x) {
  const double e = fast::expm1(2.0 * clamp(std::fabs(x), 0.0, 20.0));
  return std::copysign(e / (e + 2.0), x);
}

// 0 for x < -709.78 (exp(-x) overflows), as torch's double sigmoid; sigmoid(-inf) = 0 exactly.
inline double sigmoid(double x) { return 1.0 / (1.0 + fast::exp(-x)); }

}  // namespace fastrnn::fast
