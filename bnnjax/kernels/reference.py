"""Plain-jnp references of the packed kernels (docs/packed.md): the definitions every
implementation is tested against.

``xnor_matmul_reference`` unpacks both operands to ±1 and multiplies them with an
``int32`` dot (no popcount), so it checks the packing convention as well as the
arithmetic of the fast kernels; ``xnor_matmul_popcount_reference`` is the formula
``K − 2·Σ_w popcount(a_w XOR b_w)`` (docs/packed.md#the-xnor-popcount-dot-product)
written as one broadcast.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from bnnjax.kernels.packing import unpack_bits


def xnor_matmul_reference(a_packed: jax.Array, b_packed: jax.Array, k: int) -> jax.Array:
  """``sign(A) @ sign(B)`` from packed operands, by unpacking: ``(M, N)`` int32.

  All ``32·W`` bits are unpacked; the ``P = 32·W − K`` padding bits are equal in both
  operands, so they add exactly ``P``, which is subtracted.

  Args:
    a_packed: ``(M, W)`` uint32, ``A`` packed along its last axis.
    b_packed: ``(W, N)`` uint32, ``B`` packed along its first axis.
    k: the number of real bits ``K`` (``32·W >= K``).
  """
  bits = 32 * a_packed.shape[1]
  a = unpack_bits(a_packed, bits, axis=1, dtype=jnp.int32)
  b = unpack_bits(b_packed, bits, axis=0, dtype=jnp.int32)
  return jnp.dot(a, b, preferred_element_type=jnp.int32) - (bits - k)


def xnor_matmul_popcount_reference(a_packed: jax.Array, b_packed: jax.Array,
                                   k: int) -> jax.Array:
  """``K − 2·Σ_w popcount(a[m, w] XOR b[w, n])`` as written, ``(M, N)`` int32
  (docs/packed.md#the-xnor-popcount-dot-product)."""
  x = a_packed[:, :, None] ^ b_packed[None, :, :]
  mismatches = jnp.sum(lax.population_count(x).astype(jnp.int32), axis=1)
  return jnp.int32(k) - 2 * mismatches


def conv_pads(padding, kernel_size, strides, in_hw) -> tuple[tuple[int, int], ...]:
  """Explicit ``((lo, hi), (lo, hi))`` of ``"SAME"``/``"VALID"``/explicit padding.

  The one padding normaliser: the kernels, the packed layers, ``QuantConv`` and XNOR's
  ``K`` map (:func:`bnnjax.quant.scales.activation_scale`) all use it, so they agree on
  the border and reject the same values (``ValueError`` naming ``padding``)."""
  if isinstance(padding, str):
    if padding.upper() not in ("SAME", "VALID"):
      raise ValueError(f"padding={padding!r}; allowed values are 'SAME', 'VALID' or "
                       "explicit ((lo, hi), (lo, hi)).")
    return tuple(lax.padtype_to_pads(in_hw, kernel_size, strides, padding.upper()))
  pads = tuple(tuple(int(v) for v in p) for p in padding)
  if len(pads) != 2 or any(len(p) != 2 or min(p) < 0 for p in pads):
    raise ValueError(f"padding={padding!r}; explicit padding is ((lo, hi), (lo, hi)) "
                     "with non-negative ints.")
  return pads


def binary_conv_reference(x: jax.Array, w: jax.Array, *, strides=(1, 1),
                          padding="SAME", pad_value: float = 0.0) -> jax.Array:
  """``sign(x) ⊛ sign(w)`` with a border of ``pad_value`` (0 or 1), in ``x``'s dtype.

  NHWC input, ``(kh, kw, c_in, c_out)`` kernel, ``lax.conv_general_dilated``;
  ``strides`` an int or a pair.
  """
  if isinstance(strides, int):
    strides = (strides, strides)
  strides = tuple(strides)
  sx = jnp.where(x >= 0, 1, -1).astype(x.dtype)
  sw = jnp.where(w >= 0, 1, -1).astype(x.dtype)
  pads = conv_pads(padding, w.shape[:2], strides, x.shape[1:3])
  if pad_value == 1.0:
    sx = jnp.pad(sx, ((0, 0), *pads, (0, 0)), constant_values=1)
    pads = ((0, 0), (0, 0))
  return lax.conv_general_dilated(sx, sw, window_strides=strides, padding=pads,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
