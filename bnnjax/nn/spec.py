"""The quantization spec of a layer, and the papers' named methods as presets of it.

A :class:`QuantSpec` is a small frozen, keyword-only, hashable description of how one
``QuantConv``/``QuantDense`` quantizes (qwix/AQT style). Every method the papers
compare is a preset, defined in its module of :mod:`bnnjax.methods` and resolved from
its name by :func:`bnnjax.methods.resolve` (:func:`method_spec` here):

========== ============ ============ ========================= ==========
method     input        kernel       weight scale              K (act.)
========== ============ ============ ========================= ==========
fp         float        float        none                      no
bwn        float        sign         XNOR per filter           no
xnor       sign         sign         XNOR per filter           yes
bw_cf_n    float        sign         cross-filter, groups of n no
xnor_cf_n  sign         sign         cross-filter, groups of n yes
xnorpp_c   sign         sign         learned Γ, case c ∈ 1..4  no
bonn       sign         sign         1/mean(w), BONN's w, μ, σ no
========== ============ ============ ========================= ==========
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from bnnjax.methods import registry
from bnnjax.methods.base import SpecError
from bnnjax.quant import registry as quantizers

PAD_VALUES = (0.0, 1.0)
# How a layer with binary input *and* kernel computes its ±1 product (config field
# ``binary_compute``); see :mod:`bnnjax.nn.layers`.
COMPUTES = ("float", "packed", "auto")
# The dtype a layer with ±1 input and kernel computes its float ±1 product in (config
# field ``binary_compute_dtype``); see :func:`bnnjax.nn.layers.binary_compute_dtype`.
COMPUTE_DTYPES = ("auto", "float32", "bfloat16")


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantSpec:
  """How a layer quantizes its input and kernel.

  Attributes:
    input_quantizer: name of a registered quantizer (``bnnjax.quant.QUANTIZERS``,
      docs/quantizers.md) applied to the layer input, or ``None`` for full-precision
      input.
    kernel_quantizer: name of the quantizer applied to the latent kernel, or ``None``
      for a full-precision kernel.
    input_quantizer_kwargs: hyper-parameters of the input quantizer, as
      ``(("clip", 1.0),)`` pairs (a tuple keeps the spec hashable; a dict is accepted
      and stored as its sorted pairs), checked against the quantizer
      (:func:`bnnjax.quant.check_kwargs`).
    kernel_quantizer_kwargs: same for the kernel quantizer.
    weight_scale: the scale of a registered method (:func:`bnnjax.methods.for_spec`
      finds the method, which defines it): ``none``; ``xnor``
      (``alpha_o = mean|W_o|``, docs/xnor.md#the-weight-scale,
      :mod:`bnnjax.methods.bwn`); ``cross_filter`` (one ``alpha`` per ``group_size``
      adjacent filters, docs/cross_filter.md#the-shared-factor,
      :mod:`bnnjax.methods.cross_filter`); ``xnorpp`` (XNOR-Net++ learned fused Γ of
      case ``gamma_case``, docs/xnorpp.md#the-four-shapes, :mod:`bnnjax.methods.xnorpp`);
      ``bonn`` (BONN's modulation ``w``, ``μ`` and ``log σ``, output scaled by
      ``1/mean(w)``, docs/bonn.md#forward-pass, :mod:`bnnjax.methods.bonn`).
    group_size: ``n`` of cross-filter compression.
    gamma_case: XNOR-Net++ Γ shape, 1-4.
    activation_scale: multiply by XNOR-Net's ``K`` map (needs a binary input).
    pad_value: value of the padded border of a *binary* input, 0 (zero padding, a
      third value) or 1 (+1 padding, exact in one bit).
    compute: how the ±1 product of a layer with binary input and kernel is computed,
      with the same result either way: ``"float"`` (a float conv/dot of the ±1
      operands), ``"packed"`` (the bit-packed XNOR-popcount kernels of
      :mod:`bnnjax.kernels` forward, the float straight-through gradient backward) or
      ``"auto"`` (the faster exact one for the platform and the layer's shape, see
      :func:`bnnjax.nn.layers.packed_is_faster`). Other layers ignore it. The packed
      path needs both quantizers to be ±1 signs (:func:`bnnjax.quant.is_sign`);
      ``"packed"`` with another quantizer (``ste_heaviside``, ``ste_tern``,
      ``dorefa``, ``magnitude_aware_sign``) is an error, ``"auto"`` uses the float
      path for it.
    compute_dtype: the dtype of the ±1 operands of that float product when both
      quantizers are ±1 signs: ``"float32"``, ``"bfloat16"`` (±1 is exact in it and
      the products accumulate in float32, so the forward is the same; the
      straight-through gradients of the product round to bfloat16) or ``"auto"``
      (bfloat16 on TPU, float32 elsewhere: docs/gpu.md). Other layers ignore it.
  """

  input_quantizer: str | None = None
  kernel_quantizer: str | None = None
  input_quantizer_kwargs: tuple[tuple[str, float], ...] = ()
  kernel_quantizer_kwargs: tuple[tuple[str, float], ...] = ()
  weight_scale: str = "none"
  group_size: int = 1
  gamma_case: int = 1
  activation_scale: bool = False
  pad_value: float = 0.0
  compute: str = "auto"
  compute_dtype: str = "auto"

  def __post_init__(self):
    """Checks every field; raises :class:`~bnnjax.methods.SpecError` (a
    ``ValueError``) naming the field and the allowed values."""
    for field in ("input_quantizer", "kernel_quantizer"):
      name = getattr(self, field)
      if name is not None and name not in quantizers.QUANTIZERS:
        raise SpecError(field, name, " is not a known quantizer; allowed values are "
                        f"None or one of {list(quantizers.names())}.", owner="QuantSpec")
      self._check_kwargs(field, name)
    for field in ("group_size", "gamma_case"):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise SpecError(field, value, "; allowed values are integers >= 1.",
                        owner="QuantSpec")
    registry.check_spec(self)  # the weight scale's method checks the rest
    if self.activation_scale and self.input_quantizer is None:
      raise SpecError("activation_scale", True,
                      " needs a binary input: set input_quantizer.", owner="QuantSpec")
    if self.compute not in COMPUTES:
      raise SpecError("compute", self.compute, f"; allowed values are {list(COMPUTES)}.",
                      owner="QuantSpec")
    if self.compute_dtype not in COMPUTE_DTYPES:
      raise SpecError("compute_dtype", self.compute_dtype,
                      f"; allowed values are {list(COMPUTE_DTYPES)}.", owner="QuantSpec")
    if float(self.pad_value) not in PAD_VALUES:
      raise SpecError("pad_value", self.pad_value, "; allowed values are 0 or 1.",
                      owner="QuantSpec")
    if self.compute == "packed" and self.binary_input and self.binary_kernel:
      for field in ("input_quantizer", "kernel_quantizer"):
        name = getattr(self, field)
        if not quantizers.is_sign(name):
          raise SpecError(field, name, quantizers.not_sign_reason(
              name, "compute='packed' (the XNOR-popcount path; config.binary_compute)"),
              owner="QuantSpec")

  def _check_kwargs(self, field: str, name: str | None) -> None:
    """Normalises ``<field>_kwargs`` to sorted pairs and checks them against the
    quantizer ``name``."""
    kw_field = field + "_kwargs"
    value = getattr(self, kw_field)
    try:
      items = kwargs_items(value)
    except (TypeError, ValueError) as e:
      raise SpecError(kw_field, value, f": {e}", owner="QuantSpec") from None
    object.__setattr__(self, kw_field, items)  # frozen: normalised once, here
    if not items:
      return
    if name is None:
      raise SpecError(kw_field, value, f" is set but {field} is None.", owner="QuantSpec")
    try:
      quantizers.check_kwargs(name, items)
    except ValueError as e:
      raise SpecError(kw_field, value, f": {e}", owner="QuantSpec") from None

  @property
  def binary_input(self) -> bool:
    return self.input_quantizer is not None

  @property
  def binary_kernel(self) -> bool:
    return self.kernel_quantizer is not None

  @property
  def full_precision(self) -> bool:
    return not (self.binary_input or self.binary_kernel)

  @property
  def sign_operands(self) -> bool:
    """Whether input and kernel are both quantized by ±1 signs
    (:func:`bnnjax.quant.is_sign`): what the packed path and export need."""
    return (quantizers.is_sign(self.input_quantizer)
            and quantizers.is_sign(self.kernel_quantizer))


def kwargs_items(kwargs: Mapping[str, Any] | tuple | None) -> tuple[tuple[str, Any], ...]:
  """Quantizer hyper-parameters as sorted ``(name, value)`` pairs: ``None`` or ``{}``
  → ``()``, a mapping (a dict, a ``ConfigDict``) or pairs → sorted pairs.

  Raises:
    TypeError: anything else, or a pair whose name is not a string.
  """
  if kwargs is None:
    return ()
  if hasattr(kwargs, "items"):
    items = list(kwargs.items())
  elif isinstance(kwargs, (tuple, list)) and all(
      isinstance(kv, (tuple, list)) and len(kv) == 2 for kv in kwargs):
    items = [tuple(kv) for kv in kwargs]
  else:
    raise TypeError("allowed values are a dict of hyper-parameters or (name, value) "
                    "pairs")
  if not all(isinstance(k, str) for k, _ in items):
    raise TypeError("hyper-parameter names must be strings")
  return tuple(sorted(items))


FP = QuantSpec()

# The built-in methods' names (``bnnjax.methods.names()`` also lists later ones).
METHODS = registry.names()


def parse_method(method: str) -> tuple[str, int | None]:
  """Splits a method string into ``(name, number)``: :func:`bnnjax.methods.parse`.

  Case-insensitive, ``-`` read as ``_`` and ``++`` as ``pp``, so the papers' spellings
  work: ``"XNOR-CF-4"`` and ``"bw_cf2"`` give a group size, ``"xnorpp_3"`` and
  ``"XNOR++3"`` a Γ case.
  """
  return registry.parse(method)


def method_spec(
    method: str,
    *,
    group_size: int | None = None,
    gamma_case: int | None = None,
    input_quantizer: str = "ste_sign",
    kernel_quantizer: str = "ste_sign",
    input_quantizer_kwargs: Mapping[str, Any] | None = None,
    kernel_quantizer_kwargs: Mapping[str, Any] | None = None,
    pad_value: float = 0.0,
    compute: str = "auto",
    compute_dtype: str = "auto",
) -> QuantSpec:
  """The :class:`QuantSpec` of a named method of the papers:
  :func:`bnnjax.methods.resolve` (its errors name the config fields).

  Args:
    method: a registered method name (:data:`METHODS`), optionally with its number
      appended (``"bw_cf_4"``, ``"XNOR-CF-8"``, ``"xnorpp_2"``).
    group_size: cross-filter ``n`` (for ``bw_cf``/``xnor_cf``; required unless
      appended to the name).
    gamma_case: XNOR-Net++ case (for ``xnorpp``; required unless appended).
    input_quantizer: quantizer for binary inputs.
    kernel_quantizer: quantizer for binary kernels.
    input_quantizer_kwargs: its hyper-parameters (e.g. ``{"clip": 0.5}``).
    kernel_quantizer_kwargs: the kernel quantizer's (e.g. ``{"k_bit": 2, "mode":
      "weights"}`` for ``dorefa``).
    pad_value: border value of binary inputs (0 or 1).
    compute: how binary-input binary-kernel layers compute (``QuantSpec.compute``).
    compute_dtype: the dtype they compute in (``QuantSpec.compute_dtype``).
  """
  return registry.resolve(method, group_size=group_size, gamma_case=gamma_case,
                          input_quantizer=input_quantizer,
                          kernel_quantizer=kernel_quantizer,
                          input_quantizer_kwargs=input_quantizer_kwargs,
                          kernel_quantizer_kwargs=kernel_quantizer_kwargs,
                          pad_value=pad_value, binary_compute=compute,
                          binary_compute_dtype=compute_dtype)
