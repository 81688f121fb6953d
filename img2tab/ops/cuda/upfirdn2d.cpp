// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// PyTorch binding of the upfirdn2d CUDA kernel (forward only; img2tab/ops/_upfirdn2d.py builds
// the backward pass from this same kernel).
// Lighter than <torch/extension.h> (which pulls in the whole C++ frontend): ~1/3 less build time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/utils/pybind.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "binding.h"
#include "upfirdn2d.h"

namespace {

at::Tensor upfirdn2d(const at::Tensor& x, const at::Tensor& filter, int64_t up_x, int64_t up_y,
                     int64_t down_x, int64_t down_y, int64_t pad_x0, int64_t pad_x1,
                     int64_t pad_y0, int64_t pad_y1) {
  TORCH_CHECK(x.is_cuda(), "img2tab upfirdn2d: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() == 4, "img2tab upfirdn2d: x must have shape [N, C, H, W]");
  TORCH_CHECK(filter.dim() == 2, "img2tab upfirdn2d: filter must have shape [kh, kw]");
  TORCH_CHECK(up_x >= 1 && up_y >= 1 && down_x >= 1 && down_y >= 1,
              "img2tab upfirdn2d: up and down must be >= 1");
  const img2tab::DType dtype = img2tab::dtype_of(x, "upfirdn2d");
  const c10::cuda::CUDAGuard guard(x.device());

  const at::ScalarType acc = img2tab::accumulator_type(x);
  const at::Tensor xc = x.contiguous();
  const at::Tensor fc = filter.to(x.device(), acc).contiguous();

  img2tab::UpFirDn2dParams p;
  p.planes = x.size(0) * x.size(1);
  p.in_h = x.size(2);
  p.in_w = x.size(3);
  p.up_x = up_x;
  p.up_y = up_y;
  p.down_x = down_x;
  p.down_y = down_y;
  p.pad_x0 = pad_x0;
  p.pad_y0 = pad_y0;
  p.k_h = fc.size(0);
  p.k_w = fc.size(1);
  const int64_t span_h = p.in_h * up_y + pad_y0 + pad_y1 - p.k_h;
  const int64_t span_w = p.in_w * up_x + pad_x0 + pad_x1 - p.k_w;
  TORCH_CHECK(span_h >= 0 && span_w >= 0,
              "img2tab upfirdn2d: the padded image is smaller than the filter");
  p.out_h = span_h / down_y + 1;
  p.out_w = span_w / down_x + 1;

  at::Tensor y = at::empty({x.size(0), x.size(1), p.out_h, p.out_w}, x.options());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  const cudaError_t err =
      img2tab::upfirdn2d_launch(dtype, xc.data_ptr(), fc.data_ptr(), y.data_ptr(), p, stream);
  img2tab::check_launch(err, "upfirdn2d");
  return y;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("upfirdn2d", &upfirdn2d, "upfirdn2d forward (CUDA)", py::arg("x"), py::arg("filter"),
        py::arg("up_x"), py::arg("up_y"), py::arg("down_x"), py::arg("down_y"), py::arg("pad_x0"),
        py::arg("pad_x1"), py::arg("pad_y0"), py::arg("pad_y1"));
}
