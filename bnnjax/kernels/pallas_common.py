"""Pieces shared by the Pallas kernels (``pallas_gpu``, ``pallas_tpu``)."""

from __future__ import annotations

from jax import lax


def round_up(x: int, m: int) -> int:
  """The smallest multiple of ``m`` that is ``>= x``."""
  return -(-x // m) * m


def bit_planes(bit, acc, unroll: bool):
  """``acc = bit(j, acc)`` for ``j < 32``: a Python loop (unrolled in the kernel) or a
  ``fori_loop`` (Triton's scan lowering does not take ``unroll``)."""
  if unroll:
    for j in range(32):
      acc = bit(j, acc)
    return acc
  return lax.fori_loop(0, 32, bit, acc)
