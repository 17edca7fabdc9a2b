// The ops' schemas and the pybind11 module. The kernels are registered per dispatch key where
// they live: cpu/ops_cpu.cpp (CPU), cuda/ops_cuda.cpp (CUDA), core/autograd.cpp (Autograd); the
// fake kernels in python/fastrnn/ops.py. docs/architecture.md shows how a call flows.
//
// Ops (namespace fastrnn), one call for a whole stack of layers (docs/stack-op.md):
//   rnn(mode, input, batch_sizes?, hx?, cx?, weights[], has_bias, num_layers, bidirectional,
//       proj_size, dropout_masks?, training, <options>, norms_probe?)
//       -> (output, h_n, c_n, reserve)
//   rnn_backward(mode, grad_output?, grad_h_n?, grad_c_n?, <rnn's inputs but training>, output,
//                reserve, input_needs_grad=True, hx_needs_grad=True, <options>,
//                record_norms=False)
//       -> (grad_input, grad_hx, grad_cx, grad_weights[], grad_norms)
//   cell(mode, input, hx?, cx?, weights[], has_bias, training, <options>) -> (h, c, reserve)
//       one step of one layer and direction (the cells'): input [B, I], hx, cx, h, c [B, H];
//       rnn on [1, B, .] views, differentiated through rnn_backward (core/op_args.h)
// <options>: the cells' options of cells/options.h, `float? grad_clip=None, ...`.
// mode: a name of cells/cells.h's kModes. input: padded [T, B, I], or packed data [N, I] with
// batch_sizes [T] (int64, CPU; then hx is required). weights: torch.nn's _flat_weights order.
// c_n and grad_cx are [0] unless LSTM; reserve, what backward needs, is [N, W] when training and
// [0] otherwise. grad_input (grad_hx) is [0] when input_needs_grad (hx_needs_grad) is false, and
// backward skips the products only it needs. norms_probe (float32 [2, L*D, T]): its gradient,
// through autograd, is backward's grad_norms (recorded when the probe is given), [0] otherwise.
#include <torch/csrc/Exceptions.h>
#include <torch/extension.h>
#include <torch/library.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "cells/cells.h"
#include "core/checks.h"
#include "core/op_args.h"
#include "core/reserve.h"
#include "cpu/ops_cpu.h"
#include "cpu/rnn_cpu.h"
#include "cpu/scratch.h"
#include "cuda/emulator.h"

TORCH_LIBRARY(fastrnn, m) {
  m.def(
      "rnn(str mode, Tensor input, Tensor? batch_sizes, Tensor? hx, Tensor? cx, Tensor[] weights, "
      "bool has_bias, int num_layers, bool bidirectional, int proj_size, Tensor? dropout_masks, "
      "bool training" FASTRNN_OPTIONS_SCHEMA ", Tensor? norms_probe=None"
      ") -> (Tensor output, Tensor h_n, Tensor c_n, Tensor reserve)");
  m.def(
      "rnn_backward(str mode, Tensor? grad_output, Tensor? grad_h_n, Tensor? grad_c_n, "
      "Tensor input, Tensor? batch_sizes, Tensor? hx, Tensor? cx, Tensor[] weights, "
      "bool has_bias, int num_layers, bool bidirectional, int proj_size, Tensor? dropout_masks, "
      "Tensor output, Tensor reserve, bool input_needs_grad=True, bool hx_needs_grad=True"
      FASTRNN_OPTIONS_SCHEMA ", bool record_norms=False"
      ") -> (Tensor grad_input, Tensor grad_hx, Tensor grad_cx, Tensor[] grad_weights, "
      "Tensor grad_norms)");
  m.def(
      "cell(str mode, Tensor input, Tensor? hx, Tensor? cx, Tensor[] weights, bool has_bias, "
      "bool training" FASTRNN_OPTIONS_SCHEMA ") -> (Tensor h, Tensor c, Tensor reserve)");
}

// The cell op on every device and on meta tensors: the stack op on views (core/op_args.h); its
// autograd is core/autograd.cpp's.
TORCH_LIBRARY_IMPL(fastrnn, CompositeExplicitAutograd, m) {
  m.impl("cell", &fastrnn::cell_kernel<&fastrnn::cell_through_stack>);
}

namespace {

// A tensor as the fake kernels describe it to check_stack: (sizes, dtype, device).
using PyMeta = std::tuple<std::vector<int64_t>, at::ScalarType, at::Device>;
using OptPyMeta = std::optional<PyMeta>;

// (views of the arguments' sizes: no temporary copies may be passed)
fastrnn::TensorMeta meta_of(const PyMeta& t) {
  return {std::get<0>(t), std::get<1>(t), std::get<2>(t)};
}
fastrnn::OptMeta meta_of(const OptPyMeta& t) {
  return t ? fastrnn::OptMeta(meta_of(*t)) : std::nullopt;
}

// The checks of a call of the op (core/checks.h) on the fake kernels' descriptions of its
// tensors; `backward`: (output, reserve, grad_output, grad_h_n, grad_c_n) of rnn_backward.
void check_call(const std::string& mode, bool has_bias, int64_t num_layers, bool bidirectional,
                int64_t proj_size, const std::map<std::string, std::optional<double>>& options,
                const PyMeta& input, const OptPyMeta& batch_sizes,
                const std::optional<std::vector<int64_t>>& batch_size_values,
                const OptPyMeta& hx, const OptPyMeta& cx, const std::vector<PyMeta>& weights,
                const OptPyMeta& dropout_masks, const OptPyMeta& norms_probe,
                const std::optional<std::vector<OptPyMeta>>& backward) {
  fastrnn::CellOptions cell_options;
  const auto option = [&](const char* name) -> std::optional<double> {
    const auto it = options.find(name);
    return it == options.end() ? std::nullopt : it->second;
  };
#define FASTRNN_OPTION_FROM_DICT(name, off) \
  cell_options.name = option(#name).value_or(fastrnn::off);
  FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_FROM_DICT)
#undef FASTRNN_OPTION_FROM_DICT
  const fastrnn::StackConfig config = fastrnn::make_config(mode, has_bias, num_layers,
                                                           bidirectional, proj_size, cell_options);
  fastrnn::StackMetas metas{meta_of(input), meta_of(batch_sizes), batch_size_values,
                            meta_of(hx), meta_of(cx), {}, meta_of(dropout_masks),
                            meta_of(norms_probe)};
  for (const PyMeta& w : weights) metas.weights.push_back(meta_of(w));
  const fastrnn::StackShape s = fastrnn::check_stack(config, metas);
  if (backward) {
    const std::vector<OptPyMeta>& b = *backward;
    TORCH_CHECK(b.size() == 5 && b[0] && b[1], "fastrnn: check_call's backward takes (output, "
                "reserve, grad_output, grad_h_n, grad_c_n)");
    fastrnn::check_backward(s, metas.input,
                            {*meta_of(b[0]), *meta_of(b[1]), meta_of(b[2]), meta_of(b[3]),
                             meta_of(b[4])});
  }
}

// cuda/plan.h on an emulated device as a dict, for the tests and .ci/residency.py; resident blocks
// from resident_blocks_per_sm with the kernel's registers and static shared memory.
pybind11::dict cuda_plan(const std::string& mode, int64_t batch, int64_t hidden, int64_t proj_size,
                         int64_t element_bytes, bool backward, const std::string& device_name,
                         int64_t sms, int64_t registers, int64_t static_shared,
                         const std::string& path, bool allow_tf32) {
  using namespace fastrnn::cuda;
  DeviceLimits device = device_limits(device_name);
  if (sms > 0) device.sms = sms, device.max_grid_threads = sms * device.threads_per_sm;
  PersistentSizes sizes;
  sizes.B = batch, sizes.H = hidden, sizes.P = proj_size ? proj_size : hidden;
  sizes.G = fastrnn::cell_shape(mode).first, sizes.element_bytes = element_bytes;
  sizes.project = proj_size > 0, sizes.backward = backward;
  sizes.tensor_cores = persistent_tensor_cores(element_bytes, allow_tf32);
  const PersistentPlan plan = plan_persistent(sizes, device, [&](int64_t threads, int64_t bytes) {
    return resident_blocks_per_sm(device, threads, bytes + static_shared, registers);
  });
  const bool persistent = use_persistent(parse_path(path), sizes, plan, device);
  pybind11::dict d;
  d["path"] = persistent ? "persistent" : "alternating";
  d["fits"] = plan.fits, d["blocks"] = plan.blocks, d["threads"] = plan.threads;
  d["units"] = plan.units, d["proj_units"] = plan.proj_units;
  d["shared_bytes"] = plan.shared_bytes, d["resident_per_sm"] = plan.resident_per_sm;
  d["tensor_cores"] = plan.tensor_cores;
  d["sms"] = device.sms, d["shared_per_block"] = device.shared_per_block;
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "fastrnn compiled kernels; the ops are torch.ops.fastrnn.*";
#ifdef FASTRNN_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
  m.def("cpu_isa", &fastrnn::cpu::isa_name,
        "Instruction set the CPU kernels run with (avx512, avx2, baseline; FASTRNN_CPU_ISA "
        "picks a lower one)");
  m.def("cpu_bf16_dot", &fastrnn::cpu::bf16_dot,
        "Whether bfloat16 products run on the CPU's AVX512_BF16 dot product (else through "
        "float32; FASTRNN_BF16_DOT=0 turns it off)");
  m.def("gemm_engine", &fastrnn::cpu::gemm_engine,
        "Engine of the whole-sequence GEMMs: 'torch' (at::mm, MKL) on Intel CPUs, 'openblas' "
        "elsewhere; FASTRNN_GEMM=torch or openblas picks one");
  m.def("empty_cpu_cache", &fastrnn::cpu::scratch_cache::clear,
        "Free the large scratch buffers the CPU kernels keep between calls (cpu/scratch.h)");
  m.def("cpu_cached_bytes", &fastrnn::cpu::scratch_cache::cached_bytes,
        "Bytes of scratch buffers the CPU kernels keep between calls (at most 256 MiB)");
  // True once the CUDA drivers (cuda/rnn_cuda.cu) serve CUDA tensors by default: after they
  // have run on a GPU (until then FASTRNN_EXPERIMENTAL_CUDA=1, cuda/ops_cuda.cpp).
  m.attr("has_cuda_kernels") = false;
  m.def("_set_cuda_emulation", &fastrnn::cuda::set_emulation,
        "Run the ops on CPU tensors through the CUDA drivers under host emulation (or not)");
  m.def("_cuda_emulation", &fastrnn::cuda::emulation_enabled);
  m.def("_reset_cuda_emulation_stats", &fastrnn::cuda::reset_emulation_stats);
  m.def("_cuda_emulation_stats", [] {
    const fastrnn::cuda::EmulationStats s = fastrnn::cuda::emulation_stats();
    return std::make_tuple(s.launches, s.synced_launches, s.cooperative_launches, s.gemms,
                           s.half_gemms, s.mma_tiles);
  });
  m.def(
      "_emulated_gemm",
      [](bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const at::Tensor& a,
         int64_t lda, const at::Tensor& b, int64_t ldb, double beta, const at::Tensor& c,
         int64_t ldc) {
        // the emulator's exec.gemm (cuda/emulator.h) on flat column-major storage, in place on c
        const bool half = a.dtype() == at::kBFloat16 || a.dtype() == at::kHalf;
        // elements a column-major rows x cols matrix with leading dimension ld spans
        const auto spans = [](const at::Tensor& t, int64_t rows, int64_t cols, int64_t ld) {
          return ld >= std::max<int64_t>(rows, 1) &&
                 (rows == 0 || cols == 0 || t.numel() >= (cols - 1) * ld + rows);
        };
        const at::ScalarType c_type = half ? at::kFloat : a.scalar_type();
        TORCH_CHECK(a.dtype() == b.dtype() && c.scalar_type() == c_type &&
                        a.is_contiguous() && b.is_contiguous() && c.is_contiguous() &&
                        a.is_cpu() && b.is_cpu() && c.is_cpu() && m >= 0 && n >= 0 && k >= 0 &&
                        spans(a, trans_a ? k : m, trans_a ? m : k, lda) &&
                        spans(b, trans_b ? n : k, trans_b ? k : n, ldb) && spans(c, m, n, ldc),
                    "_emulated_gemm: a and b of one dtype, c of it or float32 for bfloat16 and "
                    "float16, contiguous CPU storage of the column-major matrices");
        // T the operands' type, C the accumulator's (float32 for the 16-bit types)
        const auto run = [&](auto type, auto accumulator) {
          using T = decltype(type);
          using C = decltype(accumulator);
          fastrnn::cuda::emulated_gemm(trans_a, trans_b, m, n, k,
                                       static_cast<const T*>(a.const_data_ptr()), lda,
                                       static_cast<const T*>(b.const_data_ptr()), ldb,
                                       static_cast<C>(beta), static_cast<C*>(c.data_ptr()), ldc);
        };
        if (a.dtype() == at::kFloat) {
          run(float{}, float{});
        } else if (a.dtype() == at::kDouble) {
          run(double{}, double{});
        } else if (a.dtype() == at::kBFloat16) {
          run(fastrnn::bfloat16{}, float{});
        } else if (a.dtype() == at::kHalf) {
          run(fastrnn::float16{}, float{});
        } else {
          TORCH_CHECK(false, "_emulated_gemm: float32, float64, bfloat16 or float16, got ",
                      a.dtype());
        }
      },
      "For the tests: the emulated exec.gemm, cuBLAS's column-major C[m, n] = op(A)[m, k] "
      "op(B)[k, n] + beta C on flat storage (bfloat16 and float16 A and B: float32 C)",
      pybind11::arg("trans_a"), pybind11::arg("trans_b"), pybind11::arg("m"), pybind11::arg("n"),
      pybind11::arg("k"), pybind11::arg("a"), pybind11::arg("lda"), pybind11::arg("b"),
      pybind11::arg("ldb"), pybind11::arg("beta"), pybind11::arg("c"), pybind11::arg("ldc"));
  m.def(
      "_emulated_mma_tile",
      [](const at::Tensor& a, const at::Tensor& b, const at::Tensor& acc, int64_t lanes) {
        // the emulator's ctx.mma_tile on one warp (cuda/emulator.h), in place on acc
        TORCH_CHECK(a.dim() == 2 && a.size(0) == 16 && b.dim() == 2 && b.size(0) == 16 &&
                        a.size(1) == b.size(1) && a.dtype() == b.dtype() && a.is_contiguous() &&
                        b.is_contiguous() && acc.sizes() == at::IntArrayRef({16, 16}) &&
                        acc.dtype() == at::kFloat && acc.is_contiguous() && a.is_cpu() &&
                        b.is_cpu() && acc.is_cpu(),
                    "_emulated_mma_tile: a and b [16, k] contiguous of one dtype, acc [16, 16] "
                    "float32 contiguous, on the CPU");
        const int64_t k = a.size(1);
        float* c = acc.data_ptr<float>();
        if (a.dtype() == at::kFloat) {
          fastrnn::cuda::emulated_mma_tile(a.data_ptr<float>(), b.data_ptr<float>(), c, k, lanes);
        } else if (a.dtype() == at::kBFloat16) {
          fastrnn::cuda::emulated_mma_tile(static_cast<const fastrnn::bfloat16*>(a.data_ptr()),
                                           static_cast<const fastrnn::bfloat16*>(b.data_ptr()), c,
                                           k, lanes);
        } else if (a.dtype() == at::kHalf) {
          fastrnn::cuda::emulated_mma_tile(static_cast<const fastrnn::float16*>(a.data_ptr()),
                                           static_cast<const fastrnn::float16*>(b.data_ptr()), c,
                                           k, lanes);
        } else {
          TORCH_CHECK(false, "_emulated_mma_tile: float32 (TF32), bfloat16 or float16, got ",
                      a.dtype());
        }
      },
      "For the tests: the emulated tensor-core tile product acc += a b^T on one warp, of which "
      "the first `lanes` threads call it",
      pybind11::arg("a"), pybind11::arg("b"), pybind11::arg("acc"), pybind11::arg("lanes") = 32);
  m.def(
      "_set_cuda_emulation_settings",
      [](const std::string& path, const std::string& device, int64_t sms) {
        fastrnn::cuda::set_emulation_settings({path, device, sms});
      },
      "The emulation's CUDA path ('' for FASTRNN_CUDA_PATH), emulated device and SM count "
      "(0: the device's own)",
      pybind11::arg("path"), pybind11::arg("device"), pybind11::arg("sms"));
  m.def("_cuda_emulation_settings", [] {
    const fastrnn::cuda::EmulationSettings s = fastrnn::cuda::emulation_settings();
    return std::make_tuple(s.path, s.device, s.sms);
  });
  m.attr("_cuda_persistent_max_registers") = fastrnn::cuda::kPersistentMaxRegisters;
  m.attr("_cuda_persistent_static_shared") = fastrnn::cuda::kPersistentStaticShared;
  m.def(
      "_cuda_plan",
      [](const std::string& mode, int64_t batch, int64_t hidden, int64_t proj_size,
         int64_t element_bytes, bool backward, const std::string& device, int64_t sms,
         int64_t registers, int64_t static_shared, const std::string& path, bool allow_tf32) {
        return cuda_plan(mode, batch, hidden, proj_size, element_bytes, backward, device, sms,
                         registers, static_shared, path, allow_tf32);
      },
      "cuda/plan.h's decision for one layer on an emulated device (registers per thread and "
      "static shared memory of the kernel: by default the bounds cuda/plan.h assumes)",
      pybind11::arg("mode"), pybind11::arg("batch"), pybind11::arg("hidden"),
      pybind11::arg("proj_size") = 0, pybind11::arg("element_bytes") = 4,
      pybind11::arg("backward") = false, pybind11::arg("device") = "a100",
      pybind11::arg("sms") = 0, pybind11::arg("registers") = fastrnn::cuda::kPersistentMaxRegisters,
      pybind11::arg("static_shared") = fastrnn::cuda::kPersistentStaticShared,
      pybind11::arg("path") = "auto", pybind11::arg("allow_tf32") = false);
  std::vector<std::string> modes;
  for (const fastrnn::Mode& mode : fastrnn::kModes) modes.emplace_back(mode.name);
  m.attr("modes") = modes;
  m.def(
      "cell_shape", [](const std::string& mode) { return fastrnn::cell_shape(mode); },
      "(G, S) of a mode: gates, and values saved for backward per row, in units of H",
      pybind11::arg("mode"));
  m.def(
      "reserve_width",
      [](const std::string& mode, int64_t num_layers, int64_t directions, int64_t hidden_size,
         int64_t proj_size) {
        const auto [gates, saved] = fastrnn::cell_shape(mode);
        return fastrnn::reserve_width(num_layers, directions, saved, hidden_size,
                                      proj_size > 0 ? proj_size : hidden_size);
      },
      "Columns of the reserve (rows: N) that a training forward of this stack saves",
      pybind11::arg("mode"), pybind11::arg("num_layers"), pybind11::arg("directions"),
      pybind11::arg("hidden_size"), pybind11::arg("proj_size"));
#define FASTRNN_OPTION_PYARG(name, off) , pybind11::arg(#name) = pybind11::none()
  m.def("cell", torch::wrap_pybind_function_no_gil(&fastrnn::call_cell),
        "torch.ops.fastrnn.cell, called from C++ (the cells' fast path)", pybind11::arg("mode"),
        pybind11::arg("input"), pybind11::arg("hx"), pybind11::arg("cx"),
        pybind11::arg("weights"), pybind11::arg("has_bias"),
        pybind11::arg("training") FASTRNN_CELL_OPTIONS(FASTRNN_OPTION_PYARG));
#undef FASTRNN_OPTION_PYARG
  m.def("check_call", torch::wrap_pybind_function(&check_call),
        "The op's argument checks (core/checks.h) on tensors given as (sizes, dtype, device): "
        "the fake kernels' check, raising what the real kernel raises");
  m.def(
      "_to_16bit",
      [](const at::Tensor& x, bool bf16) {
        TORCH_CHECK_TYPE(x.scalar_type() == at::kFloat, "_to_16bit takes float32");
        const at::Tensor in = x.contiguous().cpu();
        at::Tensor out = at::empty(in.sizes(), in.options().dtype(at::kShort));
        const float* src = in.const_data_ptr<float>();
        int16_t* dst = out.mutable_data_ptr<int16_t>();
        for (int64_t i = 0; i < in.numel(); ++i) {
          const uint16_t bits = bf16 ? fastrnn::bfloat16(src[i]).bits : fastrnn::float16(src[i]).bits;
          dst[i] = static_cast<int16_t>(bits);
        }
        return out;
      },
      "The kernels' float -> bfloat16 (bf16) or float16 conversion (cells/half.h), as the bits "
      "(int16) of each value: for the tests, which compare it with torch's",
      pybind11::arg("x"), pybind11::arg("bf16"));
}
