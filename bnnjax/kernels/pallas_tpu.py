"""Pallas TPU (Mosaic) kernel for the exact XNOR-popcount matmul (docs/packed.md).

TPU MXUs have no popcount, so the packed words are unpacked on the fly and multiplied
on the MXU. The contraction is split by bit position,
``Σ_k a_k b_k = Σ_{j<32} A_j @ B_j`` with ``A_j[m, w] = ±1`` the bit ``j`` of word
``a[m, w]``: each grid step loads a ``(bm, bk)`` block of ``a``'s words and a
``(bk, bn)`` block of ``b``'s, unpacks bit ``j`` of each to ±1 bf16 (exact) and
accumulates the 32 products in f32, exact because one step sums at most
``32·bk <= 2^24`` terms; steps are accumulated in the int32 output block, so any
``K`` is exact. Zero padding bits unpack to −1 in both operands and add exactly
``P = 32·W_padded − K``, subtracted at the last step.

Operands are bit-cast to int32 first (Mosaic's unsigned support is partial). Block
shapes follow Mosaic's (8, 128) tiling: a dimension smaller than its block is taken
whole, a larger one is zero-padded to whole blocks.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from bnnjax.kernels.pallas_common import bit_planes
from bnnjax.kernels.pallas_common import round_up

BLOCK = (256, 256, 128)  # (bm, bn, bk words)


def _fit(size: int, block: int, align: int) -> tuple[int, int]:
  """``(block, padded size)``: the whole (aligned) axis when it fits in one block."""
  if size <= block:
    full = round_up(size, align)
    return full, full
  return block, round_up(size, block)


def _unpack_bit(x: jax.Array, j) -> jax.Array:
  bits = lax.shift_right_logical(x, jnp.asarray(j, jnp.int32)) & 1
  return (bits * 2 - 1).astype(jnp.float32).astype(jnp.bfloat16)


def _kernel(a_ref, b_ref, o_ref, *, pad_bits: int, unroll: bool):
  kk = pl.program_id(2)

  @pl.when(kk == 0)
  def _():
    o_ref[...] = jnp.zeros(o_ref.shape, jnp.int32)

  a = a_ref[...]
  b = b_ref[...]

  def bit(j, acc):
    return acc + jnp.dot(_unpack_bit(a, j), _unpack_bit(b, j),
                         preferred_element_type=jnp.float32)

  acc = bit_planes(bit, jnp.zeros(o_ref.shape, jnp.float32), unroll)
  o_ref[...] += acc.astype(jnp.int32)

  @pl.when(kk == pl.num_programs(2) - 1)
  def _():
    o_ref[...] -= pad_bits


@functools.partial(jax.jit, static_argnames=("k", "interpret"))
def xnor_matmul(a_packed: jax.Array, b_packed: jax.Array, k: int, *,
                interpret: bool = False) -> jax.Array:
  """``sign(A) @ sign(B)`` exactly on a TPU with Pallas/Mosaic: ``(M, N)`` int32.

  Args:
    a_packed: ``(M, W)`` uint32.
    b_packed: ``(W, N)`` uint32.
    k: contraction length ``K``.
    interpret: run the kernel in Pallas interpret mode (any backend, e.g. CPU tests).
  """
  m, w = a_packed.shape
  n = b_packed.shape[1]
  bm, bn, bk = BLOCK
  bm, mp = _fit(m, bm, 8)
  bn, np_ = _fit(n, bn, 128)
  bk, wp = _fit(w, bk, 128)
  a = lax.bitcast_convert_type(a_packed, jnp.int32)
  b = lax.bitcast_convert_type(b_packed, jnp.int32)
  a = jnp.pad(a, ((0, mp - m), (0, wp - w)))
  b = jnp.pad(b, ((0, wp - w), (0, np_ - n)))
  out = pl.pallas_call(
      # Bit planes unrolled on the TPU; interpret mode keeps the loop (same
      # arithmetic, much faster to compile on CPU).
      functools.partial(_kernel, pad_bits=32 * wp - k, unroll=not interpret),
      out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32),
      grid=(mp // bm, np_ // bn, wp // bk),
      in_specs=[pl.BlockSpec((bm, bk), lambda i, j, kk: (i, kk)),
                pl.BlockSpec((bk, bn), lambda i, j, kk: (kk, j))],
      out_specs=pl.BlockSpec((bm, bn), lambda i, j, kk: (i, j)),
      compiler_params=pltpu.CompilerParams(
          dimension_semantics=("parallel", "parallel", "arbitrary")),
      interpret=interpret,
      name="xnor_matmul_mxu",
  )(a, b)
  return out[:m, :n]
