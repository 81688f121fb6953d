// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// Fused bias + leaky ReLU + gain, and its derivative, as per-element functions and a launcher.
//
// Forward:  y = leaky_relu(x + b[c], slope) * scale
// Gradient: g_x = g * (x + b[c] > 0 ? scale : scale * slope)
// where c is the index along dim 1. Both match torch's leaky_relu (the derivative at 0 is slope).
#pragma once

#include "common.h"

namespace img2tab {

template <typename Acc>
IMG2TAB_HD Acc leaky_relu_scaled(Acc v, Acc slope, Acc scale) {
  return (v > Acc(0) ? v : v * slope) * scale;
}

template <typename Acc>
IMG2TAB_HD Acc leaky_relu_scaled_slope(Acc pre, Acc slope, Acc scale) {
  return pre > Acc(0) ? scale : slope * scale;
}

struct FusedActParams {
  int64_t numel;
  int64_t channels;  // size of dim 1 (bias length); ignored without bias
  int64_t inner;     // product of the sizes after dim 1
  double slope;
  double scale;
};

// Channel (dim-1 index) of flat element idx of a contiguous tensor.
IMG2TAB_HD int64_t channel_of(int64_t idx, int64_t channels, int64_t inner) {
  return (idx / inner) % channels;
}

// Flat element idx: forward value (ref == nullptr) or gradient (ref = forward input, x = incoming
// gradient). bias may be nullptr.
template <typename T, typename Acc>
IMG2TAB_HD Acc fused_act_element(const T* x, const T* ref, const Acc* bias,
                                 const FusedActParams& p, int64_t idx) {
  const Acc slope = static_cast<Acc>(p.slope);
  const Acc scale = static_cast<Acc>(p.scale);
  const Acc b = bias != nullptr ? bias[channel_of(idx, p.channels, p.inner)] : Acc(0);
  const Acc v = to_acc<Acc>(x[idx]);
  if (ref != nullptr) {
    return v * leaky_relu_scaled_slope<Acc>(to_acc<Acc>(ref[idx]) + b, slope, scale);
  }
  return leaky_relu_scaled<Acc>(v + b, slope, scale);
}

#if !defined(IMG2TAB_HOST_EMULATION)
// Forward mode (ref == nullptr): out = leaky_relu(x + bias, slope) * scale.
// Gradient mode (ref != nullptr): out = x * d/dv[leaky_relu(v, slope) * scale] at v = ref + bias,
// where x holds the incoming gradient and ref the forward input.
// x, ref, out: contiguous, element type `dtype`; bias (may be nullptr): [channels] in the
// accumulator type (double for Float64, float otherwise).
cudaError_t fused_act_launch(DType dtype, const void* x, const void* ref, const void* bias,
                             void* out, const FusedActParams& params, cudaStream_t stream);
#endif

}  // namespace img2tab
