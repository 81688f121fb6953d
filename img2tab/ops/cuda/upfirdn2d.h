// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// upfirdn2d: upsample by zero insertion, pad (negative pads crop), convolve with a 2-D FIR filter
// (true convolution, i.e. correlation with the flipped filter), then keep every down-th pixel.
//
// One output pixel is computed by `upfirdn2d_point`; the CUDA kernel runs it once per output
// element. Only the filter taps that land on non-zero (not inserted) input samples are visited:
// with upsampling factor u, every u-th tap along each axis.
#pragma once

#include "common.h"

namespace img2tab {

struct UpFirDn2dParams {
  int64_t planes;  // N * C; each plane is a contiguous in_h x in_w image
  int64_t in_h, in_w;
  int64_t out_h, out_w;
  int64_t up_x, up_y;
  int64_t down_x, down_y;
  int64_t pad_x0, pad_y0;  // leading pads; trailing pads only set out_h / out_w
  int64_t k_h, k_w;
};

// Smallest i >= 0 with (base + i) divisible by step (step >= 1).
IMG2TAB_HD int64_t first_aligned_tap(int64_t base, int64_t step) {
  int64_t r = base % step;  // in (-step, step)
  if (r < 0) r += step;
  return r == 0 ? 0 : step - r;
}

// Output pixel (oy, ox) of one plane.
//
// In the upsampled, padded image the pixel's window starts at row oy * down_y; its tap i (0-based,
// top to bottom) reads upsampled row u = oy * down_y - pad_y0 + i, which holds input row u / up_y
// when u is a multiple of up_y and 0 <= u / up_y < in_h, and zero otherwise. True convolution
// pairs tap i with filter row k_h - 1 - i (and likewise for columns).
template <typename T, typename Acc>
IMG2TAB_HD Acc upfirdn2d_point(const T* plane, const Acc* filter, const UpFirDn2dParams& p,
                               int64_t oy, int64_t ox) {
  const int64_t uy0 = oy * p.down_y - p.pad_y0;
  const int64_t ux0 = ox * p.down_x - p.pad_x0;
  const int64_t j0 = first_aligned_tap(ux0, p.up_x);
  Acc acc = Acc(0);
  for (int64_t i = first_aligned_tap(uy0, p.up_y); i < p.k_h; i += p.up_y) {
    const int64_t iy = (uy0 + i) / p.up_y;  // exact division
    if (iy < 0 || iy >= p.in_h) continue;
    const T* row = plane + iy * p.in_w;
    const Acc* frow = filter + (p.k_h - 1 - i) * p.k_w + (p.k_w - 1);
    for (int64_t j = j0; j < p.k_w; j += p.up_x) {
      const int64_t ix = (ux0 + j) / p.up_x;
      if (ix < 0 || ix >= p.in_w) continue;
      acc += to_acc<Acc>(row[ix]) * frow[-j];
    }
  }
  return acc;
}

// Flat output element idx of y [planes, out_h, out_w] (contiguous) from x [planes, in_h, in_w].
template <typename T, typename Acc>
IMG2TAB_HD Acc upfirdn2d_element(const T* x, const Acc* filter, const UpFirDn2dParams& p,
                                 int64_t idx) {
  const int64_t ox = idx % p.out_w;
  const int64_t rest = idx / p.out_w;
  const int64_t oy = rest % p.out_h;
  const int64_t plane = rest / p.out_h;
  return upfirdn2d_point<T, Acc>(x + plane * p.in_h * p.in_w, filter, p, oy, ox);
}

#if !defined(IMG2TAB_HOST_EMULATION)
// Launches the kernel on `stream`: x [planes, in_h, in_w] (contiguous, element type `dtype`),
// filter [k_h, k_w] (contiguous, accumulator type), y [planes, out_h, out_w] (contiguous, `dtype`).
cudaError_t upfirdn2d_launch(DType dtype, const void* x, const void* filter, void* y,
                             const UpFirDn2dParams& params, cudaStream_t stream);
#endif

}  // namespace img2tab
