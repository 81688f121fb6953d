// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// Definitions shared by the img2tab CUDA kernels and their C++ bindings. This header needs no
// torch headers; without IMG2TAB_HOST_EMULATION it also needs no more than the CUDA runtime API,
// so the kernel translation units compile quickly with a bare `nvcc -c`. With
// IMG2TAB_HOST_EMULATION defined, the per-element functions compile with any C++ compiler, which
// the tests use to check the kernels' index arithmetic on a machine without a GPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define IMG2TAB_HD __host__ __device__ __forceinline__
#else
#define IMG2TAB_HD inline
#endif

#if !defined(IMG2TAB_HOST_EMULATION)
#include <cuda_runtime_api.h>
#endif

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace img2tab {

// Element type of the tensors handed to a launcher. Float16, BFloat16 and Float32 accumulate in
// float; Float64 accumulates in double. Filters and biases are passed in the accumulator type.
enum class DType : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Element <-> accumulator conversions. torch builds extensions with __CUDA_NO_HALF_CONVERSIONS__ and
// __CUDA_NO_BFLOAT16_CONVERSIONS__, so the reduced-precision types use explicit intrinsics.
template <typename Acc, typename T>
struct Convert {
  static IMG2TAB_HD Acc to_acc(T v) { return static_cast<Acc>(v); }
  static IMG2TAB_HD T from_acc(Acc v) { return static_cast<T>(v); }
};

#if defined(__CUDACC__)
template <>
struct Convert<float, __half> {
  static IMG2TAB_HD float to_acc(__half v) { return __half2float(v); }
  static IMG2TAB_HD __half from_acc(float v) { return __float2half_rn(v); }
};

template <>
struct Convert<float, __nv_bfloat16> {
  static IMG2TAB_HD float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
  static IMG2TAB_HD __nv_bfloat16 from_acc(float v) { return __float2bfloat16_rn(v); }
};
#endif

template <typename Acc, typename T>
IMG2TAB_HD Acc to_acc(T v) {
  return Convert<Acc, T>::to_acc(v);
}

template <typename T, typename Acc>
IMG2TAB_HD T from_acc(Acc v) {
  return Convert<Acc, T>::from_acc(v);
}

// Threads per block and the cap on blocks of the grid-stride loops.
constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t(1) << 20;

}  // namespace img2tab
