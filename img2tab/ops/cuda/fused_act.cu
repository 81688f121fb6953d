// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// CUDA kernel for the fused bias + leaky ReLU + gain: one thread per element, grid-stride loop.
// This translation unit includes no torch headers (see common.h).
#include "fused_act.h"

namespace img2tab {
namespace {

template <typename T, typename Acc>
__global__ void fused_act_kernel(const T* __restrict__ x, const T* __restrict__ ref,
                                 const Acc* __restrict__ bias, T* __restrict__ out,
                                 const FusedActParams p) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; idx < p.numel;
       idx += stride) {
    out[idx] = from_acc<T, Acc>(fused_act_element<T, Acc>(x, ref, bias, p, idx));
  }
}

template <typename T, typename Acc>
cudaError_t launch(const void* x, const void* ref, const void* bias, void* out,
                   const FusedActParams& p, cudaStream_t stream) {
  if (p.numel <= 0) return cudaSuccess;
  int64_t blocks = (p.numel + kThreads - 1) / kThreads;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  fused_act_kernel<T, Acc><<<static_cast<unsigned int>(blocks), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<const T*>(ref), static_cast<const Acc*>(bias),
      static_cast<T*>(out), p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t fused_act_launch(DType dtype, const void* x, const void* ref, const void* bias,
                             void* out, const FusedActParams& params, cudaStream_t stream) {
  switch (dtype) {
    case DType::kFloat32:
      return launch<float, float>(x, ref, bias, out, params, stream);
    case DType::kFloat64:
      return launch<double, double>(x, ref, bias, out, params, stream);
    case DType::kFloat16:
      return launch<__half, float>(x, ref, bias, out, params, stream);
    case DType::kBFloat16:
      return launch<__nv_bfloat16, float>(x, ref, bias, out, params, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace img2tab
