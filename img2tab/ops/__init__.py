"""Custom ops of the StyleGAN2 generator: ``upfirdn2d`` and the fused leaky ReLU.

Every op has a pure-PyTorch reference (the semantic specification, fast on CPU, differentiable to
any order) and a CUDA kernel that is compiled lazily, on the first call with a CUDA tensor, with
``torch.utils.cpp_extension`` and ninja. Importing this package never compiles anything and needs
no nvcc.

Selecting the implementation (``impl`` argument of every op):

* ``"auto"`` (default): use the environment variable ``IMG2TAB_OPS`` (``auto`` | ``ref`` |
  ``cuda``, default ``auto``). Resolved ``auto`` runs the CUDA kernel for CUDA tensors when the
  build succeeds; if it fails, one ``RuntimeWarning`` is emitted and the reference runs from then
  on (the outcome is cached per process).
* ``"ref"``: always the reference.
* ``"cuda"``: the CUDA kernel for CUDA tensors; raises ``RuntimeError`` if it cannot be built.
  CPU tensors run the reference (the kernels are CUDA-only).

Any other value (argument or environment) raises ``ValueError``.
"""

from __future__ import annotations

from ._fused_act import FusedLeakyReLU, fused_leaky_relu, fused_leaky_relu_ref
from ._impl import ENV_VAR, IMPLS
from ._upfirdn2d import upfirdn2d, upfirdn2d_ref

__all__ = [
    "ENV_VAR",
    "IMPLS",
    "FusedLeakyReLU",
    "fused_leaky_relu",
    "fused_leaky_relu_ref",
    "upfirdn2d",
    "upfirdn2d_ref",
]
