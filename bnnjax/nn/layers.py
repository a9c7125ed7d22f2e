"""Quantized convolution and dense layers (Flax NNX) configured by a :class:`QuantSpec`.

Both layers compute, for binary input and kernel (XNOR-Net; docs/xnor.md,
docs/cross_filter.md, docs/xnorpp.md),

    y = (q_in(I) ⊛ q_k(W)) ⊙ K ⊙ S  (+ b)

where ``q_in``/``q_k`` are the spec's quantizers (identity when ``None``; ±1 signs
for the papers' methods, any of docs/quantizers.md otherwise), ``K``
is XNOR-Net's activation map (when ``activation_scale``), and ``S`` the weight scale:
1, XNOR's ``alpha_o = mean|W_o|``, cross-filter's shared ``alpha_g``, XNOR-Net++'s
learned Γ or BONN's ``1/mean(w)``. Scales multiply the *output* of the ±1
convolution, which is exactly how a bit-packed XNOR-popcount kernel applies them at
inference.

What depends on the method (the parameters a layer owns besides ``kernel`` and
``bias``, their initialisation, the check that a spec fits the layer, and ``S``) is
asked of the spec's method (:func:`bnnjax.methods.for_spec`), one module per method in
:mod:`bnnjax.methods`.

Latent weights of binary kernels are :class:`LatentWeight` (an ``nnx.Param``
subclass); the methods' parameters have their own types (XNOR-Net++'s
:class:`ScaleFactor`, BONN's :class:`Modulation` and :class:`PriorParam`, re-exported
here), so optimizers, clipping and losses select them by type
(``nnx.state(model, LatentWeight)``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from bnnjax import kernels
from bnnjax import methods
from bnnjax.kernels import float_conv
from bnnjax.kernels import ste as kernel_ste
from bnnjax.methods.bonn import ClassCenter  # noqa: F401  (re-exported)
from bnnjax.methods.bonn import FeaturePrior  # noqa: F401  (re-exported)
from bnnjax.methods.bonn import Modulation  # noqa: F401  (re-exported)
from bnnjax.methods.bonn import PriorParam  # noqa: F401  (re-exported)
from bnnjax.methods.xnorpp import ScaleFactor  # noqa: F401  (re-exported)
from bnnjax.nn.spec import FP
from bnnjax.nn.spec import QuantSpec
from bnnjax.quant import scales
from bnnjax.quant.registry import get_quantizer


class LatentWeight(nnx.Param):
  """Full-precision latent weights of a binarized kernel."""


def _pair(v, name) -> tuple[int, int]:
  if isinstance(v, int):
    return (v, v)
  v = tuple(v)
  if len(v) != 2 or not all(isinstance(i, int) for i in v):
    raise ValueError(f"{name} must be an int or a pair of ints, got {v!r}.")
  return v


def conv_output_size(in_hw, kernel_size, strides, padding) -> tuple[int, int]:
  """Spatial output size ``(h_out, w_out)`` of a conv with the given geometry."""
  pads = kernels.reference.conv_pads(padding, kernel_size, strides, in_hw)
  return tuple(
      (i + lo + hi - k) // s + 1
      for i, (lo, hi), k, s in zip(in_hw, pads, kernel_size, strides))


def _quantizer(name, kwargs):
  return None if name is None else get_quantizer(name, **dict(kwargs))


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


# The precision of the layers with a float operand: HIGHEST, except inside
# float_precision() (the trainer's train step, config.train_float_precision).
_FLOAT_PRECISION = contextvars.ContextVar("bnnjax_float_precision",
                                          default=lax.Precision.HIGHEST)
FLOAT_PRECISIONS = ("auto", "highest", "default")


@contextlib.contextmanager
def float_precision(precision):
  """Within this block, the programs traced compute the layers with a float operand
  at ``precision`` (a ``lax.Precision`` or its name) instead of ``HIGHEST``; ±1
  products keep ``DEFAULT`` (:func:`matmul_precision`).

  The trainer traces its train step in this block at ``config.train_float_precision``
  (:func:`train_float_precision`): bit-exact agreement between the eval-mode and the
  packed model is a property of inference, and on an H200 ``HIGHEST`` made the float
  twin of ResNet-18 train 3× slower (83.3 against 27.9 ms a step at batch 256) and the
  binary one 12% slower (35.6 against 31.8 ms; docs/gpu.md). The eval step, the packed
  model and ``load_trained`` keep ``HIGHEST``.
  """
  token = _FLOAT_PRECISION.set(lax.Precision(precision))
  try:
    yield
  finally:
    _FLOAT_PRECISION.reset(token)


def train_float_precision(choice: str = "auto") -> lax.Precision:
  """``config.train_float_precision`` as a ``lax.Precision``: ``"highest"``,
  ``"default"`` (the platform's: TF32 for float32 on Ampere and Hopper GPUs, bfloat16
  passes on TPU, float32 on CPU) or ``"auto"``, which is ``"default"``: training needs
  no bit-exactness, and the platform's default is what other frameworks train at."""
  if choice not in FLOAT_PRECISIONS:
    raise ValueError(f"train_float_precision={choice!r}; allowed values are "
                     f"{list(FLOAT_PRECISIONS)}.")
  return lax.Precision.HIGHEST if choice == "highest" else lax.Precision.DEFAULT


def matmul_precision(spec: QuantSpec) -> lax.Precision:
  """The precision of a layer's convolution or matmul, explicit so that results do not
  depend on the platform's default.

  * ``DEFAULT`` where both operands are ±1 signs (``QuantSpec.sign_operands``): ±1 is
    exact in every format a GPU or TPU may use for float32 at default precision
    (TF32, bfloat16), the products are ±1 and they accumulate in float32, so the
    product is the exact integer at any precision, and the fast one is taken;
  * ``HIGHEST`` for every other layer (full precision, a float input against a ±1
    kernel as in BWN, multi-bit quantizers): float32 products, not TF32's 10-bit
    mantissa, which XLA uses by default for float32 convs and dots on Ampere and
    Hopper GPUs. The eval-mode and the packed model compute these layers in different
    programs; at TF32 their roundings differ by about 1e-3 relative, enough to flip
    the signs the next binary layer takes of values near zero, and the two models'
    predictions then differ (issue 16: on an H200 only 0-52% of the argmaxes agreed).
    XLA:CPU computes float32 at full precision at any setting, so CPU results do not
    change. Inside :func:`float_precision` (the trainer's train step) these layers
    take that block's precision instead.
  """
  return lax.Precision.DEFAULT if spec.sign_operands else _FLOAT_PRECISION.get()


def binary_compute_dtype(spec: QuantSpec, platform: str | None = None):
  """The dtype a layer's float ±1 product is computed in (``QuantSpec.compute_dtype``,
  config field ``binary_compute_dtype``), or None for the input's own dtype.

  Only layers whose input and kernel are both ±1 signs (``QuantSpec.sign_operands``)
  take it: ±1 is exact in bfloat16 and the products accumulate in float32
  (``preferred_element_type``), so the forward is the same integer at half the
  operand bytes and the bfloat16 rate of a GPU's or TPU's matrix units. The
  straight-through gradients of that product (``g ⊛ W_b``, ``I_b ⋆ g``) then take the
  operands' dtype, bfloat16, as under mixed-precision training. ``"auto"``: bfloat16
  on TPU; float32 (the input's dtype) on CPU, where XLA has no faster bfloat16 conv,
  and on GPU, where an H200 ran the bfloat16 binary ResNet-18 step no faster (35.4
  against 35.5 ms: XLA computed those convs as float32 ones) and the test that bfloat16
  ±1 products with sums past 256 stay exact failed on every lowering
  (docs/gpu.md#measured-on-an-h200-2026-11-30).
  """
  if not spec.sign_operands:
    return None
  choice = spec.compute_dtype
  if choice == "auto":
    choice = "bfloat16" if (platform or jax.default_backend()) == "tpu" else "float32"
  return jnp.bfloat16 if choice == "bfloat16" else None


def packed_implementation():
  """The packed kernels' implementation chain for this platform
  (:data:`bnnjax.kernels.api.DEFAULT_CHAIN`), as a hashable tuple."""
  return kernels.resolve(None)


def packed_is_faster(in_hw, platform: str | None = None) -> bool:
  """``compute="auto"`` in training: whether the packed path is the faster exact one
  for a binary layer here (``in_hw``: a conv's input map, ``None`` for a dense layer).

  The backward pass is the float straight-through gradient either way, so only the
  forward differs, and there the packed path packs the latent kernel on every call.
  On CPU every binary conv takes it. Measured per layer on a 2-core AVX-512 CPU
  (3×3 binary convs, ``ste_sign`` on both operands, forward / forward + gradients ms,
  float against packed, median of 4 alternated rounds, batch 64): 7×7 64→64 1.78 /
  6.05 against 0.23 / 4.78; 4×4 128→128 1.61 / 4.80 against 0.28 / 3.79; 2×2
  256→256 1.17 / 3.64 against 0.32 / 2.72; 1×1 512→512 0.33 / 1.22 against 0.16 /
  0.73; at batch 128, 28×28 16→16 5.4 / 61 against 1.2 / 58 and 14×14 32→32 6.5 / 51
  against 0.7 / 30. (Until the packing of a kernel along ``c_in`` was made a
  reduction over a major axis and only the live taps of a kernel on a small map were
  packed, packing a 3×3×512×512 kernel cost 4-6 ms and 2×2 and 1×1 maps trained
  faster on the float path.) In the peer ResNet-18's whole training step (width 64,
  batch 64): 123.6 ms packed everywhere against 129.1 ms with the float forward on
  the 2×2 and 1×1 maps (median of 8 alternated rounds). Dense layers stay on the
  float forward. On GPU/TPU cuDNN and the MXU run the ±1 float conv at full rate:
  float everywhere.
  """
  return (platform or jax.default_backend()) == "cpu" and in_hw is not None


def packed_inference_is_faster(platform: str | None = None) -> bool:
  """``binary_compute="auto"`` at evaluation: whether the trainer's eval step runs the
  packed model (:func:`bnnjax.packed.pack_model`, kernels packed once per evaluation)
  instead of the eval-mode float model.

  On CPU it does: measured with ``python -m benchmarks.train_speed``
  (``benchmarks/results/train_speed_cpu.md``), the XNOR-popcount forward of the
  packed model evaluates the peer ResNet-18 (width 64) at batch 64 2.5-3× faster
  than the float eval step (16-19 against 49 ms; at batch 1: 2.8-3.7 against
  12 ms), and the README's width-16 model at batch 1000 4.5× faster (0.42 against
  1.9 s). On GPU/TPU ``auto`` keeps the eval-mode model. On an H200 the packed
  ResNet-18 (224×224, random weights) first ran at 0.70× / 0.53× the eval-mode model's
  speed at batch 1 / 64; with the kernels of issue 16 and the float layers at HIGHEST
  in both models it ran 1.98× / 1.15× faster (1.25 against 2.48 ms, 3.88 against 4.45
  ms; ``benchmarks/results/train_speed_gpu.md``), but there its logits differ from the
  eval-mode model's at batch 64 (docs/gpu.md), so the switch waits for a check on a
  trained model.
  """
  return (platform or jax.default_backend()) == "cpu"


def float_product(product, xq, wq, spec):
  """``product(xq, wq)`` (a conv or a dot) at the layer's precision
  (:func:`matmul_precision`) and, for ±1 operands, in its compute dtype
  (:func:`binary_compute_dtype`, accumulated in ``xq``'s dtype). The one place the
  float products of the eval-mode and the packed layers get both, so that the two
  round alike."""
  return kernel_ste.product_in_dtype(
      functools.partial(product, precision=matmul_precision(spec)), xq, wq,
      binary_compute_dtype(spec))


class _QuantLayer(nnx.Module):
  """Shared parts of :class:`QuantConv` and :class:`QuantDense`."""

  spec: QuantSpec

  def _setup(self, kernel, spec, use_bias, out_features, out_hw, param_dtype):
    self.spec = spec
    # The output's spatial size the method's variables were shaped for ((1, 1) unless
    # the method needs a fixed input size); fine-tuning re-derives them from a loaded
    # kernel with it (bnnjax.train.init_from).
    self.out_hw = tuple(out_hw)
    self.kernel = (LatentWeight if spec.binary_kernel else nnx.Param)(kernel)
    self.bias = (nnx.Param(jnp.zeros((out_features,), param_dtype))
                 if use_bias else None)
    for name, variable in methods.for_spec(spec).init_params(spec, kernel, out_hw).items():
      setattr(self, name, variable)

  def folded_scale(self) -> jax.Array | None:
    """The weight-side scale as one tensor, as used at inference.

    XNOR/cross-filter: ``alpha`` of shape ``(c_out,)``. BONN: the scalar
    ``1/mean(w)`` (the seed's "elements of w replaced by their average in the forward
    pass", docs/bonn.md#forward-pass [rec]). XNOR-Net++: Γ folded from its
    factors (``alpha ⊗ beta ⊗ gamma``) into one tensor broadcastable to the output
    (shape ``(c_out,)`` for case 1, ``(h_out, w_out, c_out)`` otherwise; dense layers
    use ``h_out = w_out = 1``). The forward pass multiplies by exactly this tensor, so
    folding changes no output bit. ``None`` when the spec has no weight scale.
    Defined by the spec's method (:meth:`bnnjax.methods.Method.folded_scale`).
    """
    return methods.for_spec(self.spec).folded_scale(self.spec, self)

  def _packed(self, in_hw) -> bool:
    """Whether this call computes its ±1 product with the packed kernels: only for
    ±1 sign input and kernel quantizers (``QuantSpec.sign_operands``; the spec refuses
    ``compute="packed"`` with others)."""
    spec = self.spec
    if not spec.sign_operands or spec.compute == "float":
      return False
    return spec.compute == "packed" or packed_is_faster(in_hw)

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
    kernels.reference.conv_pads(self.padding, self.kernel_size, self.strides, (1, 1))
    method = methods.for_spec(spec)
    kh, kw = self.kernel_size
    method.check_layer(spec, kernel_shape=(kh, kw, in_features, out_features),
                       layer=f"QuantConv({in_features} -> {out_features}, {kh}x{kw})")
    self.input_size = None if input_size is None else _pair(tuple(input_size), "input_size")
    out_hw = (1, 1)
    fixed = method.fixed_input_size(spec)
    if fixed is not None:
      if self.input_size is None:
        raise ValueError(f"{fixed}: QuantConv needs input_size=(H, W).")
      out_hw = conv_output_size(self.input_size, self.kernel_size, self.strides,
                                self.padding)
    self.in_features, self.out_features = in_features, out_features
    kernel = kernel_init(rngs.params(), (*self.kernel_size, in_features, out_features),
                         param_dtype)
    self._setup(kernel, spec, use_bias, out_features, out_hw, param_dtype)

  def _pads(self, in_hw):
    return kernels.reference.conv_pads(self.padding, self.kernel_size, self.strides, in_hw)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4 or x.shape[-1] != self.in_features:
      raise ValueError(
          f"QuantConv expects NHWC input with {self.in_features} channels, got shape "
          f"{x.shape}.")
    fixed = methods.for_spec(self.spec).fixed_input_size(self.spec)
    if fixed is not None and tuple(x.shape[1:3]) != self.input_size:
      raise ValueError(
          f"QuantConv was built for input_size={self.input_size} ({fixed}), got "
          f"spatial size {tuple(x.shape[1:3])}.")
    pads = self._pads(x.shape[1:3])
    xq, wq = self._quantize(x)
    # +1 padding keeps a binary input binary, so one bit holds the border exactly.
    pad_value = self.spec.pad_value if self.spec.binary_input else 0.0
    wq = wq.astype(xq.dtype)
    if self._packed(x.shape[1:3]):
      y = kernels.binary_conv_ste(xq, wq, strides=self.strides, padding=pads,
                                  pad_value=pad_value, implementation=packed_implementation(),
                                  compute_dtype=binary_compute_dtype(self.spec))
    else:
      y = float_product(
          lambda a, b, **kw: float_conv.conv2d(a, b, strides=self.strides, padding=pads,
                                               pad_value=pad_value, **kw),
          xq, wq, self.spec)
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
    methods.for_spec(spec).check_layer(spec, kernel_shape=(in_features, out_features),
                                       layer=f"QuantDense({in_features} -> {out_features})")
    self.in_features, self.out_features = in_features, out_features
    kernel = kernel_init(rngs.params(), (in_features, out_features), param_dtype)
    self._setup(kernel, spec, use_bias, out_features, (1, 1), param_dtype)

  def __call__(self, x: jax.Array) -> jax.Array:
    if x.shape[-1] != self.in_features:
      raise ValueError(
          f"QuantDense expects {self.in_features} input features, got shape {x.shape}.")
    xq, wq = self._quantize(x)
    wq = wq.astype(xq.dtype)
    if self._packed(None):
      y = kernels.binary_dense_ste(xq, wq, implementation=packed_implementation(),
                                   compute_dtype=binary_compute_dtype(self.spec))
    else:
      y = float_product(jnp.dot, xq, wq, self.spec)
    k_map = scales.dense_activation_scale(x) if self.spec.activation_scale else None
    s = self.folded_scale()
    if s is not None and s.ndim == 3:  # Γ cases 2-4 with h_out = w_out = 1
      s = s.reshape(-1)
    return self._finish(y, k_map, s)
