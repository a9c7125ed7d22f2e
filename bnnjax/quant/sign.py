"""Sign quantizers with straight-through gradients (docs/sign.md).

Every quantizer computes ``sign(x)`` in the forward pass with the convention
``sign(0) = +1`` (so a single bit holds the result), keeps the input dtype, and
replaces the (zero almost everywhere) derivative of ``sign`` by a surrogate in the
backward pass through ``jax.custom_vjp``. Names and behaviour follow Larq's
quantizers of the same names. Hyper-parameters (``clip``, ``beta``) are
non-differentiable arguments and must be Python scalars (they are hashed by JAX).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

Quantizer = Callable[[jax.Array], jax.Array]


def sign(x: ArrayLike) -> jax.Array:
  """``sign(x)`` with ``sign(0) = +1``; no custom gradient (derivative 0 a.e.)."""
  x = jnp.asarray(x)
  one = jnp.ones((), x.dtype)
  return jnp.where(x >= 0, one, -one)


# --------------------------------------------------------------------------- ste_sign
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _ste_sign(x, clip):
  return sign(x)


def _ste_sign_fwd(x, clip):
  return sign(x), x


def _ste_sign_bwd(clip, x, g):
  return (jnp.where(jnp.abs(x) <= clip, g, jnp.zeros_like(g)),)


_ste_sign.defvjp(_ste_sign_fwd, _ste_sign_bwd)


def ste_sign(x: ArrayLike, clip: float = 1.0) -> jax.Array:
  """Sign with the clipped straight-through estimator (BNN, XNOR-Net, CF Eq. 13).

  Forward ``sign(x)``; backward ``g * 1{|x| <= clip}`` (the boundary ``|x| = clip``
  passes the gradient, as in Larq).

  >>> ste_sign(jnp.array([-2.0, -0.5, 0.0, 0.5]))
  Array([-1., -1.,  1.,  1.], dtype=float32)
  """
  return _ste_sign(jnp.asarray(x), float(clip))


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


# ---------------------------------------------------------------------------- lookup
QUANTIZERS: dict[str, Callable[..., jax.Array]] = {
    "ste_sign": ste_sign,
    "approx_sign": approx_sign,
    "swish_sign": swish_sign,
    "identity_sign": identity_sign,
}


def get_quantizer(name: str, **kwargs) -> Quantizer:
  """Returns the quantizer called ``name``, with hyper-parameters bound.

  ``get_quantizer("ste_sign", clip=0.5)`` is ``lambda x: ste_sign(x, clip=0.5)``.
  An unknown name raises ``ValueError`` listing the known ones.
  """
  if name not in QUANTIZERS:
    raise ValueError(
        f"Unknown quantizer {name!r}; allowed values are {sorted(QUANTIZERS)}.")
  fn = QUANTIZERS[name]
  return functools.partial(fn, **kwargs) if kwargs else fn
