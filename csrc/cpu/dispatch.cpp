#include <cstdlib>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <cstring>
#include <stdexcept>
#include <string>

#include "cpu/rnn_cpu.h"

namespace fastrnn::cpu {
namespace {

enum class Isa { kAvx512, kAvx2, kBaseline };

Isa detect() {
#if defined(FASTRNN_CPU_MULTI_ISA)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return Isa::kAvx512;
  if (__builtin_cpu_supports("x86-64-v3")) return Isa::kAvx2;
#endif
  return Isa::kBaseline;
}

Isa choose() {
  const Isa best = detect();
  const char* want = std::getenv("FASTRNN_CPU_ISA");
  if (!want || !*want) return best;
  const std::string w(want);
  const Isa asked = w == "avx512" ? Isa::kAvx512
                    : w == "avx2" ? Isa::kAvx2
                    : w == "baseline" ? Isa::kBaseline
                                      : throw std::invalid_argument(
                                            "FASTRNN_CPU_ISA must be avx512, avx2 or baseline, "
                                            "got '" + w + "'");
  if (static_cast<int>(asked) < static_cast<int>(best)) {
    throw std::invalid_argument("FASTRNN_CPU_ISA=" + w + " is not supported by this CPU or build");
  }
  return asked;
}

Isa isa() {
  static const Isa chosen = choose();
  return chosen;
}

}  // namespace

bool cpu_is_intel() {
#if defined(__x86_64__) || defined(__i386__)
  unsigned int eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(0, &eax, &ebx, &ecx, &edx)) return false;
  char vendor[13] = {};
  std::memcpy(vendor, &ebx, 4);
  std::memcpy(vendor + 4, &edx, 4);
  std::memcpy(vendor + 8, &ecx, 4);
  return std::strcmp(vendor, "GenuineIntel") == 0;
#else
  return false;
#endif
}

const char* isa_name() {
  switch (isa()) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kBaseline:
      break;
  }
  return "baseline";
}

#if defined(FASTRNN_CPU_MULTI_ISA)
#define FASTRNN_ON_ISA(call)                  \
  switch (isa()) {                            \
    case Isa::kAvx512:                        \
      return avx512::call;                    \
    case Isa::kAvx2:                          \
      return avx2::call;                      \
    case Isa::kBaseline:                      \
      break;                                  \
  }                                           \
  return baseline::call;
#else
#define FASTRNN_ON_ISA(call) return baseline::call;
#endif

template <typename scalar_t>
void rnn_forward(const RnnParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx) {
  FASTRNN_ON_ISA(rnn_forward(p, ctx))
}

template <typename scalar_t>
void rnn_backward(const RnnGradParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx) {
  FASTRNN_ON_ISA(rnn_backward(p, ctx))
}

bool bf16_dot() { FASTRNN_ON_ISA(bf16_dot()) }

#define FASTRNN_INSTANTIATE(T)                                                      \
  template void rnn_forward<T>(const RnnParams<T>&, const Context<compute_t<T>>&); \
  template void rnn_backward<T>(const RnnGradParams<T>&, const Context<compute_t<T>>&);
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cpu
