// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// Helpers shared by the C++ bindings (the .cpp files, compiled with torch headers). The kernel
// translation units (.cu) never include this file, so they keep compiling with a bare `nvcc -c`.
#pragma once

#include <ATen/core/Tensor.h>

#include "common.h"

namespace img2tab {

// The launcher's element type for a tensor; `op` names the operation in the error message.
inline DType dtype_of(const at::Tensor& t, const char* op) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::kFloat32;
    case at::kDouble:
      return DType::kFloat64;
    case at::kHalf:
      return DType::kFloat16;
    case at::kBFloat16:
      return DType::kBFloat16;
    default:
      TORCH_CHECK(false, "img2tab ", op, ": unsupported dtype ", t.scalar_type(),
                  " (float16, bfloat16, float32 or float64)");
  }
}

// Filters and biases are passed to the launchers in the accumulator type of x.
inline at::ScalarType accumulator_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Raises with the CUDA error string when a launcher did not return cudaSuccess.
inline void check_launch(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, "img2tab ", op, ": kernel launch failed: ", cudaGetErrorString(err));
}

}  // namespace img2tab
