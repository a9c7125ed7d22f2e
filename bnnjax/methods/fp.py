"""Full precision, and every spec without a weight scale (``weight_scale="none"``).

``fp`` is the baseline the papers compare against: float input, float kernel,
``y = I ⊛ W (+ b)``. The same method owns the specs that binarise without scaling:
``sign(I) ⊛ sign(W)`` (labelled ``"sign"``, BNN-style), ``I ⊛ sign(W)``
(``"bw_sign"``) and ``sign(I) ⊛ W`` (``"bin_input"``). Its layers own no parameters
besides the kernel and bias and multiply by no scale.
"""

from __future__ import annotations

from bnnjax.methods import registry
from bnnjax.methods.base import Method
from bnnjax.methods.base import with_k


class FullPrecision(Method):
  """No weight scale: ``S = 1`` (:meth:`folded_scale` is ``None``)."""

  names = ("fp",)
  weight_scale = "none"
  scales_binary_kernel = False

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    """Float input and kernel: every ``QuantSpec`` field at its default."""
    return {}

  def label(self, spec) -> str:
    """``"fp"``, or ``"bin_input"`` (binary input, float kernel), ``"sign"`` (binary
    input and kernel) / ``"bw_sign"`` (binary kernel only), ``+K`` when XNOR-Net's
    ``K`` is applied."""
    if spec.full_precision:
      return "fp"
    if not spec.binary_kernel:
      return "bin_input"
    return with_k("sign" if spec.binary_input else "bw_sign", spec, preset_k=False)


METHOD = registry.register(FullPrecision())
