// The device Exec of cuda/exec.h and the CUDA drivers' instantiation for it.
#include "cuda/rnn_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>

#include <type_traits>

#include "core/stack.h"
#include "cuda/driver.h"
#include "cuda/through_float.h"

namespace fastrnn::cuda {
namespace {

template <typename T>
struct DeviceBuffer {
  c10::DataPtr data;
  T* get() const { return static_cast<T*>(data.get()); }
};

// Every call on torch's current stream and cuBLAS handle (the caller holds the device guard);
// no stream, event or synchronisation of its own.
class DeviceExec {
 public:
  explicit DeviceExec(bool allow_tf32)
      : stream_(at::cuda::getCurrentCUDAStream()),
        handle_(at::cuda::getCurrentCUDABlasHandle()),
        allow_tf32_(allow_tf32) {}

  // torch.backends.cuda.matmul.allow_tf32, as the glue read it for this call
  bool allow_tf32() const { return allow_tf32_; }

  template <class Kernel>
  void launch(const Kernel& kernel, const Launch& l) const {
    if (l.blocks == 0 || l.rows == 0) return;
    TORCH_CHECK(l.rows <= 65535, "fastrnn: CUDA kernels take at most 65535 batch rows, got ",
                l.rows);
    run_kernel<<<dim3(static_cast<unsigned>(l.blocks), static_cast<unsigned>(l.rows)),
                 static_cast<unsigned>(l.threads), static_cast<size_t>(l.shared_bytes),
                 stream_>>>(kernel);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // All blocks co-resident (the driver checked with cuda/plan.h and resident_blocks); a grid
  // that cannot be is refused by CUDA (cudaErrorCooperativeLaunchTooLarge), not run to a hang.
  template <class Kernel>
  void launch_cooperative(const Kernel& kernel, const Launch& l) const {
    TORCH_CHECK(l.rows == 1, "fastrnn: a cooperative launch has one row of blocks");
    if (l.blocks == 0) return;
    const void* fn = reinterpret_cast<const void*>(&run_cooperative_kernel<Kernel>);
    allow_shared(fn, l.shared_bytes);
    void* args[] = {const_cast<Kernel*>(&kernel)};
    C10_CUDA_CHECK(cudaLaunchCooperativeKernel(fn, dim3(static_cast<unsigned>(l.blocks)),
                                               dim3(static_cast<unsigned>(l.threads)), args,
                                               static_cast<size_t>(l.shared_bytes), stream_));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  // CUDA's occupancy calculator for the cooperative kernel, with its real registers; none fits
  // where its static and dynamic shared memory together pass the per-block limit.
  template <class Kernel>
  int64_t resident_blocks(int64_t threads, int64_t shared_bytes) const {
    const void* fn = reinterpret_cast<const void*>(&run_cooperative_kernel<Kernel>);
    cudaFuncAttributes attributes;
    C10_CUDA_CHECK(cudaFuncGetAttributes(&attributes, fn));
    const auto per_block = at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
    if (static_cast<size_t>(shared_bytes) + attributes.sharedSizeBytes > per_block) return 0;
    allow_shared(fn, shared_bytes);
    int blocks = 0;
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &blocks, fn, static_cast<int>(threads), static_cast<size_t>(shared_bytes)));
    return blocks;
  }

  DeviceLimits limits() const {
    const cudaDeviceProp* p = at::cuda::getCurrentDeviceProperties();
    DeviceLimits d;
    d.name = p->name;
    d.sms = p->multiProcessorCount;
    d.shared_per_block = static_cast<int64_t>(p->sharedMemPerBlockOptin);
    d.shared_per_sm = static_cast<int64_t>(p->sharedMemPerMultiprocessor);
    d.shared_reserved_per_block = static_cast<int64_t>(p->reservedSharedMemPerBlock);
    d.registers_per_sm = p->regsPerMultiprocessor;
    d.threads_per_sm = p->maxThreadsPerMultiProcessor;
    d.blocks_per_sm = p->maxBlocksPerMultiProcessor;
    d.cooperative_launch = p->cooperativeLaunch != 0;
    d.max_grid_threads = d.sms * d.threads_per_sm;
    return d;
  }

  PathRequest requested_path() const { return path_from_environment(); }

  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* A,
            int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc) const {
    const float one = 1;
    TORCH_CUDABLAS_CHECK(cublasSgemm(handle_, op(trans_a), op(trans_b), m, n, k, &one, A, lda, B,
                                     ldb, &beta, C, ldc));
  }

  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const double* A,
            int64_t lda, const double* B, int64_t ldb, double beta, double* C,
            int64_t ldc) const {
    const double one = 1;
    TORCH_CUDABLAS_CHECK(cublasDgemm(handle_, op(trans_a), op(trans_b), m, n, k, &one, A, lda, B,
                                     ldb, &beta, C, ldc));
  }

  // bfloat16 or float16 A and B, float32 C: the 16-bit products summed in float32 (tensor cores)
  template <typename Half>
    requires std::is_same_v<Half, bfloat16> || std::is_same_v<Half, float16>
  void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const Half* A,
            int64_t lda, const Half* B, int64_t ldb, float beta, float* C, int64_t ldc) const {
    constexpr cudaDataType_t type = std::is_same_v<Half, bfloat16> ? CUDA_R_16BF : CUDA_R_16F;
    const float one = 1;
    TORCH_CUDABLAS_CHECK(cublasGemmEx(handle_, op(trans_a), op(trans_b), m, n, k, &one, A, type,
                                      lda, B, type, ldb, &beta, C, CUDA_R_32F, ldc,
                                      CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }

  template <typename T>
  DeviceBuffer<T> buffer(int64_t n) const {
    return {c10::cuda::CUDACachingAllocator::get()->allocate(std::max<int64_t>(n, 1) * sizeof(T))};
  }

  template <typename T>
  void copy(T* dst, const T* src, int64_t n) const {
    if (n) {
      C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice, stream_));
    }
  }

  // From pageable host memory: CUDA stages it before returning, so src may go right after.
  template <typename T>
  void to_device(T* dst, const T* src, int64_t n) const {
    if (n) {
      C10_CUDA_CHECK(cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyHostToDevice, stream_));
    }
  }

  template <typename T>
  void zero(T* dst, int64_t n) const {
    if (n) C10_CUDA_CHECK(cudaMemsetAsync(dst, 0, n * sizeof(T), stream_));
  }

 private:
  // Dynamic shared memory beyond 48 KiB is opted in per kernel.
  static void allow_shared(const void* fn, int64_t bytes) {
    if (bytes > 48 * 1024) {
      C10_CUDA_CHECK(cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                          static_cast<int>(bytes)));
    }
  }

  static cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

  cudaStream_t stream_;
  cublasHandle_t handle_;
  bool allow_tf32_;
};

}  // namespace

template <typename scalar_t>
void device_forward(const RnnParams<scalar_t>& p, bool allow_tf32) {
  DeviceExec exec(allow_tf32);
  drivers_forward(exec, p);
}

template <typename scalar_t>
void device_backward(const RnnGradParams<scalar_t>& p, bool allow_tf32) {
  DeviceExec exec(allow_tf32);
  drivers_backward(exec, p);
}

#define FASTRNN_INSTANTIATE(T)                                 \
  template void device_forward<T>(const RnnParams<T>&, bool); \
  template void device_backward<T>(const RnnGradParams<T>&, bool);
FASTRNN_FOR_EACH_DTYPE(FASTRNN_INSTANTIATE)
#undef FASTRNN_INSTANTIATE

}  // namespace fastrnn::cuda
