"""Pallas GPU (Triton) kernels for the exact XNOR-popcount matmul (docs/packed.md).

Two paths, chosen by the number of rows ``M`` (``method="auto"``):

* ``"popcount"`` (``M <= POPCOUNT_MAX_ROWS``): each program owns a ``(bm, bn)`` output
  tile and loops over the words, ``acc += popcount(a[:, w] XOR b[w, :])`` (Triton
  lowers ``population_count`` on int32 to ``__nv_popc``). On Hopper popcount runs on
  the slow integer pipe (≈16/clock/SM), so this wins only while the product is
  memory-bound, i.e. at batch ≲ 4, where the packed weights (32× less traffic) are
  the whole cost.
* ``"mma"`` (larger ``M``): the contraction is split by bit position,
  ``Σ_k a_k b_k = Σ_{j<32} A_j @ B_j`` with ``A_j[m, w] = ±1`` the bit ``j`` of word
  ``a[m, w]``; each ``A_j``, ``B_j`` is unpacked in registers to int8 and multiplied
  on the int8 tensor cores with int32 accumulation (exact). Zero padding bits unpack
  to −1 in both operands and add exactly ``P = 32·W_padded − K``, which is subtracted.

Operands are bit-cast to int32 (Triton's dot treats integers as signed, and the
popcount extern is int32) and zero-padded to whole tiles; padded words are zero in
both operands, so they change nothing but ``P``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from bnnjax.kernels.pallas_common import bit_planes
from bnnjax.kernels.pallas_common import round_up

METHODS = ("auto", "popcount", "mma")
# Rows up to which the popcount path is used by method="auto" (the batch ≲ 4
# regime, rounded up to one popcount tile of rows).
POPCOUNT_MAX_ROWS = 8
POPCOUNT_BLOCK = (8, 128)  # (bm, bn)
MMA_BLOCK = (64, 64, 32)  # (bm, bn, bk words); int8 MMA needs bk·… ≥ 16 on every axis


def _pad2(x: jax.Array, rows: int, cols: int) -> jax.Array:
  return jnp.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])))


def _popcount_kernel(a_ref, b_ref, o_ref, *, num_words: int, k: int):
  bm, bn = o_ref.shape

  def body(w, acc):
    a = a_ref[:, pl.ds(w, 1)]  # (bm, 1)
    b = b_ref[pl.ds(w, 1), :]  # (1, bn)
    return acc + lax.population_count(a ^ b)

  acc = lax.fori_loop(0, num_words, body, jnp.zeros((bm, bn), jnp.int32))
  o_ref[...] = k - 2 * acc


def _unpack_bit(x: jax.Array, j: int) -> jax.Array:
  """±1 int8 of bit ``j`` of every int32 word (arithmetic shift is fine: & 1)."""
  return (((x >> j) & 1) * 2 - 1).astype(jnp.int8)


def _mma_kernel(a_ref, b_ref, o_ref, *, num_blocks: int, bk: int, pad_bits: int,
                unroll: bool):
  bm, bn = o_ref.shape

  def body(c, acc):
    a = a_ref[:, pl.ds(c * bk, bk)]  # (bm, bk) words
    b = b_ref[pl.ds(c * bk, bk), :]  # (bk, bn) words

    def bit(j, acc):
      return acc + jnp.dot(_unpack_bit(a, j), _unpack_bit(b, j),
                           preferred_element_type=jnp.int32)

    return bit_planes(bit, acc, unroll)

  acc = lax.fori_loop(0, num_blocks, body, jnp.zeros((bm, bn), jnp.int32))
  o_ref[...] = acc - pad_bits


def choose_method(m: int) -> str:
  """``"popcount"`` for ``m <= POPCOUNT_MAX_ROWS`` rows, else ``"mma"``."""
  return "popcount" if m <= POPCOUNT_MAX_ROWS else "mma"


@functools.partial(jax.jit, static_argnames=("k", "method", "interpret"))
def xnor_matmul(a_packed: jax.Array, b_packed: jax.Array, k: int, *,
                method: str = "auto", interpret: bool = False) -> jax.Array:
  """``sign(A) @ sign(B)`` exactly on a GPU with Pallas/Triton: ``(M, N)`` int32.

  Args:
    a_packed: ``(M, W)`` uint32.
    b_packed: ``(W, N)`` uint32.
    k: contraction length ``K``.
    method: ``"auto"``, ``"popcount"`` or ``"mma"`` (see the module docstring).
    interpret: run the kernel in Pallas interpret mode (any backend, e.g. CPU tests).
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r}; allowed values are {list(METHODS)}.")
  m, w = a_packed.shape
  n = b_packed.shape[1]
  if method == "auto":
    method = choose_method(m)
  a = lax.bitcast_convert_type(a_packed, jnp.int32)
  b = lax.bitcast_convert_type(b_packed, jnp.int32)
  if method == "popcount":
    bm, bn = POPCOUNT_BLOCK
    bm = min(bm, pl.next_power_of_2(m))
    wp = w
    kernel = functools.partial(_popcount_kernel, num_words=w, k=k)
    params = plgpu.CompilerParams(num_warps=4, num_stages=2)
  else:
    bm, bn, bk = MMA_BLOCK
    wp = round_up(w, bk)
    # The 32 bit planes are unrolled for the GPU; interpret mode keeps the loop
    # (same arithmetic, much faster to compile on CPU).
    kernel = functools.partial(_mma_kernel, num_blocks=wp // bk, bk=bk,
                               pad_bits=32 * wp - k, unroll=not interpret)
    params = plgpu.CompilerParams(num_warps=4, num_stages=3)
  mp, np_ = round_up(m, bm), round_up(n, bn)
  a = _pad2(a, mp, wp)
  b = _pad2(b, wp, np_)
  out = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32),
      grid=(mp // bm, np_ // bn),
      in_specs=[pl.BlockSpec((bm, wp), lambda i, j: (i, 0)),
                pl.BlockSpec((wp, bn), lambda i, j: (0, j))],
      out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
      compiler_params=params,
      interpret=interpret,
      name=f"xnor_matmul_{method}",
  )(a, b)
  return out[:m, :n]
