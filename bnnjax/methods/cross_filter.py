"""Cross-filter compression, BW-CF-n and XNOR-CF-n (docs/cross_filter.md).

Output filters are split into groups of ``n`` adjacent filters
``G_g = {g·n, …, g·n + n − 1}`` that share one factor
``α_g = mean(|W[..., G_g]|)`` over every element of the group (paper §4.1: "absolute
mean of the whole tensor slice"), with ``B = sign(W)``; for fixed ``B`` this ``α_g``
is the least-squares optimum of ``Σ_{i∈G_g} ||W_i − α·B_i||²``.

* BW-CF-n (``bw_cf_n``): ``W̃ = α_g ⊙ sign(W)``, full-precision input.
* XNOR-CF-n (``xnor_cf_n``): ``(sign(I) ⊛ sign(W)) ⊙ K ⊙ α_g`` with XNOR-Net's ``K``
  (paper §4.2).

``n = 1`` is exactly BWN / XNOR-Net (bit for bit: ``α_g`` is computed as the mean of
the filters' ``mean|W_i|``, which is also the paper's §4.4 Eq. 16 from a filter-wise
model). ``n`` must divide the number of filters; a layer checks it once, when built.
Gradients: clipped STE for the sign, autodiff through ``α_g`` (paper §4.3).

Cost: ``o/n`` stored factors and one full-precision multiplication per ``n`` outputs
(the ``γL/n`` term of the speed-up ``S_CF(n) = γ·L·c·N_W / (c·N_W + γ·L/n)``, with
``γ = 1.91`` the MAC / binary-op cost ratio after TBN; its limit ``γ·L = 122.2`` is
the paper's "up to 122×").
"""

from __future__ import annotations

from bnnjax.methods import registry
from bnnjax.methods.base import Method
from bnnjax.methods.base import SpecError
from bnnjax.methods.base import with_k
from bnnjax.quant import scales


class CrossFilter(Method):
  """One shared ``α_g`` per group of ``group_size`` adjacent filters."""

  names = ("bw_cf", "xnor_cf")
  weight_scale = "cross_filter"
  number_field = "group_size"
  number_help = "the cross-filter group size n"

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    """``bw_cf``: binary kernel; ``xnor_cf``: also binary input and ``K``."""
    fields = dict(kernel_quantizer=kernel_quantizer, weight_scale=self.weight_scale,
                  group_size=number)
    if name == "xnor_cf":
      fields.update(activation_scale=True, input_quantizer=input_quantizer,
                    pad_value=pad_value)
    return fields

  def label(self, spec) -> str:
    """``bw_cf_<n>`` or ``xnor_cf_<n>``."""
    kind = "xnor" if spec.binary_input else "bw"
    return with_k(f"{kind}_cf_{spec.group_size}", spec, preset_k=spec.binary_input)

  def check_layer(self, spec, *, kernel_shape, layer):
    """``group_size`` must divide the layer's ``c_out`` (:func:`scales.group_size_error`)."""
    c_out = kernel_shape[-1]
    problem = scales.group_size_error(c_out, spec.group_size)
    if problem is not None:
      raise SpecError("group_size", spec.group_size,
                      f" {problem} of {layer}; choose a group_size that divides {c_out}.")

  def folded_scale(self, spec, layer):
    """``α_g`` repeated over its group's filters, shape ``(c_out,)``."""
    return scales.group_shared(scales.xnor_weight_scale(layer.kernel[...]),
                               spec.group_size)

  def stored_scales(self, spec, shape) -> int:
    """``α_g``: one float per group, ``o/n``."""
    return shape.o // spec.group_size

  def scale_mults(self, spec, shape) -> int:
    """One multiplication per ``n`` outputs, ``h·w·o/n`` (its cost model,
    docs/cross_filter.md#speed-up)."""
    return shape.pixels * shape.o // spec.group_size

  def speedup(self, spec, shape, *, L, gamma):
    """``S_CF(n) = γ·L·c·N_W / (c·N_W + γ·L/n)`` (docs/cross_filter.md#speed-up [rec])."""
    from bnnjax.analysis import speedup  # analysis sits above methods
    n = spec.group_size
    return (speedup.cf_speedup(n, shape.c, shape.kh * shape.kw, L=L, gamma=gamma),
            f"S_CF(n={n})")


METHOD = registry.register(CrossFilter())
