// SPDX-License-Identifier: MIT
// Copyright (c) The img2tab developers.
//
// PyTorch binding of the fused bias + leaky ReLU + gain CUDA kernel. One entry point serves the
// forward pass (ref = None) and the gradient (ref = forward input); img2tab/ops/_fused_act.py
// builds the autograd functions, double backward included, from it.
// Lighter than <torch/extension.h> (which pulls in the whole C++ frontend): ~1/3 less build time.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/csrc/utils/pybind.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>

#include "binding.h"
#include "fused_act.h"

namespace {

at::Tensor fused_act(const at::Tensor& x, const std::optional<at::Tensor>& bias,
                     const std::optional<at::Tensor>& ref, double slope, double scale) {
  TORCH_CHECK(x.is_cuda(), "img2tab fused_act: x must be a CUDA tensor");
  TORCH_CHECK(x.dim() >= 1, "img2tab fused_act: x must have at least one dimension");
  const img2tab::DType dtype = img2tab::dtype_of(x, "fused_act");
  const c10::cuda::CUDAGuard guard(x.device());
  const at::ScalarType acc = img2tab::accumulator_type(x);

  const at::Tensor xc = x.contiguous();
  img2tab::FusedActParams p;
  p.numel = xc.numel();
  p.channels = x.dim() >= 2 ? x.size(1) : 1;
  p.inner = 1;
  for (int64_t d = 2; d < x.dim(); ++d) p.inner *= x.size(d);
  p.slope = slope;
  p.scale = scale;

  at::Tensor bc;
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(x.dim() >= 2, "img2tab fused_act: a bias needs x of rank >= 2");
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == p.channels,
                "img2tab fused_act: bias must have shape [", p.channels, "]");
    bc = bias->to(x.device(), acc).contiguous();
  }
  at::Tensor rc;
  if (ref.has_value() && ref->defined()) {
    TORCH_CHECK(ref->sizes() == x.sizes() && ref->scalar_type() == x.scalar_type(),
                "img2tab fused_act: ref must match x in shape and dtype");
    TORCH_CHECK(ref->device() == x.device(), "img2tab fused_act: ref must be on x's device");
    rc = ref->contiguous();
  }

  at::Tensor out = at::empty_like(xc);
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(x.get_device()).stream();
  const cudaError_t err = img2tab::fused_act_launch(
      dtype, xc.data_ptr(), rc.defined() ? rc.data_ptr() : nullptr,
      bc.defined() ? bc.data_ptr() : nullptr, out.data_ptr(), p, stream);
  img2tab::check_launch(err, "fused_act");
  return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fused_act", &fused_act, "bias + leaky ReLU + gain, or its gradient (CUDA)",
        py::arg("x"), py::arg("bias") = py::none(), py::arg("ref") = py::none(),
        py::arg("slope") = 0.2, py::arg("scale") = 1.4142135623730951);
}
