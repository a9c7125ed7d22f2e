"""BWN, binary-weight networks (XNOR-Net §3.1; docs/xnor.md).

Full-precision input, binary kernel scaled per filter:
``W̃ = α ⊙ sign(W)`` with ``α_o = mean(|W[..., o]|)``, the least-squares optimum of
``||W_o − α_o·sign(W_o)||²``. Since ``I ⊛ W̃ = (I ⊛ sign(W)) ⊙ α``, the layer applies
``α`` to the output of the ±1 convolution, as a bit-packed kernel does at inference.
Autodiff through ``α`` gives XNOR-Net's exact gradient
``(1/n)·sign(W_i)·Σ_j g_j sign(W_j) + α·g_i·1{|W_i| <= 1}``.

The scale is analytic: the layer owns no parameter for it; inference stores ``o``
floats. :mod:`bnnjax.methods.xnor` is the same weight scale with a binary input.
"""

from __future__ import annotations

from bnnjax.methods import registry
from bnnjax.methods.base import Method
from bnnjax.methods.base import with_k
from bnnjax.quant import scales


class BWN(Method):
  """XNOR-Net's per-filter weight scale ``α_o = mean|W_o|`` on a float input."""

  names = ("bwn",)
  weight_scale = "xnor"

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    return dict(kernel_quantizer=kernel_quantizer, weight_scale=self.weight_scale)

  def claims(self, spec) -> bool:
    return spec.weight_scale == self.weight_scale and not spec.binary_input

  def label(self, spec) -> str:
    return with_k("bwn", spec, preset_k=False)

  def folded_scale(self, spec, layer):
    """``α_o = mean(|W[..., o]|)``, shape ``(c_out,)`` (docs/xnor.md#the-weight-scale)."""
    return scales.xnor_weight_scale(layer.kernel[...])

  def stored_scales(self, spec, shape) -> int:
    """``α``: one float per filter."""
    return shape.o

  def scale_mults(self, spec, shape) -> int:
    """One multiplication by ``α`` per output value, ``h·w·o``."""
    return shape.pixels * shape.o


METHOD = registry.register(BWN())
