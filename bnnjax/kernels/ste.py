"""Packed kernels usable in training: forward by the kernel, backward by the reference.

``binary_conv_ste(xq, wq, ...)`` and ``binary_dense_ste(xq, wq, ...)`` take the
*already quantized* ±1 input and kernel (the outputs of a sign quantizer such as
``ste_sign``) and return ``xq ⊛ wq`` / ``xq @ wq`` in ``xq``'s dtype, computed by the
bit-packed XNOR-popcount kernel (exact, since the operands are ±1). Their
``custom_vjp`` backward pass is the vjp of the float product
(:func:`bnnjax.kernels.float_conv.conv2d` / ``jnp.dot`` on the same ±1 operands, cast
to ``compute_dtype`` when one is given and accumulated in ``xq``'s dtype, as the float
path of a layer computes it: :func:`product_in_dtype`), so together with the
quantizer's straight-through estimator a layer trains exactly as with the float
reference. Options are non-differentiable arguments and must be hashable
(``implementation`` a name or a tuple of names, ``compute_dtype`` a numpy dtype or
None).
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


def product_in_dtype(product, a, b, compute_dtype):
  """``product(a, b)`` with both operands in ``compute_dtype`` (None: ``a``'s dtype),
  accumulated in and returned as ``a``'s dtype: how a layer computes its float ±1
  product (``bnnjax.nn.layers.float_product``) and the vjp of the packed kernels
  here."""
  if compute_dtype is None or compute_dtype == a.dtype:
    return product(a, b.astype(a.dtype))
  return product(a.astype(compute_dtype), b.astype(compute_dtype),
                 preferred_element_type=a.dtype)


def _conv_reference(xq, wq, strides, pads, pad_value, compute_dtype):
  return product_in_dtype(
      lambda a, b, **kw: float_conv.conv2d(a, b, strides=strides, padding=pads,
                                           pad_value=pad_value, **kw),
      xq, wq, compute_dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6, 7))
def _conv(xq, wq, strides, pads, pad_value, implementation, interpret, compute_dtype):
  y = conv_lib.binary_conv(xq, wq, strides=strides, padding=pads, pad_value=pad_value,
                           implementation=implementation, interpret=interpret)
  return y.astype(xq.dtype)


def _conv_fwd(xq, wq, strides, pads, pad_value, implementation, interpret,
              compute_dtype):
  return (_conv(xq, wq, strides, pads, pad_value, implementation, interpret,
                compute_dtype), (xq, wq))


def _conv_bwd(strides, pads, pad_value, implementation, interpret, compute_dtype, res,
              g):
  xq, wq = res
  _, vjp = jax.vjp(lambda a, b: _conv_reference(a, b, strides, pads, pad_value,
                                                compute_dtype), xq, wq)
  gx, gw = vjp(g)
  return gx, gw.astype(wq.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _dtype(compute_dtype):
  return None if compute_dtype is None else jnp.dtype(compute_dtype)


def binary_conv_ste(xq: jax.Array, wq: jax.Array, *, strides=1, padding="SAME",
                    pad_value: float = 0.0, implementation=None,
                    interpret: bool = False, compute_dtype=None) -> jax.Array:
  """``xq ⊛ wq`` of ±1 operands by the packed kernel; gradient of the float conv.

  Args:
    xq: NHWC ±1 input (e.g. ``ste_sign(x)``).
    wq: ``(kh, kw, c_in, c_out)`` ±1 kernel.
    strides, padding, pad_value, implementation, interpret: as
      :func:`bnnjax.kernels.binary_conv`.
    compute_dtype: the dtype of the float conv's operands whose vjp is the gradient
      (None: ``xq``'s; a layer passes its ``binary_compute_dtype``, so that its packed
      and float paths have the same gradients).
  """
  strides = conv_lib._pair(strides, "strides")
  pads = conv_pads(padding, wq.shape[:2], strides, xq.shape[1:3])
  return _conv(xq, wq, strides, pads, conv_lib._check_pad_value(pad_value),
               _hashable(implementation), bool(interpret), _dtype(compute_dtype))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _dense(xq, wq, implementation, interpret, compute_dtype):
  y = conv_lib.binary_dense(xq, wq, implementation=implementation, interpret=interpret)
  return y.astype(xq.dtype)


def _dense_fwd(xq, wq, implementation, interpret, compute_dtype):
  return _dense(xq, wq, implementation, interpret, compute_dtype), (xq, wq)


def _dense_bwd(implementation, interpret, compute_dtype, res, g):
  xq, wq = res
  _, vjp = jax.vjp(lambda a, b: product_in_dtype(jnp.dot, a, b, compute_dtype), xq, wq)
  gx, gw = vjp(g)
  return gx, gw.astype(wq.dtype)


_dense.defvjp(_dense_fwd, _dense_bwd)


def binary_dense_ste(xq: jax.Array, wq: jax.Array, *, implementation=None,
                     interpret: bool = False, compute_dtype=None) -> jax.Array:
  """``xq @ wq`` of ±1 operands by the packed kernel; gradient of ``jnp.dot`` (of the
  operands in ``compute_dtype``, as :func:`binary_conv_ste`)."""
  return _dense(xq, wq, _hashable(implementation), bool(interpret),
                _dtype(compute_dtype))
