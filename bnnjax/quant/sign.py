"""One-bit quantizers with straight-through gradients (docs/sign.md,
docs/quantizers.md).

The four *sign* quantizers (``ste_sign``, ``approx_sign``, ``swish_sign``,
``identity_sign``) compute ``sign(x)`` in the forward pass with the convention
``sign(0) = +1`` (so a single bit holds the result) and differ only in the surrogate
that replaces the (zero almost everywhere) derivative of ``sign`` in the backward pass
through ``jax.custom_vjp``. Two more one-bit quantizers have other forward values:
``ste_heaviside`` ({0, 1}) and ``magnitude_aware_sign`` (Bi-Real's ``±mean|W_o|``).
All keep the input dtype. Names and behaviour follow Larq's quantizers of the same
names. Hyper-parameters (``clip``, ``beta``) are non-differentiable keyword arguments
and must be Python scalars (they are hashed by JAX); bad values raise ``ValueError``
naming the quantizer and the hyper-parameter. Which forward values each quantizer
has is recorded in :mod:`bnnjax.quant.registry`.
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike


def sign(x: ArrayLike) -> jax.Array:
  """``sign(x)`` with ``sign(0) = +1``; no custom gradient (derivative 0 a.e.)."""
  x = jnp.asarray(x)
  one = jnp.ones((), x.dtype)
  return jnp.where(x >= 0, one, -one)


def _is_number(v) -> bool:
  """A real number that is not a bool (Python or NumPy scalar)."""
  return isinstance(v, numbers.Real) and not isinstance(v, bool)


def check_clip(quantizer: str, clip) -> float | None:
  """``clip`` as a float (``None`` = no clipping, Larq's ``clip_value=None``).

  Raises:
    ValueError: ``clip`` is not ``None`` or a number > 0 (``inf`` allowed).
  """
  if clip is None:
    return None
  if not _is_number(clip) or math.isnan(clip) or clip <= 0:
    raise ValueError(f"{quantizer}: clip={clip!r}; allowed values are numbers > 0 "
                     "(inf allowed) or None for no clipping.")
  return float(clip)


def clipped_gradient(x: jax.Array, g: jax.Array, clip: float | None) -> jax.Array:
  """The clipped straight-through gradient ``g * 1{|x| <= clip}`` (``g`` itself when
  ``clip`` is ``None``), Larq's ``_clipped_gradient``: the boundary passes."""
  if clip is None:
    return g
  return jnp.where(jnp.abs(x) <= clip, g, jnp.zeros_like(g))


# --------------------------------------------------------------------------- ste_sign
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ste_sign(x, clip):
  return sign(x)


def _ste_sign_fwd(x, clip):
  return sign(x), x


def _ste_sign_bwd(clip, x, g):
  return (clipped_gradient(x, g, clip),)


_ste_sign.defvjp(_ste_sign_fwd, _ste_sign_bwd)


def ste_sign(x: ArrayLike, clip: float | None = 1.0) -> jax.Array:
  """Sign with the clipped straight-through estimator (BNN, XNOR-Net, CF Eq. 13).

  Forward ``sign(x)``; backward ``g * 1{|x| <= clip}`` (the boundary ``|x| = clip``
  passes the gradient, as in Larq; ``clip=None`` passes ``g`` everywhere). Larq:
  ``SteSign(clip_value)``.

  >>> ste_sign(jnp.array([-2.0, -0.5, 0.0, 0.5]))
  Array([-1., -1.,  1.,  1.], dtype=float32)
  """
  return _ste_sign(jnp.asarray(x), check_clip("ste_sign", clip))


# ------------------------------------------------------------------------ approx_sign
@jax.custom_vjp
def _approx_sign(x):
  return sign(x)


def _approx_sign_fwd(x):
  return sign(x), x


def _approx_sign_bwd(x, g):
  ax = jnp.abs(x)
  return (jnp.where(ax <= 1, g * (2 - 2 * ax).astype(g.dtype), jnp.zeros_like(g)),)


_approx_sign.defvjp(_approx_sign_fwd, _approx_sign_bwd)


def approx_sign(x: ArrayLike) -> jax.Array:
  """Sign with Bi-Real Net's piecewise-polynomial gradient.

  Forward ``sign(x)``; backward ``g * (2 - 2|x|) * 1{|x| <= 1}``, the derivative of
  the polynomial approximation ``2x − x|x|`` on ``[-1, 1]`` (``±1`` outside;
  docs/sign.md#straight-through-gradients).
  """
  return _approx_sign(jnp.asarray(x))


# ------------------------------------------------------------------------- swish_sign
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _swish_sign(x, beta):
  return sign(x)


def _swish_sign_fwd(x, beta):
  return sign(x), x


def _swish_sign_bwd(beta, x, g):
  # Computed in float32 at least: cosh overflows bf16 early and the ratio loses
  # all precision there.
  xf = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  bx = beta * xf
  grad = beta * (2 - bx * jnp.tanh(bx / 2)) / (1 + jnp.cosh(bx))
  return ((g.astype(grad.dtype) * grad).astype(g.dtype),)


_swish_sign.defvjp(_swish_sign_fwd, _swish_sign_bwd)


def swish_sign(x: ArrayLike, beta: float = 5.0) -> jax.Array:
  """Sign with BNN+'s SignSwish gradient.

  Forward ``sign(x)``; backward
  ``g * beta * (2 - beta*x*tanh(beta*x/2)) / (1 + cosh(beta*x))``, the derivative
  of ``2*sigmoid(beta*x)*(1 + beta*x*(1 - sigmoid(beta*x))) - 1``.
  """
  if not _is_number(beta) or not math.isfinite(beta) or beta <= 0:
    raise ValueError(f"swish_sign: beta={beta!r}; allowed values are finite numbers > 0.")
  return _swish_sign(jnp.asarray(x), float(beta))


# ---------------------------------------------------------------------- identity_sign
@jax.custom_vjp
def _identity_sign(x):
  return sign(x)


def _identity_sign_fwd(x):
  return sign(x), None


def _identity_sign_bwd(_, g):
  return (g,)


_identity_sign.defvjp(_identity_sign_fwd, _identity_sign_bwd)


def identity_sign(x: ArrayLike) -> jax.Array:
  """Sign with the plain straight-through estimator: backward passes ``g`` unchanged."""
  return _identity_sign(jnp.asarray(x))


# ---------------------------------------------------------------------- ste_heaviside
def heaviside(x: ArrayLike) -> jax.Array:
  """``H(x) = 1`` for ``x > 0``, ``0`` for ``x <= 0`` (Larq's ``math.heaviside``,
  ``sign(relu(x))``); no custom gradient."""
  x = jnp.asarray(x)
  return jnp.where(x > 0, jnp.ones((), x.dtype), jnp.zeros((), x.dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ste_heaviside(x, clip):
  return heaviside(x)


def _ste_heaviside_fwd(x, clip):
  return heaviside(x), x


def _ste_heaviside_bwd(clip, x, g):
  return (clipped_gradient(x, g, clip),)


_ste_heaviside.defvjp(_ste_heaviside_fwd, _ste_heaviside_bwd)


def ste_heaviside(x: ArrayLike, clip: float | None = 1.0) -> jax.Array:
  """The {0, 1} binarization ``H(x)`` with the clipped straight-through estimator.

  Forward ``H(x) = 1{x > 0}`` (so ``H(0) = 0``); backward ``g * 1{|x| <= clip}``
  (``g`` when ``clip`` is ``None``). Larq: ``SteHeaviside(clip_value)`` (the AND
  binarization of binary networks with {0, 1} activations).

  >>> ste_heaviside(jnp.array([-0.5, 0.0, 0.5]))
  Array([0., 0., 1.], dtype=float32)
  """
  return _ste_heaviside(jnp.asarray(x), check_clip("ste_heaviside", clip))


# ----------------------------------------------------------------- magnitude_aware_sign
def _compute_dtype(dtype):
  """At least float32: means over a kernel are not accumulated in bfloat16."""
  return jnp.promote_types(dtype, jnp.float32)


def _channel_magnitude(x):
  """``mean|x|`` over every axis but the last, in at least float32 (shape
  ``(x.shape[-1],)``; for a 1-D ``x`` no axis is averaged, as in Larq)."""
  xf = x.astype(_compute_dtype(x.dtype))
  return jnp.mean(jnp.abs(xf), axis=tuple(range(x.ndim - 1)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _magnitude_aware_sign(x, clip):
  return (_channel_magnitude(x) * sign(x).astype(_compute_dtype(x.dtype))).astype(x.dtype)


def _magnitude_aware_sign_fwd(x, clip):
  scale = _channel_magnitude(x)
  return (scale * sign(x).astype(scale.dtype)).astype(x.dtype), (x, scale)


def _magnitude_aware_sign_bwd(clip, res, g):
  x, scale = res
  grad = g.astype(scale.dtype) * scale
  return (clipped_gradient(x, grad, clip).astype(g.dtype),)


_magnitude_aware_sign.defvjp(_magnitude_aware_sign_fwd, _magnitude_aware_sign_bwd)


def magnitude_aware_sign(x: ArrayLike, clip: float | None = 1.0) -> jax.Array:
  """Bi-Real Net's magnitude-aware sign (Liu et al. 2018, §3.3): the sign scaled by
  the mean magnitude of its output channel.

  Forward ``a_o · sign(x[..., o])`` with ``a_o = mean|x[..., o]|`` over every axis
  but the last (the filter axis of a ``(kh, kw, c_in, c_out)`` or ``(d_in, d_out)``
  kernel); backward ``g · a_o · 1{|x| <= clip}``, ``a_o`` being a constant
  (stop-gradient) as in Larq's ``MagnitudeAwareSign(clip_value)``. ``a_o`` is
  computed in at least float32 and the product rounded once to the input dtype.

  Meant for kernels: on an activation the mean would run over the batch, as in Larq.
  With ``weight_scale="none"`` it is the Bi-Real recipe; with XNOR's ``weight_scale``
  the layer would multiply by ``a_o`` twice (docs/quantizers.md#with-the-methods).

  >>> magnitude_aware_sign(jnp.array([[-1.0, 0.5], [3.0, -0.5]]))
  Array([[-2. ,  0.5],
         [ 2. , -0.5]], dtype=float32)
  """
  return _magnitude_aware_sign(jnp.asarray(x), check_clip("magnitude_aware_sign", clip))
