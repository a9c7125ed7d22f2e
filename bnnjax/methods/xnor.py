"""XNOR-Net (Rastegari et al. 2016, §3.2; docs/xnor.md): binary input and kernel.

``I ⊛ W ≈ (sign(I) ⊛ sign(W)) ⊙ K ⊙ α`` with BWN's per-filter ``α_o = mean|W_o|``
(:mod:`bnnjax.methods.bwn`) and the activation map ``K = A ⊛ k``: ``A = mean_c |I|``
per position, ``k`` a ``kh × kw`` box filter of value ``1/(kh·kw)`` with the conv's
stride and padding (:func:`bnnjax.quant.activation_scale`; for a dense layer
``K = mean_d |x|``). The layer applies ``K`` (the spec's ``activation_scale``) and
then ``α`` to the ±1 product. Speed-up ``L·c·N_W / (c·N_W + L)`` (62.27 at c = 256,
3×3, L = 64).
"""

from __future__ import annotations

from bnnjax.methods import registry
from bnnjax.methods.base import with_k
from bnnjax.methods.bwn import BWN


class XNORNet(BWN):
  """BWN's weight scale with a binary input and XNOR-Net's ``K``."""

  names = ("xnor",)

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    return dict(kernel_quantizer=kernel_quantizer, weight_scale=self.weight_scale,
                activation_scale=True, input_quantizer=input_quantizer,
                pad_value=pad_value)

  def claims(self, spec) -> bool:
    return spec.weight_scale == self.weight_scale and spec.binary_input

  def label(self, spec) -> str:
    return with_k("xnor", spec, preset_k=True)


METHOD = registry.register(XNORNet())
