"""Pallas GPU (Triton) kernels for the exact XNOR-popcount matmul (docs/packed.md).

Three paths; ``method="auto"`` picks one from the shapes (:func:`choose_method`):

* ``"popcount"`` (few rows, ``M <= POPCOUNT_MAX_ROWS``): split-K over the words. The
  product is then bound by the packed weight bytes (``W·N·4``), so the grid has enough
  programs for every SM even when ``N`` alone gives few column tiles: program
  ``(j, s, i)`` reduces the ``s``-th chunk of words for a ``(bm, bn)`` tile, loading
  ``(bw, bn)`` blocks of ``b`` (wide, contiguous along ``N``) and accumulating
  ``popcount(a[m, w] XOR b[w, n])`` elementwise in a ``(bw, bn)`` int32 accumulator
  per row (one reduction over the words at the end, none per step). Chunks write
  ``(splits, M, N)`` int32 mismatch counts, summed in XLA (exact: integers).
* ``"mma"`` (many rows): each program owns a ``(bm, bn)`` output tile and loops over
  ``bk`` words per step; both packed tiles are unpacked in registers to int8 bits
  (0/1), ``(bm, bk)`` words → ``(bm, 32·bk)`` and ``(bk, bn)`` → ``(32·bk, bn)``, and
  multiplied by ONE int8 dot with ``K = 32·bk`` (int32 accumulation, exact) on the
  tensor cores.
* ``"mma_a8"``: as ``"mma"``, but the activations ``a`` are unpacked to int8 by XLA
  once (an ``M×32W`` byte array) and loaded as int8 tiles, so only the weight tiles are
  unpacked in the kernel. With many column tiles the in-kernel unpack of ``a`` is
  repeated for each of them; this trades it for one pass of ``M·K`` bytes.

Unpacked contraction order: element ``32·w + q`` of a row of ``a`` (column of ``b``)
is bit ``q`` of word ``w``, as in :func:`bnnjax.kernels.packing.unpack_bits`; the same
in both operands, which is all exactness needs. (Compiled for sm_90 with Triton 3.9,
other orders, e.g. ``q·bk + w`` or bits as 0/−1 by a sign-extending shift, give the
same per-bit SASS: two integer ops and one byte store to shared memory.)

The MMA paths multiply bits ``α, β ∈ {0, 1}`` (one shift and one AND per element,
instead of also mapping to ±1) and use, for ``x = 2α − 1``, ``y = 2β − 1``,
``Σ_{k<K} x_k y_k = 4·Σ αβ − 2·Σ α − 2·Σ β + K``: the row and column popcounts are
computed by XLA. Padding bits, padded words, rows and columns are 0, so they add
nothing to any of the three sums.

Operands are bit-cast to int32 (Triton's dot treats integers as signed, and the
popcount extern is int32).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from bnnjax.kernels.pallas_common import round_up

METHODS = ("auto", "popcount", "mma", "mma_a8")

# Rows up to which method="auto" takes the popcount path. The popcount path costs M
# popcounts per weight word (≈16 popcounts/clock/SM on Hopper), the MMA paths
# unpack every weight bit in registers (a few integer ops per bit) whatever M is, so
# the crossover is around M ≈ 8-16; 16 is the small-batch bound (to be
# confirmed with benchmarks/kernels.py --device=gpu, which times every path).
POPCOUNT_MAX_ROWS = 16

# --- popcount (split-K) path ---------------------------------------------------------
# bn = 256 columns with 8 warps: each thread holds bw words of a (bw, bn) block, i.e.
# bw/4 16-byte loads per step (8 at bw = 32: 32 KiB in flight per program). bw is
# POPCOUNT_ACC_WORDS // rows, so the per-row (bw, bn) accumulators stay at
# POPCOUNT_ACC_WORDS·bn/threads = 64 registers per thread for any number of rows.
POPCOUNT_BLOCK_N = 256
POPCOUNT_MAX_BLOCK_WORDS = 32
POPCOUNT_ACC_WORDS = 64
POPCOUNT_NUM_WARPS = 8
# No dot in the loop, so Triton's software pipeliner has little to do; bytes in
# flight come from the wide blocks and from 2+ resident programs per SM.
POPCOUNT_NUM_STAGES = 2
# Split-K aims at this many programs: 132 SMs (H100/H200) × 4, i.e. a few resident
# programs per SM, so HBM sees enough loads in flight even for a single column tile.
SM_COUNT = 132
TARGET_PROGRAMS = 4 * SM_COUNT

# --- MMA paths -------------------------------------------------------------------------
# (bm, bn, bk words): 128×128 int32 accumulator over 8 warps (64 registers per thread),
# K = 32·bk = 128 per dot (4 wgmma k-steps of 32 for int8), and an unpacked int8 tile
# of (128, 128) per operand (64 values per thread) — larger bk or tiles would spill.
MMA_BLOCK = (128, 128, 4)
MMA_NUM_WARPS = 8
MMA_NUM_STAGES = 3
# mma_a8 on large grids: 128×256 tiles halve the times each weight tile is unpacked
# and loaded per output element. Measured on an H200 (jaxlib 0.11.2's Triton, 4096×8192×
# 8192, benchmarks/results/kernels_tune_gpu.md): 1038 µs against 1757 µs for
# MMA_BLOCK (the int8 dot: 807 µs); 256×128×4 and 256×64×4 took 1310 µs, and 256×128×8
# asks for more shared memory than an SM has (237,568 > 232,448 bytes). On a small grid
# the wide tiles leave SMs idle (16×16384×16384: 309 against 205 µs, 64 programs), so
# they are taken only where the grid has at least MMA_A8_WIDE_MIN_PROGRAMS programs.
MMA_A8_WIDE_BLOCK = (128, 256, 4)
MMA_A8_WIDE_MIN_PROGRAMS = 2 * SM_COUNT
# method="auto" unpacks the activations with XLA ("mma_a8") when there are at least
# this many column tiles, i.e. when the in-kernel unpack of each a tile would be
# repeated this many times (N >= 4·128 = 512 columns).
MMA_A8_MIN_COLUMN_TILES = 4


def _pad2(x: jax.Array, rows: int, cols: int) -> jax.Array:
  if x.shape == (rows, cols):
    return x
  return jnp.pad(x, ((0, rows - x.shape[0]), (0, cols - x.shape[1])))


def _bit_index(shape: tuple[int, ...], axis: int) -> jax.Array:
  return lax.broadcasted_iota(jnp.int32, shape, axis)


def unpack_cols(a: jax.Array) -> jax.Array:
  """``(rows, words)`` int32 → ``(rows, 32·words)`` int8 bits (0/1); column
  ``32·w + q`` is bit ``q`` of word ``w``."""
  r, w = a.shape
  bits = (a[:, :, None] >> _bit_index((1, 1, 32), 2)) & 1
  return bits.astype(jnp.int8).reshape(r, 32 * w)


def unpack_rows(b: jax.Array) -> jax.Array:
  """``(words, cols)`` int32 → ``(32·words, cols)`` int8 bits (0/1); row ``32·w + q``
  is bit ``q`` of word ``w``."""
  w, n = b.shape
  bits = (b[:, None, :] >> _bit_index((1, 32, 1), 1)) & 1
  return bits.astype(jnp.int8).reshape(32 * w, n)


# ------------------------------------------------------------------------ popcount
def _popcount_kernel(a_ref, b_ref, o_ref, *, bw: int, steps: int, w: int, n: int,
                     mask_rows: bool, mask_cols: bool):
  """Mismatches ``Σ_{w in chunk s} popcount(a[m, w] XOR b[w, n])`` of one tile.

  ``a_ref``: ``(W_padded, bm)`` words of ``a`` transposed (zero-padded to whole
  chunks); ``b_ref``: the whole ``(W, N)`` ``b``, read with masks where a block passes
  its edge; ``o_ref``: the ``(bm, bn)`` tile of chunk ``s``.
  """
  bm, bn = o_ref.shape
  j, s = pl.program_id(0), pl.program_id(1)
  cols = pl.ds(j * bn, bn)

  def body(t, accs):
    w0 = (s * steps + t) * bw
    rows = pl.ds(w0, bw)
    if mask_rows or mask_cols:
      mask = None
      if mask_rows:
        mask = w0 + lax.broadcasted_iota(jnp.int32, (bw, bn), 0) < w
      if mask_cols:
        in_cols = j * bn + lax.broadcasted_iota(jnp.int32, (bw, bn), 1) < n
        mask = in_cols if mask is None else mask & in_cols
      b = plgpu.load(b_ref.at[rows, cols], mask=mask, other=0)
    else:
      b = b_ref[rows, cols]
    return tuple(acc + lax.population_count(a_ref[rows, pl.ds(r, 1)] ^ b)
                 for r, acc in enumerate(accs))

  zeros = tuple(jnp.zeros((bw, bn), jnp.int32) for _ in range(bm))
  accs = lax.fori_loop(0, steps, body, zeros)
  for r, acc in enumerate(accs):
    o_ref[r, :] = jnp.sum(acc, axis=0)


def popcount_plan(m: int, w: int, n: int, block=None, splits=None) -> dict:
  """Tiling of the popcount path: ``bm`` rows, ``bw`` words per step, ``bn`` columns,
  ``splits`` chunks of ``steps`` steps each, and the grid ``(N tiles, splits, M
  tiles)``. ``block=(bw, bn)`` and ``splits`` override the defaults."""
  m_tiles = -(-m // POPCOUNT_MAX_ROWS)
  bm = -(-m // m_tiles)
  if block is None:
    bw = max(1, min(POPCOUNT_MAX_BLOCK_WORDS, POPCOUNT_ACC_WORDS // bm))
    bw = 1 << (bw.bit_length() - 1)  # a power of 2 (Triton block sizes)
    bw = min(bw, pl.next_power_of_2(w))
    bn = min(POPCOUNT_BLOCK_N, pl.next_power_of_2(n))
  else:
    bw, bn = block
  n_tiles = -(-n // bn)
  total_steps = -(-w // bw)
  if splits is None:
    splits = max(1, -(-TARGET_PROGRAMS // (n_tiles * m_tiles)))
  splits = max(1, min(int(splits), total_steps))
  steps = -(-total_steps // splits)
  splits = -(-total_steps // steps)  # no empty chunk
  return dict(bm=bm, bw=bw, bn=bn, m_tiles=m_tiles, n_tiles=n_tiles, splits=splits,
              steps=steps, grid=(n_tiles, splits, m_tiles))


def _popcount_mismatches(a, b, *, block, splits, interpret):
  m, w = a.shape
  n = b.shape[1]
  p = popcount_plan(m, w, n, block, splits)
  bm, bw, bn, steps = p["bm"], p["bw"], p["bn"], p["steps"]
  wp = p["splits"] * steps * bw
  a_t = _pad2(a, p["m_tiles"] * bm, wp).T  # (W_padded, M_padded), tiny
  kernel = functools.partial(_popcount_kernel, bw=bw, steps=steps, w=w, n=n,
                             mask_rows=wp > w, mask_cols=n % bn != 0)
  partial = pl.pallas_call(
      kernel,
      out_shape=jax.ShapeDtypeStruct((p["splits"], p["m_tiles"] * bm,
                                      p["n_tiles"] * bn), jnp.int32),
      grid=p["grid"],
      in_specs=[pl.BlockSpec((wp, bm), lambda j, s, i: (0, i)),
                pl.BlockSpec((w, n), lambda j, s, i: (0, 0))],
      out_specs=pl.BlockSpec((None, bm, bn), lambda j, s, i: (s, i, j)),
      compiler_params=plgpu.CompilerParams(num_warps=POPCOUNT_NUM_WARPS,
                                           num_stages=POPCOUNT_NUM_STAGES),
      interpret=interpret,
      name="xnor_matmul_popcount",
  )(a_t, b)
  return jnp.sum(partial, axis=0)[:m, :n]


# ----------------------------------------------------------------------------- mma
def _mma_kernel(a_ref, b_ref, o_ref, *, bk: int, steps: int, a_unpacked: bool):
  """``Σ αβ`` over all bits of one ``(bm, bn)`` tile: one int8 dot of ``K = 32·bk``
  per step. ``a_ref``: ``(bm, W_padded)`` words, or ``(bm, 32·W_padded)`` int8 bits
  when ``a_unpacked``; ``b_ref``: ``(W_padded, bn)`` words."""
  bm, bn = o_ref.shape

  def body(t, acc):
    if a_unpacked:
      a = a_ref[:, pl.ds(t * (32 * bk), 32 * bk)]
    else:
      a = unpack_cols(a_ref[:, pl.ds(t * bk, bk)])
    b = unpack_rows(b_ref[pl.ds(t * bk, bk), :])
    return acc + jnp.dot(a, b, preferred_element_type=jnp.int32)

  o_ref[...] = lax.fori_loop(0, steps, body, jnp.zeros((bm, bn), jnp.int32))


def mma_plan(m: int, w: int, n: int, block=None, a_unpacked: bool = False) -> dict:
  """Tiling of the MMA paths: ``(bm, bn, bk)`` (``block`` overrides the default:
  :data:`MMA_A8_WIDE_BLOCK` for ``mma_a8`` (``a_unpacked``) when its grid has at least
  :data:`MMA_A8_WIDE_MIN_PROGRAMS` programs, else :data:`MMA_BLOCK`), shrunk to the
  operands (powers of 2, at least 16 rows and columns for the tensor cores), and the
  padded sizes."""
  def plan(block):
    bm, bn, bk = block
    bm = max(16, min(bm, pl.next_power_of_2(m)))
    bn = max(16, min(bn, pl.next_power_of_2(n)))
    bk = min(bk, pl.next_power_of_2(w))
    return dict(bm=bm, bn=bn, bk=bk, mp=round_up(m, bm), np=round_up(n, bn),
                wp=round_up(w, bk))
  if block is not None:
    return plan(block)
  if a_unpacked:
    wide = plan(MMA_A8_WIDE_BLOCK)
    if (wide["mp"] // wide["bm"]) * (wide["np"] // wide["bn"]) >= MMA_A8_WIDE_MIN_PROGRAMS:
      return wide
  return plan(MMA_BLOCK)


def _mma_bit_products(a, b, *, a_unpacked, block, interpret):
  """``Σ_k α_k β_k`` (the bits as 0/1) over all bits, ``(M, N)`` int32."""
  m, w = a.shape
  n = b.shape[1]
  p = mma_plan(m, w, n, block, a_unpacked)
  bm, bn, bk, mp, np_, wp = (p[k] for k in ("bm", "bn", "bk", "mp", "np", "wp"))
  a = _pad2(a, mp, wp)
  b = _pad2(b, wp, np_)
  if a_unpacked:
    a = unpack_cols(a)  # (M_padded, 32·W_padded) int8, in XLA
    a_spec = pl.BlockSpec((bm, 32 * wp), lambda i, j: (i, 0))
  else:
    a_spec = pl.BlockSpec((bm, wp), lambda i, j: (i, 0))
  out = pl.pallas_call(
      functools.partial(_mma_kernel, bk=bk, steps=wp // bk, a_unpacked=a_unpacked),
      out_shape=jax.ShapeDtypeStruct((mp, np_), jnp.int32),
      grid=(mp // bm, np_ // bn),
      in_specs=[a_spec, pl.BlockSpec((wp, bn), lambda i, j: (0, j))],
      out_specs=pl.BlockSpec((bm, bn), lambda i, j: (i, j)),
      compiler_params=plgpu.CompilerParams(num_warps=MMA_NUM_WARPS,
                                           num_stages=MMA_NUM_STAGES),
      interpret=interpret,
      name="xnor_matmul_mma_a8" if a_unpacked else "xnor_matmul_mma",
  )(a, b)
  return out[:m, :n]


def _ones(x: jax.Array, axis: int) -> jax.Array:
  """Set bits of ``x`` summed over ``axis``, int32."""
  return jnp.sum(lax.population_count(x).astype(jnp.int32), axis=axis, dtype=jnp.int32)


# --------------------------------------------------------------------------- entry
def choose_method(m: int, n: int = 0) -> str:
  """``"popcount"`` for ``m <= POPCOUNT_MAX_ROWS`` rows; else ``"mma_a8"`` when ``n``
  spans at least :data:`MMA_A8_MIN_COLUMN_TILES` MMA column tiles, ``"mma"`` below."""
  if m <= POPCOUNT_MAX_ROWS:
    return "popcount"
  if n >= MMA_A8_MIN_COLUMN_TILES * MMA_BLOCK[1]:
    return "mma_a8"
  return "mma"


@functools.partial(jax.jit,
                   static_argnames=("k", "method", "interpret", "block", "splits"))
def xnor_matmul(a_packed: jax.Array, b_packed: jax.Array, k: int, *,
                method: str = "auto", interpret: bool = False,
                block: tuple[int, ...] | None = None,
                splits: int | None = None) -> jax.Array:
  """``sign(A) @ sign(B)`` exactly on a GPU with Pallas/Triton: ``(M, N)`` int32.

  Args:
    a_packed: ``(M, W)`` uint32.
    b_packed: ``(W, N)`` uint32.
    k: contraction length ``K``.
    method: ``"auto"``, ``"popcount"``, ``"mma"`` or ``"mma_a8"`` (see the module
      docstring); ``"auto"`` is :func:`choose_method`.
    interpret: run the kernel in Pallas interpret mode (any backend, e.g. CPU tests).
    block: tile override (tests, tuning): ``(bw, bn)`` for ``"popcount"``,
      ``(bm, bn, bk)`` for the MMA paths; powers of 2.
    splits: number of word chunks of the popcount path (default from the shapes).
  """
  if method not in METHODS:
    raise ValueError(f"method={method!r}; allowed values are {list(METHODS)}.")
  m, w = a_packed.shape
  n = b_packed.shape[1]
  if method == "auto":
    method = choose_method(m, n)
  a = lax.bitcast_convert_type(a_packed, jnp.int32)
  b = lax.bitcast_convert_type(b_packed, jnp.int32)
  if method == "popcount":
    mismatches = _popcount_mismatches(a, b, block=block, splits=splits,
                                      interpret=interpret)
    return jnp.int32(k) - 2 * mismatches
  both = _mma_bit_products(a, b, a_unpacked=method == "mma_a8", block=block,
                           interpret=interpret)
  # x = 2α − 1, y = 2β − 1 over the K real bits (padding bits are 0 in both):
  # Σ xy = 4·Σαβ − 2·Σα − 2·Σβ + K.
  return (4 * both - 2 * _ones(a, 1)[:, None] - 2 * _ones(b, 0)[None, :]
          + jnp.int32(k))
