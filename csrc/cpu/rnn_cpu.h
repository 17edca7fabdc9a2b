// CPU drivers of a stack of recurrent layers (core/params.h): the device-neutral stack of
// core/stack.h over the CPU's layer driver (rnn_cpu.cpp), with the CPU's context (context.h).
//
// forward of a layer:  W_ih x for all N rows as one GEMM, then per step one recurrent GEMM
//                      (W_hh h_{t-1} over the rows still active) and one fused pointwise pass of
//                      the cell (cells/*.h), plus the projection GEMM of an LSTM with proj_size.
// backward of a layer: the same steps in reverse order, fused pointwise backward + recurrent
//                      GEMM, then the input and weight gradients as whole-sequence GEMMs and the
//                      bias gradients as column sums.
// The reverse direction walks the steps backwards; nothing is flipped or copied.
#pragma once

#include "core/params.h"
#include "cpu/context.h"

namespace fastrnn::cpu {

// Run on the best instruction set of this CPU (dispatch.cpp). scalar_t: float, double, bfloat16
// or float16; the context is the compute type's (the products run in it).
template <typename scalar_t>
void rnn_forward(const RnnParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx);

template <typename scalar_t>
void rnn_backward(const RnnGradParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx);

// The instruction set the drivers run with: "avx512", "avx2" or "baseline". The best one this CPU
// has, unless the environment variable FASTRNN_CPU_ISA names another one (for testing).
const char* isa_name();

// Whether bfloat16 products run on the CPU's AVX512_BF16 dot product (cpu/gemm_bf16.h): on such
// a CPU with the avx512 instruction set, unless FASTRNN_BF16_DOT=0; else through float32.
bool bf16_dot();

// Whether the CPU says it is an Intel one (cpuid's vendor string), for the glue's choice of GEMM
// engine.
bool cpu_is_intel();

// One copy of the drivers per instruction set (rnn_cpu.cpp compiled with different flags).
#define FASTRNN_DECLARE_ISA(isa)                                                                \
  namespace isa {                                                                               \
  template <typename scalar_t>                                                                  \
  void rnn_forward(const RnnParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx);      \
  template <typename scalar_t>                                                                  \
  void rnn_backward(const RnnGradParams<scalar_t>& p, const Context<compute_t<scalar_t>>& ctx); \
  bool bf16_dot();                                                                              \
  }
FASTRNN_DECLARE_ISA(avx512)
FASTRNN_DECLARE_ISA(avx2)
FASTRNN_DECLARE_ISA(baseline)
#undef FASTRNN_DECLARE_ISA

}  // namespace fastrnn::cpu
