"""Pieces every model shares: the binary-input rule, batch norm, geometry checks.

**The binary-input rule** (implemented once, here, by :func:`input_activation` and
:class:`PreAct`). A layer whose :class:`~bnnjax.nn.QuantSpec` binarises its input
(XNOR, XNOR-CF, XNOR-Net++) applies ``sign`` inside the layer, so it must be preceded
by batch norm and *never* by ReLU: ``sign(relu(x)) = +1`` for every ``x``, which would
carry no information at all. The layers are therefore ordered

* binary input:          ``BN → (sign inside QuantConv) → conv``  (XNOR-Net §3.2 block)
* full-precision input:  ``BN → ReLU → conv``  (pre-activation, He et al. 2016)

for FP, BWN and BW-CF layers. Every model builds the input side of its hidden layers
with :class:`PreAct`, so the rule cannot be broken by one model forgetting it.

First and last layers (docs/xnor.md#where-binary-layers-sit, cross-filter paper §6.3):
they are full precision (:data:`~bnnjax.nn.FP`) unless ``quantize_first`` /
``quantize_last``, see :func:`endpoint_specs`.

**ReActNet's learnable thresholds** (model argument ``reactnet=True`` of every model,
docs/reactnet.md#where-the-modules-sit). The residual models (ResNet-18, WRN) switch
to ReActNet's post-activation order, ``x → +b → sign → binary conv → BN (→ +
shortcut(x)) → RPReLU``: RSign's learned per-channel shift
(:class:`~bnnjax.nn.LearnableBias`, :func:`rsign_shift`) is then the only threshold
of the sign, since no batch norm stands between the block input and the sign (the
rule's batch norm moves behind the conv). The plain CNNs, which have no shortcuts,
keep :class:`PreAct` with ``rsign``/``rprelu`` (``BN → RPReLU → +b → sign``), and a
binarised first layer keeps :class:`InputNorm` (``BN → +b → sign``): there the shift
reparametrises the parameter before it (RPReLU's ``ζ``, the batch norm's bias).
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from bnnjax.kernels import pooling

from bnnjax.nn.reactnet import LearnableBias
from bnnjax.nn.reactnet import RPReLU
from bnnjax.nn.spec import FP
from bnnjax.nn.spec import QuantSpec

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def _identity(x: jax.Array) -> jax.Array:
  return x


def input_activation(spec: QuantSpec) -> Callable[[jax.Array], jax.Array]:
  """The activation between batch norm and a layer quantized by ``spec``.

  Identity when the spec binarises its input (the layer's own ``sign`` is the
  activation; a ReLU before it would make every binary input +1), ReLU otherwise
  (FP, BWN, BW-CF: pre-activation ``BN → ReLU → conv``).
  """
  return _identity if spec.binary_input else jax.nn.relu


def batch_norm(num_features: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  """``nnx.BatchNorm`` with the framework's momentum 0.9 and epsilon 1e-5."""
  return nnx.BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                       rngs=rngs)


class PreAct(nnx.Module):
  """The input side of a layer quantized by ``spec``: batch norm, then its activation.

  ``BN → ReLU`` for a full-precision-input spec, ``BN`` alone for a binary-input spec
  (the layer applies ``sign``), see :func:`input_activation`.

  Optional dropout sits right before the layer for full-precision input (``BN → ReLU
  → dropout → conv``, as in Zagoruyko & Komodakis 2016 and Krizhevsky et al. 2012).
  For binary input it comes *before* the batch norm (``dropout → BN → sign``): a
  dropped zero right before ``sign`` would always become +1, a fixed value instead of
  a dropped one.

  ReActNet (docs/reactnet.md): ``rsign`` adds RSign's learned per-channel shift ``b``
  after the batch norm of a binary-input spec, so the layer computes ``sign(BN(x) +
  b)`` (a full-precision-input spec has no sign to shift: ``rsign`` is ignored there);
  ``rprelu`` puts :class:`~bnnjax.nn.RPReLU` right after the batch norm: before the
  shift and the layer's sign for binary input (``BN → RPReLU → +b → sign``), in place
  of the ReLU for full-precision input (``BN → RPReLU``; RPReLU with ``β = γ = ζ = 0``
  is ReLU). Here the shift adds to the additive parameter right before it: to the
  batch norm's bias β without ``rprelu`` (``sign(BN(x) + b)`` is ``sign`` of a batch
  norm with bias ``β + b``), to RPReLU's output shift ζ with it (``RPReLU(z) + b`` is
  RPReLU with ``ζ + b``). It changes how the threshold trains, not what the layer can
  compute; the residual models therefore use ReActNet's post-activation order
  instead (docs/reactnet.md#what-the-shift-adds).

  Args:
    num_features: channels (last axis) of the input.
    spec: the spec of the layer this feeds.
    dropout: dropout rate; 0 for none. Needs an rng stream ``dropout`` in ``rngs``.
    rsign: RSign's learned shift before a binary-input layer.
    rprelu: RPReLU after the batch norm.
    rngs: ``nnx.Rngs``.
  """

  def __init__(self, num_features: int, spec: QuantSpec, *, dropout: float = 0.0,
               rsign: bool = False, rprelu: bool = False, rngs: nnx.Rngs):
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout={dropout!r}; allowed values are 0 <= dropout < 1.")
    self.binary_input = spec.binary_input
    self.rprelu = RPReLU(num_features) if rprelu else None
    self.activation = _identity if rprelu else input_activation(spec)
    self.shift = LearnableBias(num_features) if rsign and spec.binary_input else None
    self.norm = batch_norm(num_features, rngs=rngs)
    self.dropout = dropout_module(dropout, rngs=rngs)

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    if self.dropout is not None and self.binary_input:
      x = self.dropout(x, deterministic=not train)
    x = self.norm(x, use_running_average=not train)
    if self.rprelu is not None:
      x = self.rprelu(x)
    x = self.activation(x)
    if self.shift is not None:
      x = self.shift(x)
    if self.dropout is not None and not self.binary_input:
      x = self.dropout(x, deterministic=not train)
    return x


def dropout_module(rate: float, *, rngs: nnx.Rngs) -> nnx.Dropout | None:
  """``nnx.Dropout(rate)``, or None for ``rate == 0``; ``rngs`` needs a ``dropout``
  stream when ``rate > 0``."""
  if rate <= 0:
    return None
  try:
    return nnx.Dropout(rate, rngs=rngs)
  except KeyError as e:
    raise ValueError(
        f"dropout={rate} needs an rng stream 'dropout' in rngs, e.g. "
        "nnx.Rngs(params=0, dropout=1).") from e


def rsign_shift(num_features: int, spec: QuantSpec) -> LearnableBias | None:
  """RSign's learned shift for the input of a layer quantized by ``spec``: a
  :class:`~bnnjax.nn.LearnableBias` when the layer binarises its input (it then
  computes ``sign(x + b)``, ReActNet Eq. 3), None when it has no sign to shift."""
  return LearnableBias(num_features) if spec.binary_input else None


class InputNorm(nnx.Module):
  """Batch norm on the raw input of a first layer that binarises its input.

  The binary-input rule applied to the first layer: ``sign`` of an un-normalised image
  is mostly constant, so a binary-input first layer (``quantize_first`` with an XNOR
  spec) gets a batch norm before it, never a ReLU. A full-precision-input first layer
  sees the image as it is. ``rsign``: RSign's learned per-channel shift after the
  batch norm (``sign(BN(x) + b)``, docs/reactnet.md).
  """

  def __init__(self, num_features: int, *, rsign: bool = False, rngs: nnx.Rngs):
    self.norm = batch_norm(num_features, rngs=rngs)
    self.shift = LearnableBias(num_features) if rsign else None

  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    x = self.norm(x, use_running_average=not train)
    return x if self.shift is None else self.shift(x)


def first_layer_norm(spec: QuantSpec, num_features: int, *, rsign: bool = False,
                     rngs: nnx.Rngs) -> InputNorm | None:
  """:class:`InputNorm` (with RSign's shift if ``rsign``) when the first layer's
  ``spec`` binarises its input, else None."""
  return (InputNorm(num_features, rsign=rsign, rngs=rngs) if spec.binary_input
          else None)


def check_reactnet(reactnet) -> bool:
  """Validates the ``reactnet`` model argument (docs/reactnet.md); returns it."""
  if not isinstance(reactnet, bool):
    raise ValueError(f"reactnet={reactnet!r}; allowed values are True, False.")
  return reactnet


def endpoint_specs(spec: QuantSpec, *, quantize_first: bool,
                   quantize_last: bool) -> tuple[QuantSpec, QuantSpec]:
  """Specs of the first and last layer: ``FP`` unless the matching flag is set."""
  return (spec if quantize_first else FP), (spec if quantize_last else FP)


def check_model_args(*, num_classes, input_shape, spec) -> tuple[int, int, int]:
  """Validates the arguments common to every model; returns ``input_shape``."""
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes={num_classes!r}; allowed values are integers >= 1.")
  shape = tuple(input_shape)
  if len(shape) != 3 or not all(isinstance(d, int) and d >= 1 for d in shape):
    raise ValueError(
        f"input_shape={input_shape!r} must be (H, W, C) with positive integers.")
  if not isinstance(spec, QuantSpec):
    raise TypeError(f"spec must be a QuantSpec, got {type(spec).__name__}.")
  return shape


def check_spatial(hw: Sequence[int], input_shape, where: str) -> tuple[int, int]:
  """Raises a ValueError naming ``input_shape`` when a feature map has vanished."""
  hw = tuple(int(d) for d in hw)
  if min(hw) < 1:
    raise ValueError(
        f"input_shape={tuple(input_shape)} is too small for this model: the feature "
        f"map after {where} would be {hw}.")
  return hw


def pool_output_size(hw: Sequence[int], window: int, stride: int,
                     padding: int | str) -> tuple[int, int]:
  """Spatial size after a ``window``/``stride`` pool with symmetric int or "SAME" pad."""
  if padding == "SAME":
    return tuple(-(-d // stride) for d in hw)
  return tuple((d + 2 * padding - window) // stride + 1 for d in hw)


def pool(x: jax.Array, kind: str, window: int, stride: int,
         padding: int | str) -> jax.Array:
  """Max or average pool of an NHWC tensor (symmetric int padding or ``"SAME"``).

  Max pooling pads with ``-inf`` (on CPU by :func:`bnnjax.kernels.pooling.max_pool`,
  whose gradient is XLA's without its slow ``select_and_scatter``); average pooling with explicit padding counts the
  padded zeros (Caffe/PyTorch default), with ``"SAME"`` it averages real pixels only.
  """
  pads = padding if padding == "SAME" else ((padding, padding), (padding, padding))
  if kind == "max":
    if jax.default_backend() == "cpu":  # XLA:CPU's max-pool gradient is slow
      explicit = lax.padtype_to_pads(x.shape[1:3], (window, window), (stride, stride),
                                     "SAME") if pads == "SAME" else pads
      return pooling.max_pool(x, (window, window), (stride, stride), explicit)
    return nnx.max_pool(x, (window, window), (stride, stride), pads)
  if kind == "avg":
    return nnx.avg_pool(x, (window, window), (stride, stride), pads,
                        count_include_pad=padding != "SAME")
  raise ValueError(f"pool kind={kind!r}; allowed values are 'max', 'avg'.")


def global_average_pool(x: jax.Array) -> jax.Array:
  """``(N, H, W, C) → (N, C)``."""
  return jnp.mean(x, axis=(1, 2))
