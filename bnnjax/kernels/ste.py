"""Packed kernels usable in training: forward by the kernel, backward by the reference.

``binary_conv_ste(xq, wq, ...)`` and ``binary_dense_ste(xq, wq, ...)`` take the
*already quantized* ±1 input and kernel (the outputs of a sign quantizer such as
``ste_sign``) and return ``xq ⊛ wq`` / ``xq @ wq`` in ``xq``'s dtype, computed by the
bit-packed XNOR-popcount kernel (exact, since the operands are ±1). Their
``custom_vjp`` backward pass is the vjp of the float product
(:func:`bnnjax.kernels.float_conv.conv2d` / ``jnp.dot`` on the same ±1 operands), so together with the quantizer's
straight-through estimator a layer trains exactly as with the float reference.
Options are non-differentiable arguments and must be hashable (``implementation`` a
name or a tuple of names).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from bnnjax.kernels import conv as conv_lib
from bnnjax.kernels import float_conv
from bnnjax.kernels.reference import conv_pads


def _hashable(implementation):
  if implementation is None or isinstance(implementation, str):
    return implementation
  return tuple(implementation)


def _conv_reference(xq, wq, strides, pads, pad_value):
  return float_conv.conv2d(xq, wq.astype(xq.dtype), strides=strides, padding=pads,
                           pad_value=pad_value)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv(xq, wq, strides, pads, pad_value, implementation, interpret):
  y = conv_lib.binary_conv(xq, wq, strides=strides, padding=pads, pad_value=pad_value,
                           implementation=implementation, interpret=interpret)
  return y.astype(xq.dtype)


def _conv_fwd(xq, wq, strides, pads, pad_value, implementation, interpret):
  return _conv(xq, wq, strides, pads, pad_value, implementation, interpret), (xq, wq)


def _conv_bwd(strides, pads, pad_value, implementation, interpret, res, g):
  xq, wq = res
  _, vjp = jax.vjp(lambda a, b: _conv_reference(a, b, strides, pads, pad_value), xq, wq)
  gx, gw = vjp(g)
  return gx, gw.astype(wq.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def binary_conv_ste(xq: jax.Array, wq: jax.Array, *, strides=1, padding="SAME",
                    pad_value: float = 0.0, implementation=None,
                    interpret: bool = False) -> jax.Array:
  """``xq ⊛ wq`` of ±1 operands by the packed kernel; gradient of the float conv.

  Args:
    xq: NHWC ±1 input (e.g. ``ste_sign(x)``).
    wq: ``(kh, kw, c_in, c_out)`` ±1 kernel.
    strides, padding, pad_value, implementation, interpret: as
      :func:`bnnjax.kernels.binary_conv`.
  """
  strides = conv_lib._pair(strides, "strides")
  pads = conv_pads(padding, wq.shape[:2], strides, xq.shape[1:3])
  return _conv(xq, wq, strides, pads, conv_lib._check_pad_value(pad_value),
               _hashable(implementation), bool(interpret))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _dense(xq, wq, implementation, interpret):
  y = conv_lib.binary_dense(xq, wq, implementation=implementation, interpret=interpret)
  return y.astype(xq.dtype)


def _dense_fwd(xq, wq, implementation, interpret):
  return _dense(xq, wq, implementation, interpret), (xq, wq)


def _dense_bwd(implementation, interpret, res, g):
  xq, wq = res
  _, vjp = jax.vjp(lambda a, b: jnp.dot(a, b.astype(a.dtype)), xq, wq)
  gx, gw = vjp(g)
  return gx, gw.astype(wq.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def binary_dense_ste(xq: jax.Array, wq: jax.Array, *, implementation=None,
                     interpret: bool = False) -> jax.Array:
  """``xq @ wq`` of ±1 operands by the packed kernel; gradient of ``jnp.dot``."""
  return _dense(xq, wq, _hashable(implementation), bool(interpret))
