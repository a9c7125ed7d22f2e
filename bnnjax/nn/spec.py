"""The quantization spec of a layer and the papers' named methods as presets of it.

A :class:`QuantSpec` is a small frozen, keyword-only, hashable description of how one
``QuantConv``/``QuantDense`` quantizes (qwix/AQT style). Every method the papers
compare is a preset (:func:`method_spec`):

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
import re

from bnnjax.quant.sign import QUANTIZERS

WEIGHT_SCALES = ("none", "xnor", "cross_filter", "xnorpp", "bonn")
PAD_VALUES = (0.0, 1.0)
GAMMA_CASES = (1, 2, 3, 4)
# How a layer with binary input *and* kernel computes its ±1 product (config field
# ``binary_compute``); see :mod:`bnnjax.nn.layers`.
COMPUTES = ("float", "packed", "auto")


@dataclasses.dataclass(frozen=True, kw_only=True)
class QuantSpec:
  """How a layer quantizes its input and kernel.

  Attributes:
    input_quantizer: name of a sign quantizer (``bnnjax.quant.QUANTIZERS``) applied
      to the layer input, or ``None`` for full-precision input.
    kernel_quantizer: name of the sign quantizer applied to the latent kernel, or
      ``None`` for a full-precision kernel.
    input_quantizer_kwargs: hyper-parameters of the input quantizer, as
      ``(("clip", 1.0),)`` pairs (a tuple keeps the spec hashable).
    kernel_quantizer_kwargs: same for the kernel quantizer.
    weight_scale: ``"none"``; ``"xnor"`` (``alpha_o = mean|W_o|``, SPEC §2);
      ``"cross_filter"`` (one ``alpha`` per ``group_size`` adjacent filters, SPEC §3);
      ``"xnorpp"`` (XNOR-Net++ learned fused Γ of case ``gamma_case``, SPEC §4);
      ``"bonn"`` (the layer owns BONN's modulation ``w``, ``μ`` and ``log σ`` and
      scales its output by ``1/mean(w)``, SPEC §5).
    group_size: ``n`` of cross-filter compression.
    gamma_case: XNOR-Net++ Γ shape, 1-4.
    activation_scale: multiply by XNOR-Net's ``K`` map (needs a binary input).
    pad_value: value of the padded border of a *binary* input, 0 (zero padding, a
      third value) or 1 (+1 padding, exact in one bit).
    compute: how the ±1 product of a layer with binary input and kernel is computed,
      with the same result either way: ``"float"`` (a float conv/dot of the ±1
      operands), ``"packed"`` (the bit-packed XNOR-popcount kernels of
      :mod:`bnnjax.kernels` forward, the float straight-through gradient backward) or
      ``"auto"`` (the faster exact one for the platform, see
      :func:`bnnjax.nn.layers.packed_is_faster`). Other layers ignore it.
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

  def __post_init__(self):
    for field in ("input_quantizer", "kernel_quantizer"):
      name = getattr(self, field)
      if name is not None and name not in QUANTIZERS:
        raise ValueError(
            f"QuantSpec.{field}={name!r} is not a known quantizer; allowed values are "
            f"None or one of {sorted(QUANTIZERS)}.")
    if self.weight_scale not in WEIGHT_SCALES:
      raise ValueError(
          f"QuantSpec.weight_scale={self.weight_scale!r}; allowed values are "
          f"{list(WEIGHT_SCALES)}.")
    if self.weight_scale != "none" and self.kernel_quantizer is None:
      raise ValueError(
          f"QuantSpec.weight_scale={self.weight_scale!r} scales a binary kernel: set "
          "kernel_quantizer (e.g. 'ste_sign').")
    if not isinstance(self.group_size, int) or self.group_size < 1:
      raise ValueError(
          f"QuantSpec.group_size={self.group_size!r}; allowed values are integers >= 1.")
    if self.gamma_case not in GAMMA_CASES:
      raise ValueError(
          f"QuantSpec.gamma_case={self.gamma_case!r}; allowed values are {list(GAMMA_CASES)}.")
    if self.activation_scale and self.input_quantizer is None:
      raise ValueError(
          "QuantSpec.activation_scale=True needs a binary input: set input_quantizer.")
    if self.compute not in COMPUTES:
      raise ValueError(
          f"QuantSpec.compute={self.compute!r}; allowed values are {list(COMPUTES)}.")
    if float(self.pad_value) not in PAD_VALUES:
      raise ValueError(
          f"QuantSpec.pad_value={self.pad_value!r}; allowed values are 0 or 1.")

  @property
  def binary_input(self) -> bool:
    return self.input_quantizer is not None

  @property
  def binary_kernel(self) -> bool:
    return self.kernel_quantizer is not None

  @property
  def full_precision(self) -> bool:
    return not (self.binary_input or self.binary_kernel)


FP = QuantSpec()

METHODS = ("fp", "bwn", "xnor", "bw_cf", "xnor_cf", "xnorpp", "bonn")
_METHOD_RE = re.compile(r"^(fp|bwn|xnor_cf|bw_cf|xnorpp|xnor|bonn)(?:_?(\d+))?$")


def _normalise(method: str) -> str:
  return method.strip().lower().replace("xnor++", "xnorpp").replace("-", "_")


def parse_method(method: str) -> tuple[str, int | None]:
  """Splits a method string into ``(name, number)``.

  Case-insensitive, ``-`` read as ``_`` and ``++`` as ``pp``, so the papers' spellings
  work: ``"XNOR-CF-4"`` and ``"bw_cf2"`` give a group size, ``"xnorpp_3"`` and
  ``"XNOR++3"`` a Γ case.
  """
  m = _METHOD_RE.match(_normalise(method))
  if not m:
    raise ValueError(
        f"Unknown method {method!r}; allowed values are {list(METHODS)}, with the "
        "group size or Γ case appended where it applies (e.g. 'xnor_cf_4', 'xnorpp_3').")
  number = int(m.group(2)) if m.group(2) else None
  return m.group(1), number


def method_spec(
    method: str,
    *,
    group_size: int | None = None,
    gamma_case: int | None = None,
    input_quantizer: str = "ste_sign",
    kernel_quantizer: str = "ste_sign",
    pad_value: float = 0.0,
    compute: str = "auto",
) -> QuantSpec:
  """The :class:`QuantSpec` of a named method of the papers.

  Args:
    method: one of :data:`METHODS`, optionally with its number appended
      (``"bw_cf_4"``, ``"XNOR-CF-8"``, ``"xnorpp_2"``).
    group_size: cross-filter ``n`` (for ``bw_cf``/``xnor_cf``; required unless
      appended to the name).
    gamma_case: XNOR-Net++ case (for ``xnorpp``; required unless appended).
    input_quantizer: sign quantizer for binary inputs.
    kernel_quantizer: sign quantizer for binary kernels.
    pad_value: border value of binary inputs (0 or 1).
    compute: how binary-input binary-kernel layers compute (``QuantSpec.compute``).
  """
  spec = _method_spec(method, group_size=group_size, gamma_case=gamma_case,
                      input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                      pad_value=pad_value)
  return spec if spec.full_precision else dataclasses.replace(spec, compute=compute)


def _method_spec(method, *, group_size, gamma_case, input_quantizer, kernel_quantizer,
                 pad_value) -> QuantSpec:
  name, number = parse_method(method)
  if number is not None:
    if name in ("bw_cf", "xnor_cf"):
      if group_size is not None and group_size != number:
        raise ValueError(f"method={method!r} conflicts with group_size={group_size}.")
      group_size = number
    elif name == "xnorpp":
      if gamma_case is not None and gamma_case != number:
        raise ValueError(f"method={method!r} conflicts with gamma_case={gamma_case}.")
      gamma_case = number
    else:
      raise ValueError(f"method={method!r}: {name!r} takes no number.")
  if name == "fp":
    return FP
  binary_in = dict(input_quantizer=input_quantizer, pad_value=pad_value)
  if name == "bwn":
    return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="xnor")
  if name == "xnor":
    return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="xnor",
                     activation_scale=True, **binary_in)
  if name in ("bw_cf", "xnor_cf"):
    if group_size is None:
      raise ValueError(f"method={method!r} needs group_size (cross-filter n).")
    if name == "bw_cf":
      return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="cross_filter",
                       group_size=group_size)
    return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="cross_filter",
                     group_size=group_size, activation_scale=True, **binary_in)
  if name == "bonn":
    return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="bonn", **binary_in)
  # xnorpp
  if gamma_case is None:
    raise ValueError(f"method={method!r} needs gamma_case (1-4).")
  return QuantSpec(kernel_quantizer=kernel_quantizer, weight_scale="xnorpp",
                   gamma_case=gamma_case, **binary_in)
