// The device Exec of cuda/exec.h and the CUDA drivers' instantiation for it.
#include "cuda/rnn_cuda.h"

#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/Exceptions.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAException.h>

#include "core/stack.h"
#include "cuda/driver.h"

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
  DeviceExec()
      : stream_(at::cuda::getCurrentCUDAStream()), handle_(at::cuda::getCurrentCUDABlasHandle()) {}

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

  template <typename T>
  void zero(T* dst, int64_t n) const {
    if (n) C10_CUDA_CHECK(cudaMemsetAsync(dst, 0, n * sizeof(T), stream_));
  }

 private:
  static cublasOperation_t op(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

  cudaStream_t stream_;
  cublasHandle_t handle_;
};

}  // namespace

template <typename scalar_t>
void device_forward(const RnnParams<scalar_t>& p) {
  DeviceExec exec;
  run_stack_forward(Driver<DeviceExec, scalar_t>(exec), p);
}

template <typename scalar_t>
void device_backward(const RnnGradParams<scalar_t>& p) {
  DeviceExec exec;
  run_stack_backward(Driver<DeviceExec, scalar_t>(exec), p);
}

template void device_forward<float>(const RnnParams<float>&);
template void device_forward<double>(const RnnParams<double>&);
template void device_backward<float>(const RnnGradParams<float>&);
template void device_backward<double>(const RnnGradParams<double>&);

}  // namespace fastrnn::cuda
