// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// CUDA kernel for upfirdn2d: one thread per output element, grid-stride loop. This translation
// unit includes no torch headers (see common.h), so it compiles in seconds with `nvcc -c`.
#include "upfirdn2d.h"

namespace img2tab {
namespace {

template <typename T, typename Acc>
__global__ void upfirdn2d_kernel(const T* __restrict__ x, const Acc* __restrict__ filter,
                                 T* __restrict__ y, const UpFirDn2dParams p) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    y[idx] = from_acc<T, Acc>(upfirdn2d_element<T, Acc>(x, filter, p, idx));
  }
}

template <typename T, typename Acc>
cudaError_t launch(const void* x, const void* filter, void* y, const UpFirDn2dParams& p,
                   cudaStream_t stream) {
  const int64_t total = p.planes * p.out_h * p.out_w;
  if (total <= 0) return cudaSuccess;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  upfirdn2d_kernel<T, Acc><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const Acc*>(filter), static_cast<T*>(y), p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t upfirdn2d_launch(DType dtype, const void* x, const void* filter, void* y,
                             const UpFirDn2dParams& params, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return launch<float, float>(x, filter, y, params, stream);
    case DType::kFloat64:
      return launch<double, double>(x, filter, y, params, stream);
    case DType::kFloat16:
      return launch<__half, float>(x, filter, y, params, stream);
    case DType::kBFloat16:
      return launch<__nv_bfloat16, float>(x, filter, y, params, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace img2tab
