"""Analytic scaling factors of XNOR-Net (docs/xnor.md) and cross-filter compression
(docs/cross_filter.md).

Kernels use Flax's layout: a conv kernel is ``(kh, kw, c_in, c_out)``, a dense
kernel ``(d_in, d_out)``; in both a *filter* is ``kernel[..., o]``. All functions are
pure and differentiable, so autodiff through them gives XNOR-Net's exact gradient.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from bnnjax.kernels.float_conv import tap_views
from bnnjax.kernels.reference import conv_pads


def group_size_error(c_out: int, group_size) -> str | None:
  """Why ``group_size`` cannot split ``c_out`` filters into groups of adjacent
  filters of equal size (cross-filter compression, docs/cross_filter.md#groups), or
  ``None`` when it can.

  The one statement of the rule: layers check it once when they are built
  (:class:`bnnjax.methods.cross_filter.CrossFilter`), the public functions below
  check their arguments with :func:`check_group_size`.
  """
  if not isinstance(group_size, int) or group_size < 1:
    return "is not a positive integer"
  if c_out % group_size != 0:
    return f"does not divide the number of filters c_out={c_out}"
  return None


def check_group_size(c_out: int, group_size) -> None:
  """Raises ``ValueError`` naming both numbers if :func:`group_size_error` finds a
  problem."""
  problem = group_size_error(c_out, group_size)
  if problem is not None:
    raise ValueError(f"Cross-filter group_size={group_size!r} {problem}; choose a "
                     f"group_size that divides {c_out}.")


def xnor_weight_scale(kernel: ArrayLike) -> jax.Array:
  """XNOR-Net / BWN per-filter factor ``alpha_o = mean(|W[..., o]|)``.

  Args:
    kernel: conv ``(kh, kw, c_in, c_out)`` or dense ``(d_in, d_out)`` kernel (any rank
      ≥ 1; the last axis indexes filters).

  Returns:
    ``(c_out,)`` array: the least-squares optimal ``alpha`` for ``W ≈ alpha·sign(W)``.
  """
  kernel = jnp.asarray(kernel)
  return jnp.mean(jnp.abs(kernel), axis=tuple(range(kernel.ndim - 1)))


def cross_filter_scale(kernel: ArrayLike, group_size: int) -> jax.Array:
  """Cross-filter (CF-n) shared factor, one per group of ``n`` adjacent filters.

  ``alpha_g = mean(|W[..., G_g]|)`` over every element of the filters
  ``G_g = {g·n, …, g·n + n − 1}`` (paper §4.1), which for fixed ``B = sign(W)``
  minimises ``Σ_{i∈G_g} ||W_i − alpha·B_i||²``. Each filter carries its group's
  factor, so the result has shape ``(c_out,)``; ``group_size=1`` is
  :func:`xnor_weight_scale`.

  Raises:
    ValueError: if ``c_out % group_size != 0`` (the message names both numbers).
  """
  # All filters have the same size, so the group's mean |W| is the mean of the
  # filters' means; computing it that way makes group_size=1 bit-identical to
  # xnor_weight_scale (no different float reduction order).
  kernel = jnp.asarray(kernel)
  check_group_size(kernel.shape[-1], group_size)
  return group_shared(xnor_weight_scale(kernel), group_size)


def cross_filter_from_filterwise(alpha: ArrayLike, group_size: int) -> jax.Array:
  """CF-n factors from filter-wise factors alone (paper §4.4, Eqs. 14-16).

  With ``alpha_i = mean|W_i|`` of a pre-trained filter-wise (BWN/XNOR) model and
  equal-sized filters, the cross-filter optimum is ``alpha_g = (1/n) Σ_{i∈G_g} alpha_i``
  with ``B`` unchanged: no full-precision weights are needed.

  Args:
    alpha: ``(c_out,)`` filter-wise factors.
    group_size: ``n``; must divide ``c_out``.

  Returns:
    ``(c_out,)`` array, each filter carrying its group's shared factor.
  """
  alpha = jnp.asarray(alpha)
  if alpha.ndim != 1:
    raise ValueError(f"alpha must have shape (c_out,), got shape {alpha.shape}.")
  check_group_size(alpha.shape[0], group_size)
  return group_shared(alpha, group_size)


def group_shared(alpha: ArrayLike, group_size: int) -> jax.Array:
  """Each filter's group mean ``(1/n) Σ_{i∈G_g} alpha_i``, shape ``(c_out,)``.

  The computation of :func:`cross_filter_from_filterwise` without its argument
  check, for layers, which checked ``group_size`` once when they were built
  (:func:`group_size_error`); ``group_size`` must divide ``c_out``.
  """
  alpha = jnp.asarray(alpha)
  c_out = alpha.shape[0]
  shared = jnp.mean(alpha.reshape(c_out // group_size, group_size), axis=1)
  return jnp.repeat(shared, group_size)


@jax.jit
def mean_abs_over_channels(x: jax.Array) -> jax.Array:
  """``A = Σ_c |x| / c`` of an NHWC ``x``, shape ``(N, H, W, 1)`` (XNOR-Net's ``A``).

  Computed as a product with a column of ones, accumulated in float32 as
  ``jnp.mean`` does: XLA:CPU rewrites a channel reduction into two operations (its
  tree reduction), a product is one. With :func:`activation_scale`'s box filter as
  strided views, the packed ResNet-18 ran 7-9% faster at batch 1 and 64 (alternated in
  one process). A function of its own (a named call that XLA inlines) so that the
  tests which check every product of a binary layer can tell this one apart.
  """
  n, h, w, c = x.shape
  ones = jnp.ones((c, 1), x.dtype)
  a = jnp.dot(jnp.abs(x).reshape(n * h * w, c), ones, precision=lax.Precision.HIGHEST,
              preferred_element_type=jnp.float32)
  return (a / c).astype(x.dtype).reshape(n, h, w, 1)


def activation_scale(
    x: ArrayLike,
    kernel_size: Sequence[int],
    strides: Sequence[int] = (1, 1),
    padding: str | Sequence[tuple[int, int]] = "SAME",
) -> jax.Array:
  """XNOR-Net's activation scale map ``K = A ⊛ k`` (docs/xnor.md#the-activation-map-k).

  ``A = mean_c |I|`` per spatial position and ``k`` is a ``kh × kw`` box filter of
  value ``1/(kh·kw)`` applied with the conv's stride and zero padding, so ``K[n, i, j]``
  is the mean of ``|I|`` over the receptive field of output position ``(i, j)`` (padded
  taps count as zeros).

  Args:
    x: NHWC input.
    kernel_size: ``(kh, kw)`` of the convolution being approximated.
    strides: its strides.
    padding: ``"SAME"``, ``"VALID"`` or explicit ``((lo, hi), (lo, hi))``.

  Returns:
    ``(N, H_out, W_out, 1)`` array.
  """
  x = jnp.asarray(x)
  if x.ndim != 4:
    raise ValueError(f"activation_scale expects NHWC input, got shape {x.shape}.")
  kernel_size = tuple(kernel_size)
  strides = tuple(strides)
  # The box filter as the sum of its kh·kw strided views of the zero-padded map:
  # elementwise, so XLA fuses it into K's consumer, where reduce_window is an
  # operation of its own.
  pads = conv_pads(padding, kernel_size, strides, x.shape[1:3])
  padded = jnp.pad(mean_abs_over_channels(x), ((0, 0), *pads, (0, 0)))
  summed = sum(tap_views(padded, kernel_size, strides))
  return summed / (kernel_size[0] * kernel_size[1])


def dense_activation_scale(x: ArrayLike) -> jax.Array:
  """XNOR-Net's activation scale for a dense layer: ``K = mean_d |x|``, shape ``(..., 1)``."""
  return jnp.mean(jnp.abs(jnp.asarray(x)), axis=-1, keepdims=True)
