"""Quantized convolution and dense layers (Flax NNX) configured by a :class:`QuantSpec`.

Both layers compute, for binary input and kernel (XNOR-Net, SPEC §2-4),

    y = (q_in(I) ⊛ q_k(W)) ⊙ K ⊙ S  (+ b)

where ``q_in``/``q_k`` are the spec's sign quantizers (identity when ``None``), ``K``
is XNOR-Net's activation map (when ``activation_scale``), and ``S`` the weight scale:
1, XNOR's ``alpha_o = mean|W_o|``, cross-filter's shared ``alpha_g``, or XNOR-Net++'s
learned Γ. Scales multiply the *output* of the ±1 convolution, which is exactly how a
bit-packed XNOR-popcount kernel applies them at inference.

Latent weights of binary kernels are :class:`LatentWeight` (an ``nnx.Param``
subclass) and XNOR-Net++ factors are :class:`ScaleFactor`, so optimizers, clipping
and losses select them by type (``nnx.state(model, LatentWeight)``).
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax import kernels
from bnnjax.kernels import float_conv
from bnnjax.nn.spec import FP
from bnnjax.nn.spec import QuantSpec
from bnnjax.quant import scales
from bnnjax.quant.sign import get_quantizer


class LatentWeight(nnx.Param):
  """Full-precision latent weights of a binarized kernel."""


class ScaleFactor(nnx.Param):
  """Learned scaling factors (XNOR-Net++ Γ)."""


class Modulation(nnx.Param):
  """BONN's learnable modulation ``w`` of a binarized layer (its own learning rate)."""


class PriorParam(nnx.Param):
  """BONN's prior parameters: per-filter ``μ``/``log σ`` of a binarized layer's kernel
  mixture, and the class-wise ``log σ`` of the feature prior."""


class ClassCenter(nnx.Variable):
  """Class centres of BONN's feature prior: updated by the center-loss rule, not by
  gradient (so not an ``nnx.Param``)."""


class FeaturePrior(nnx.Module):
  """BONN's feature prior (SPEC §5): centres ``c`` (zeros) and ``log σ`` (zeros, σ = 1),
  both ``(num_classes, dim)``."""

  def __init__(self, num_classes: int, dim: int, dtype=jnp.float32):
    self.centers = ClassCenter(jnp.zeros((num_classes, dim), dtype))
    self.log_sigma = PriorParam(jnp.zeros((num_classes, dim), dtype))


def _init_bonn(kernel: jax.Array):
  """BONN's parameters (SPEC §5): ``μ_i = mean|k_i|``, ``log σ_i = log std(k_i)``, and
  ``w = 1/mean|k|`` over the layer [rec: the seed does not give ``w``'s start; with
  it ``w ∘ k`` starts at the scale of ``sign(k)`` and ``1/mean(w) = mean|k|``, XNOR's
  layer-wide factor]. ``w`` has shape ``(kh, kw)`` for a conv, ``(d_in,)`` for dense."""
  axes = tuple(range(kernel.ndim - 1))
  mu = jnp.mean(jnp.abs(kernel), axis=axes)
  log_sigma = jnp.log(jnp.maximum(jnp.std(kernel, axis=axes), 1e-8))
  w_shape = kernel.shape[:2] if kernel.ndim == 4 else kernel.shape[:1]
  w = jnp.full(w_shape, 1.0 / jnp.maximum(jnp.mean(jnp.abs(kernel)), 1e-8), kernel.dtype)
  return w, mu, log_sigma


def _pair(v, name) -> tuple[int, int]:
  if isinstance(v, int):
    return (v, v)
  v = tuple(v)
  if len(v) != 2 or not all(isinstance(i, int) for i in v):
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}.")
  return v


def conv_output_size(in_hw, kernel_size, strides, padding) -> tuple[int, int]:
  """Spatial output size ``(h_out, w_out)`` of a conv with the given geometry."""
  pads = scales._normalize_padding(padding, kernel_size, strides, in_hw)
  return tuple(
      (i + lo + hi - k) // s + 1
      for i, (lo, hi), k, s in zip(in_hw, pads, kernel_size, strides))


def _quantizer(name, kwargs):
  return None if name is None else get_quantizer(name, **dict(kwargs))


def _weight_scale(spec: QuantSpec, kernel: jax.Array) -> jax.Array | None:
  """Analytic per-filter scale of the spec, ``(c_out,)``, or ``None``."""
  if spec.weight_scale == "xnor":
    return scales.xnor_weight_scale(kernel)
  if spec.weight_scale == "cross_filter":
    return scales.cross_filter_scale(kernel, spec.group_size)
  return None


def _init_gamma(spec: QuantSpec, kernel: jax.Array, out_hw: tuple[int, int]):
  """XNOR-Net++ Γ factors with exactly the shapes of SPEC §4.

  ``alpha`` starts at XNOR's analytic ``mean|W_o|`` (so training starts from the
  XNOR-Net weight scaling), the spatial factors ``beta``/``gamma`` at 1.
  """
  o = kernel.shape[-1]
  h, w = out_hw
  alpha = scales.xnor_weight_scale(kernel)
  if spec.gamma_case == 1:
    return {"alpha": alpha}
  if spec.gamma_case == 2:
    return {"alpha": jnp.broadcast_to(alpha, (h, w, o))}
  if spec.gamma_case == 3:
    return {"alpha": alpha, "beta": jnp.ones((h, w), kernel.dtype)}
  return {"alpha": alpha, "beta": jnp.ones((h,), kernel.dtype),
          "gamma": jnp.ones((w,), kernel.dtype)}


def _fold_gamma(case: int, f: dict[str, jax.Array]) -> jax.Array:
  """Γ folded into one tensor broadcastable to the output ``(..., h_out, w_out, o)``."""
  if case in (1, 2):
    return f["alpha"]
  if case == 3:
    return f["beta"][:, :, None] * f["alpha"][None, None, :]
  return f["beta"][:, None, None] * f["gamma"][None, :, None] * f["alpha"][None, None, :]


def finish(y, k_map, s, bias):
  """Applies ``K``, the folded weight scale ``s`` and the bias to the ±1 product, in
  this order (shared with the packed layers, so both round alike)."""
  if k_map is not None:
    y = y * k_map
  if s is not None:
    y = y * s.astype(y.dtype)
  if bias is not None:
    y = y + bias[...]
  return y


def packed_implementation():
  """The packed kernels' implementation chain for this platform
  (:data:`bnnjax.kernels.api.DEFAULT_CHAIN`), as a hashable tuple."""
  return kernels.resolve(None)


def packed_is_faster(layer, in_hw, pads) -> bool:
  """``compute="auto"``: whether the packed path is the faster exact one here.

  Measured with ``python -m benchmarks.train_speed`` (``benchmarks/results/``): on CPU
  the float path (:mod:`bnnjax.kernels.float_conv`) wins the training step, because
  the backward pass is float either way and packing the activations costs more than
  the forward matmul it replaces; on GPU/TPU cuDNN and the MXU run the ±1 float conv
  at full rate. So ``auto`` is the float path everywhere today; ``"packed"`` and the
  packed export (:mod:`bnnjax.packed`) are the XNOR-popcount paths.
  """
  del layer, in_hw, pads
  return False


class _QuantLayer(nnx.Module):
  """Shared parts of :class:`QuantConv` and :class:`QuantDense`."""

  spec: QuantSpec

  def _setup(self, kernel, spec, use_bias, out_features, out_hw, param_dtype):
    self.spec = spec
    self.kernel = (LatentWeight if spec.binary_kernel else nnx.Param)(kernel)
    self.bias = (nnx.Param(jnp.zeros((out_features,), param_dtype))
                 if use_bias else None)
    if spec.weight_scale == "xnorpp":
      for k, v in _init_gamma(spec, kernel, out_hw).items():
        setattr(self, f"gamma_{k}", ScaleFactor(v))
    if spec.weight_scale == "bonn":
      w, mu, log_sigma = _init_bonn(kernel)
      self.bonn_modulation = Modulation(w)
      self.bonn_mu = PriorParam(mu)
      self.bonn_log_sigma = PriorParam(log_sigma)

  def folded_scale(self) -> jax.Array | None:
    """The weight-side scale as one tensor, as used at inference.

    XNOR/cross-filter: ``alpha`` of shape ``(c_out,)``. BONN: the scalar
    ``1/mean(w)`` (the seed's "elements of w replaced by their average in the forward
    pass", SPEC §5 [rec]). XNOR-Net++: Γ folded from its
    factors (``alpha ⊗ beta ⊗ gamma``) into one tensor broadcastable to the output
    (shape ``(c_out,)`` for case 1, ``(h_out, w_out, c_out)`` otherwise; dense layers
    use ``h_out = w_out = 1``). The forward pass multiplies by exactly this tensor, so
    folding changes no output bit. ``None`` when the spec has no weight scale.
    """
    if self.spec.weight_scale == "xnorpp":
      factors = {k: getattr(self, f"gamma_{k}")[...]
                 for k in ("alpha", "beta", "gamma") if hasattr(self, f"gamma_{k}")}
      return _fold_gamma(self.spec.gamma_case, factors)
    if self.spec.weight_scale == "bonn":
      return 1.0 / jnp.mean(self.bonn_modulation[...])
    return _weight_scale(self.spec, self.kernel[...])

  def _packed(self, in_hw, pads) -> bool:
    """Whether this call computes its ±1 product with the packed kernels."""
    spec = self.spec
    if not (spec.binary_input and spec.binary_kernel) or spec.compute == "float":
      return False
    return spec.compute == "packed" or packed_is_faster(self, in_hw, pads)

  def _quantize(self, x):
    spec = self.spec
    in_q = _quantizer(spec.input_quantizer, spec.input_quantizer_kwargs)
    k_q = _quantizer(spec.kernel_quantizer, spec.kernel_quantizer_kwargs)
    w = self.kernel[...]
    return (x if in_q is None else in_q(x)), (w if k_q is None else k_q(w))

  def _finish(self, y, k_map, s):
    return finish(y, k_map, s, self.bias)


class QuantConv(_QuantLayer):
  """2-D convolution (NHWC, kernel ``(kh, kw, c_in, c_out)``) quantized by ``spec``.

  Args:
    in_features: input channels ``c_in``.
    out_features: filters ``c_out``.
    kernel_size: ``(kh, kw)`` or an int.
    strides: an int or a pair.
    padding: ``"SAME"``, ``"VALID"`` or explicit ``((lo, hi), (lo, hi))``.
    use_bias: add a learned bias.
    spec: the :class:`QuantSpec` (default full precision).
    input_size: ``(H, W)`` of the input; required for XNOR-Net++ Γ cases 2-4, whose
      parameters have the output's spatial shape.
    kernel_init: initializer of the latent kernel.
    rngs: ``nnx.Rngs`` with a ``params`` stream.
  """

  def __init__(self, in_features: int, out_features: int,
               kernel_size: int | Sequence[int], *, strides=1, padding="SAME",
               use_bias: bool = False, spec: QuantSpec = FP,
               input_size: Sequence[int] | None = None,
               kernel_init=nnx.initializers.lecun_normal(),
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    self.kernel_size = _pair(kernel_size, "kernel_size")
    self.strides = _pair(strides, "strides")
    self.padding = padding.upper() if isinstance(padding, str) else tuple(map(tuple, padding))
    scales._normalize_padding(self.padding, self.kernel_size, self.strides, (1, 1))
    if spec.weight_scale == "cross_filter":
      scales._check_group_size(out_features, spec.group_size)
    self.input_size = None if input_size is None else _pair(tuple(input_size), "input_size")
    out_hw = (1, 1)
    if spec.weight_scale == "xnorpp" and spec.gamma_case != 1:
      if self.input_size is None:
        raise ValueError(
            f"XNOR-Net++ gamma_case={spec.gamma_case} learns a factor per output "
            "position: QuantConv needs input_size=(H, W).")
      out_hw = conv_output_size(self.input_size, self.kernel_size, self.strides,
                                self.padding)
    self.in_features, self.out_features = in_features, out_features
    kernel = kernel_init(rngs.params(), (*self.kernel_size, in_features, out_features),
                         param_dtype)
    self._setup(kernel, spec, use_bias, out_features, out_hw, param_dtype)

  def _pads(self, in_hw):
    return scales._normalize_padding(self.padding, self.kernel_size, self.strides, in_hw)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != self.in_features:
      raise ValueError(
          f"QuantConv expects NHWC input with {self.in_features} channels, got shape "
          f"{x.shape}.")
    if (self.spec.weight_scale == "xnorpp" and self.spec.gamma_case != 1
        and tuple(x.shape[1:3]) != self.input_size):
      raise ValueError(
          f"QuantConv was built for input_size={self.input_size} (XNOR-Net++ Γ case "
          f"{self.spec.gamma_case}), got spatial size {tuple(x.shape[1:3])}.")
    pads = self._pads(x.shape[1:3])
    xq, wq = self._quantize(x)
    # +1 padding keeps a binary input binary, so one bit holds the border exactly.
    pad_value = self.spec.pad_value if self.spec.binary_input else 0.0
    wq = wq.astype(xq.dtype)
    if self._packed(x.shape[1:3], pads):
      y = kernels.binary_conv_ste(xq, wq, strides=self.strides, padding=pads,
                                  pad_value=pad_value, implementation=packed_implementation())
    else:
      y = float_conv.conv2d(xq, wq, strides=self.strides, padding=pads,
                            pad_value=pad_value)
    k_map = (scales.activation_scale(x, self.kernel_size, self.strides, pads)
             if self.spec.activation_scale else None)
    return self._finish(y, k_map, self.folded_scale())


class QuantDense(_QuantLayer):
  """Dense layer (kernel ``(d_in, d_out)``) quantized by ``spec``.

  The activation scale is ``K = mean_d |x|`` per example; XNOR-Net++ Γ uses the conv
  shapes with ``h_out = w_out = 1`` (case 2: ``(1, 1, d_out)``, case 3: ``beta`` of
  shape ``(1, 1)``, case 4: ``beta`` and ``gamma`` of shape ``(1,)``).
  """

  def __init__(self, in_features: int, out_features: int, *, use_bias: bool = True,
               spec: QuantSpec = FP, kernel_init=nnx.initializers.lecun_normal(),
               param_dtype=jnp.float32, rngs: nnx.Rngs):
    if spec.weight_scale == "cross_filter":
      scales._check_group_size(out_features, spec.group_size)
    self.in_features, self.out_features = in_features, out_features
    kernel = kernel_init(rngs.params(), (in_features, out_features), param_dtype)
    self._setup(kernel, spec, use_bias, out_features, (1, 1), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[-1] != self.in_features:
      raise ValueError(
          f"QuantDense expects {self.in_features} input features, got shape {x.shape}.")
    xq, wq = self._quantize(x)
    wq = wq.astype(xq.dtype)
    if self._packed(None, None):
      y = kernels.binary_dense_ste(xq, wq, implementation=packed_implementation())
    else:
      y = jnp.dot(xq, wq)
    k_map = scales.dense_activation_scale(x) if self.spec.activation_scale else None
    s = self.folded_scale()
    if s is not None and s.ndim == 3:  # Γ cases 2-4 with h_out = w_out = 1
      s = s.reshape(-1)
    return self._finish(y, k_map, s)
