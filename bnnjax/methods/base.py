"""What a quantization method is to the rest of bnnjax: the :class:`Method` interface.

A method (XNOR-Net, cross-filter, XNOR-Net++, BONN, ...) is a stateless object that
answers every question the package asks about it, so that no other module needs to
know which method a layer uses:

* **config → spec**: its names, the number a name may carry (``bw_cf_4``,
  ``xnorpp_3``) and the :class:`~bnnjax.nn.QuantSpec` fields of its preset
  (:meth:`Method.preset`), which specs are its own (:meth:`Method.claims`) and their
  checks (:meth:`Method.check_spec`), and its label (:meth:`Method.label`);
* **the layer**: which parameters a ``QuantConv``/``QuantDense`` owns and how they are
  initialised (:meth:`Method.init_params`), whether a layer fits the spec
  (:meth:`Method.check_layer`), and the weight scale ``S`` the layer multiplies its
  ±1 product by (:meth:`Method.folded_scale`);
* **the cost** for :func:`bnnjax.analysis.summary`: scales stored at inference, their
  multiplications, and the theoretical speed-up by the method's paper;
* **training**: extra loss terms (:attr:`Method.loss_terms`) and the variables only
  training needs (:attr:`Method.training_only_variables`).

This module imports nothing from :mod:`bnnjax.nn`, which sits above it.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, Mapping

import jax
from flax import nnx

from bnnjax.quant import scales


class SpecError(ValueError):
  """A value of a quantization spec's field that does not fit: a bad field of a
  :class:`~bnnjax.nn.QuantSpec`, or a method's parameter that does not fit a layer
  (a cross-filter group size that does not divide its filters).

  It names the spec field, so a caller that built the spec from a config can name the
  config field that set it (:func:`bnnjax.methods.config_error`) without reading the
  message.

  Attributes:
    field: the ``QuantSpec`` field, e.g. ``"group_size"``.
    value: its value.
    reason: the rest of the message, after ``field=value``.
  """

  def __init__(self, field: str, value: Any, reason: str, *, owner: str = ""):
    self.field, self.value, self.reason = field, value, reason
    super().__init__(f"{owner + '.' if owner else ''}{field}={value!r}{reason}")


@dataclasses.dataclass(frozen=True)
class LayerShape:
  """The geometry of one conv or dense layer, per example, for cost counting.

  A conv has kernel ``(kh, kw, c, o)``, input ``h_in × w_in`` and output ``h × w × o``;
  a dense layer is the case ``kh = kw = h_in = w_in = h = w = 1``, ``c = d_in``,
  ``o = d_out``.
  """
  kh: int
  kw: int
  c: int
  o: int
  h_in: int = 1
  w_in: int = 1
  h: int = 1
  w: int = 1

  @property
  def pixels(self) -> int:
    return self.h * self.w


def with_k(label: str, spec, preset_k: bool) -> str:
  """``label`` with ``+K`` when ``spec`` applies XNOR-Net's ``K`` although the named
  preset does not, ``-K`` when the preset does and ``spec`` does not."""
  if spec.activation_scale and not preset_k:
    return label + "+K"
  if preset_k and not spec.activation_scale:
    return label + "-K"
  return label


# A loss-term builder: (model, ctx, **hyper-parameters) -> fn(model, batch, outputs).
LossBuilder = Callable[..., Callable[[nnx.Module, Mapping[str, jax.Array],
                                      Mapping[str, jax.Array]], jax.Array]]


class Method(abc.ABC):
  """A quantization method: a subclass defines :meth:`preset` and overrides what
  differs from these defaults (no parameters, no weight scale, nothing stored,
  XNOR-Net's speed-up for a binary-input, binary-kernel layer).

  Class attributes:
    names: the names it is registered under (lower case, no trailing digit), e.g.
      ``("bw_cf", "xnor_cf")``.
    aliases: other spellings, e.g. ``("xnor++",)`` for ``xnorpp``; each maps to
      ``names[0]``.
    weight_scale: the ``QuantSpec.weight_scale`` value of its specs.
    number_field: the ``QuantSpec``/config field a number appended to a name sets
      (``"group_size"``, ``"gamma_case"``), or ``None`` when names take no number.
    number_help: what that number is, for error messages.
    scales_binary_kernel: its weight scale multiplies a binary kernel, so a spec
      needs a ``kernel_quantizer``.
    loss_terms: ``{term name: builder}`` of the extra loss terms it brings (BONN's);
      a builder ``(model, ctx, **kwargs)`` returns ``fn(model, batch, outputs)``.
    training_only_variables: ``nnx.Variable`` types its layers or terms own that only
      training needs (not counted in the model size).
  """

  names: tuple[str, ...] = ()
  aliases: tuple[str, ...] = ()
  weight_scale: str = "none"
  number_field: str | None = None
  number_help: str = ""
  scales_binary_kernel: bool = True
  loss_terms: Mapping[str, LossBuilder] = {}
  training_only_variables: tuple[type, ...] = ()

  def __repr__(self) -> str:
    return f"{type(self).__name__}({', '.join(map(repr, self.names))})"

  # ------------------------------------------------------------ config -> spec
  @abc.abstractmethod
  def preset(self, name: str, number: int | None, *, input_quantizer: str,
             kernel_quantizer: str, pad_value: float) -> dict[str, Any]:
    """The ``QuantSpec`` fields of the method named ``name`` (one of :attr:`names`),
    with ``number`` the value of :attr:`number_field` (``None`` if it has none)."""

  def claims(self, spec) -> bool:
    """Whether ``spec`` is one of this method's specs."""
    return spec.weight_scale == self.weight_scale

  def check_spec(self, spec) -> None:
    """Raises :class:`SpecError` if ``spec``'s fields do not fit the method."""
    if self.scales_binary_kernel and spec.kernel_quantizer is None:
      raise SpecError("weight_scale", spec.weight_scale,
                      " scales a binary kernel: set kernel_quantizer (e.g. 'ste_sign').",
                      owner="QuantSpec")

  def label(self, spec) -> str:
    """A short name for ``spec``: its method name where a preset fits."""
    return with_k(self.names[0], spec, preset_k=False)

  # ------------------------------------------------------------ the layer
  def check_layer(self, spec, *, kernel_shape: tuple[int, ...], layer: str) -> None:
    """Raises :class:`SpecError` if ``spec`` does not fit a layer with this kernel
    shape (``layer`` describes it for the message). Runs once, when the layer is
    built."""

  def fixed_input_size(self, spec) -> str | None:
    """Why a conv with ``spec`` needs a fixed input size (its parameters have the
    output's spatial shape), or ``None`` when it does not."""
    return None

  def init_params(self, spec, kernel: jax.Array, out_hw: tuple[int, int]
                  ) -> dict[str, nnx.Variable]:
    """The variables the layer owns besides ``kernel`` and ``bias``, by attribute
    name, initialised from the latent ``kernel``; ``out_hw`` is the output's spatial
    size (``(1, 1)`` for dense layers and when :meth:`fixed_input_size` is ``None``)."""
    return {}

  def folded_scale(self, spec, layer) -> jax.Array | None:
    """The weight scale ``S`` as one tensor the layer's ±1 product is multiplied by
    (broadcastable to ``(..., h_out, w_out, c_out)``), or ``None`` for no scale."""
    return None

  def filter_scales(self, spec, layer) -> jax.Array:
    """The per-filter scaling factors a histogram of the layer shows (cross-filter
    §6.1): ``α_o = mean|W[..., o]|`` of the latent kernel
    (docs/xnor.md#the-weight-scale)."""
    return scales.xnor_weight_scale(layer.kernel[...])

  # ------------------------------------------------------------ cost
  def stored_scales(self, spec, shape: LayerShape) -> int:
    """Values of an analytic scale that inference stores although no variable holds
    them (learned factors are variables and counted as such)."""
    return 0

  def scale_mults(self, spec, shape: LayerShape) -> int:
    """Full-precision multiplications by the weight scale per example."""
    return 0

  def speedup(self, spec, shape: LayerShape, *, L: int, gamma: float
              ) -> tuple[float, str]:
    """Theoretical speed-up of a binary-input, binary-kernel layer over full precision
    and the formula's name: XNOR-Net's ``L·c·N_W / (c·N_W + L)`` (docs/xnor.md#speed-up;
    cross-filter's ``S_CF(n)`` with ``n = 1, γ = 1``)."""
    from bnnjax.analysis import speedup  # analysis sits above methods
    return speedup.xnor_speedup(shape.c, shape.kh * shape.kw, L=L), "XNOR-Net"
