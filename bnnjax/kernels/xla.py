"""Fast exact XNOR-popcount matmul for CPU in plain XLA (docs/packed.md).

``out[m, n] = K − 2·Σ_w popcount(a[m, w] XOR b[w, n])`` is computed as a loop over
*blocks of words*: each step XORs ``u`` words of every row of ``a`` with the same
``u`` words of every column of ``b`` and reduces them into an ``(M, N)`` int32
accumulator (one fused XLA loop per step, vectorised along ``N``). Blocking ``u`` words
per step cuts the accumulator's memory traffic ``u``-fold compared with one word per
step, and no ``(M, N, W)`` intermediate is ever materialised.

For a short contraction into few columns (``W <= UNROLLED_MAX_WORDS``, e.g. a 3×3 conv
over up to 160 channels, and ``N <= UNROLLED_MAX_COLUMNS``) there is no loop: the ``W``
terms ``popcount(a[m, w] XOR b[w, n])`` are summed elementwise in one loop fusion over
the ``(M, N)`` output (:func:`unrolled_mismatches`), vectorised along ``N``. On a 2-core
AVX-512 CPU that is 1.1-1.7× faster than the blocked loop (and than one reduce over
``W``) at ``W`` = 18 and 36, ``N`` = 64 and 128, for every ``M`` from 1 to 3136; at
``N = 256`` about equal; at ``N >= 512`` up to 5× slower (1024×32 words×1024: 4.0
against 0.75 ms), and 2-3× slower at ``W >= 72`` for ``M >= 49``. Otherwise a
contraction of up to ``FUSED_MAX_WORDS`` words is one reduce without a loop.

Measured on a 2-core AVX-512 CPU against an f32 ``jnp.dot`` of the ±1 matrices
(``benchmarks/kernels.py`` has the current numbers): one word per step is ~20× at
1×4096×4096 and ~5× at 1024³; blocks of 8 words are faster at every size tried.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

# Words reduced per loop step (best of 2, 4, 8 on the benchmark shapes).
BLOCK_WORDS = 8
# Up to this many words and output columns the terms are summed without a loop
# (unrolled_mismatches); otherwise up to FUSED_MAX_WORDS words are one reduce.
UNROLLED_MAX_WORDS = 48
UNROLLED_MAX_COLUMNS = 256
FUSED_MAX_WORDS = 24


def unrolled_is_faster(words: int, columns: int) -> bool:
  """Whether :func:`unrolled_mismatches` is the faster form for ``W`` words and ``N``
  output columns (module docstring)."""
  return words <= UNROLLED_MAX_WORDS and columns <= UNROLLED_MAX_COLUMNS


def _block(a_t: jax.Array, b: jax.Array) -> jax.Array:
  """``Σ_w popcount(a_t[w, m] XOR b[w, n])`` over the leading (word) axis, int32."""
  x = a_t[:, :, None] ^ b[:, None, :]
  return jnp.sum(lax.population_count(x).astype(jnp.int32), axis=0, dtype=jnp.int32)


def popcount_terms(pairs) -> jax.Array:
  """``Σ popcount(a XOR b)`` over ``(a, b)`` pairs of broadcastable uint32 arrays, as
  one elementwise int32 sum (XLA fuses it into a single loop, no reduction axis)."""
  acc = None
  for a, b in pairs:
    t = lax.population_count(a ^ b).astype(jnp.int32)
    acc = t if acc is None else acc + t
  return acc


def unrolled_mismatches(a_packed: jax.Array, b_packed: jax.Array) -> jax.Array:
  """:func:`mismatches` as the elementwise sum of its ``W`` terms
  ``popcount(a[:, w, None] XOR b[None, w, :])`` (no loop, no reduce)."""
  a_t = a_packed.T
  return popcount_terms((a_t[w][:, None], b_packed[w][None, :])
                        for w in range(a_t.shape[0]))


def mismatches(a_packed: jax.Array, b_packed: jax.Array, *,
               block_words: int | None = None) -> jax.Array:
  """``Σ_w popcount(a[m, w] XOR b[w, n])`` as ``(M, N)`` int32 (the differing bits).

  Args:
    a_packed: ``(M, W)`` uint32.
    b_packed: ``(W, N)`` uint32.
    block_words: words per loop step; default :data:`BLOCK_WORDS`, or no loop:
      :func:`unrolled_mismatches` when :func:`unrolled_is_faster`, else one reduce
      over the words when ``W <= FUSED_MAX_WORDS``.
  """
  m, w = a_packed.shape
  n = b_packed.shape[1]
  a_t = a_packed.T  # (W, M): word rows are contiguous, like b's.
  if block_words is None:
    if unrolled_is_faster(w, n):
      return unrolled_mismatches(a_packed, b_packed)
    if w <= FUSED_MAX_WORDS:
      return _block(a_t, b_packed)
    block_words = BLOCK_WORDS
  u = max(1, min(int(block_words), w))
  full = w // u

  def body(i, acc):
    a_blk = lax.dynamic_slice_in_dim(a_t, i * u, u, axis=0)
    b_blk = lax.dynamic_slice_in_dim(b_packed, i * u, u, axis=0)
    return acc + _block(a_blk, b_blk)

  acc = lax.fori_loop(0, full, body, jnp.zeros((m, n), jnp.int32))
  if w % u:  # the tail words, without padding (and so copying) the weights
    acc = acc + _block(a_t[full * u:], b_packed[full * u:])
  return acc


def xnor_matmul(a_packed: jax.Array, b_packed: jax.Array, k: int, *,
                block_words: int | None = None) -> jax.Array:
  """``sign(A) @ sign(B)`` exactly, from packed operands: ``K − 2·mismatches``.

  Args:
    a_packed: ``(M, W)`` uint32, ``A`` packed along K.
    b_packed: ``(W, N)`` uint32, ``B`` packed along K.
    k: contraction length ``K``.
    block_words: see :func:`mismatches`.

  Returns:
    ``(M, N)`` int32.
  """
  return jnp.int32(k) - 2 * mismatches(a_packed, b_packed, block_words=block_words)
