"""XNOR-Net++: a learned fused scale Γ (Bulat & Tzimiropoulos 2019, §4; docs/xnorpp.md).

``I ⊛ W ≈ (sign(I) ⊛ sign(W)) ⊙ Γ``, Γ learned by backpropagation (no analytic ``α``,
no ``K``). For an output ``(h_out, w_out, o)`` the four cases are

* case 1: ``Γ = α``, ``α ∈ R^o``;
* case 2: ``Γ = α``, ``α ∈ R^{h_out × w_out × o}``;
* case 3: ``Γ = α ⊗ β``, ``α ∈ R^o``, ``β ∈ R^{h_out × w_out}``;
* case 4: ``Γ = α ⊗ β ⊗ γ``, ``α ∈ R^o``, ``β ∈ R^{h_out}``, ``γ ∈ R^{w_out}``.

The layer owns the factors as :class:`ScaleFactor` parameters ``gamma_alpha``,
``gamma_beta``, ``gamma_gamma``; ``α`` starts at XNOR's ``mean|W_o|`` (training starts
from XNOR-Net's weight scaling), ``β`` and ``γ`` at 1. At test time they fold into one
tensor and one elementwise product per output; cases 2-4 fix the conv's input size.
Dense layers use ``h_out = w_out = 1``. Speed-up (§4.3) ``64·w·h·o / (w·h·o + 1)``
with ``w × h`` the kernel (≈ 63.98 at o = 256, 3×3).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax.methods import registry
from bnnjax.methods.base import Method
from bnnjax.methods.base import SpecError
from bnnjax.methods.base import with_k
from bnnjax.quant import scales

CASES = (1, 2, 3, 4)


class ScaleFactor(nnx.Param):
  """Learned scaling factors (XNOR-Net++ Γ)."""


def init_gamma(case: int, kernel: jax.Array, out_hw: tuple[int, int]
               ) -> dict[str, jax.Array]:
  """Γ's factors ``{"alpha", "beta", "gamma"}`` of ``case`` with exactly the shapes
  of docs/xnorpp.md#the-four-shapes: ``alpha`` at XNOR's analytic ``mean|W_o|``,
  ``beta``/``gamma`` at 1 (docs/xnorpp.md#initialisation)."""
  o = kernel.shape[-1]
  h, w = out_hw
  alpha = scales.xnor_weight_scale(kernel)
  if case == 1:
    return {"alpha": alpha}
  if case == 2:
    return {"alpha": jnp.broadcast_to(alpha, (h, w, o))}
  if case == 3:
    return {"alpha": alpha, "beta": jnp.ones((h, w), kernel.dtype)}
  return {"alpha": alpha, "beta": jnp.ones((h,), kernel.dtype),
          "gamma": jnp.ones((w,), kernel.dtype)}


def fold_gamma(case: int, f: dict[str, jax.Array]) -> jax.Array:
  """Γ folded into one tensor broadcastable to the output ``(..., h_out, w_out, o)``:
  ``α`` (cases 1-2), ``β ⊗ α`` (case 3), ``β ⊗ γ ⊗ α`` (case 4)."""
  if case in (1, 2):
    return f["alpha"]
  if case == 3:
    return f["beta"][:, :, None] * f["alpha"][None, None, :]
  return f["beta"][:, None, None] * f["gamma"][None, :, None] * f["alpha"][None, None, :]


class XNORNetPP(Method):
  """Learned Γ of ``gamma_case`` 1-4 on binary input and kernel, no ``K``."""

  names = ("xnorpp",)
  aliases = ("xnor++",)
  weight_scale = "xnorpp"
  number_field = "gamma_case"
  number_help = "the XNOR-Net++ Γ case, 1-4"

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    return dict(kernel_quantizer=kernel_quantizer, weight_scale=self.weight_scale,
                gamma_case=number, input_quantizer=input_quantizer, pad_value=pad_value)

  def check_spec(self, spec) -> None:
    super().check_spec(spec)
    if spec.gamma_case not in CASES:
      raise SpecError("gamma_case", spec.gamma_case,
                      f"; allowed values are {list(CASES)}.", owner="QuantSpec")

  def label(self, spec) -> str:
    """``xnorpp_<case>``."""
    return with_k(f"xnorpp_{spec.gamma_case}", spec, preset_k=False)

  def fixed_input_size(self, spec) -> str | None:
    if spec.gamma_case == 1:
      return None
    return f"XNOR-Net++ gamma_case={spec.gamma_case} learns a factor per output position"

  def init_params(self, spec, kernel, out_hw):
    """``gamma_alpha`` (and ``gamma_beta``, ``gamma_gamma``) as :class:`ScaleFactor`."""
    return {f"gamma_{k}": ScaleFactor(v)
            for k, v in init_gamma(spec.gamma_case, kernel, out_hw).items()}

  def folded_scale(self, spec, layer):
    """Γ folded from the layer's factors (:func:`fold_gamma`): ``(c_out,)`` for case
    1, ``(h_out, w_out, c_out)`` otherwise."""
    factors = {k: getattr(layer, f"gamma_{k}")[...]
               for k in ("alpha", "beta", "gamma") if hasattr(layer, f"gamma_{k}")}
    return fold_gamma(spec.gamma_case, factors)

  def filter_scales(self, spec, layer):
    """The learned ``α`` of Γ (case 2: one per output position and filter)."""
    return layer.gamma_alpha[...]

  def scale_mults(self, spec, shape) -> int:
    """The folded Γ: one multiplication per output (§4.3), ``h·w·o``."""
    return shape.pixels * shape.o

  def speedup(self, spec, shape, *, L, gamma):
    """``S_OURS = 64·w·h·o / (w·h·o + 1)`` (§4.3, as the paper prints it)."""
    from bnnjax.analysis import speedup  # analysis sits above methods
    return speedup.xnorpp_speedup_ours(shape.kw, shape.kh, shape.o), "XNOR-Net++ S_OURS"


METHOD = registry.register(XNORNetPP())
