"""Data-free post-training quantizers (Nayak et al., Bit Efficient Quantization;
docs/ptq.md#quantization-schemes).

Three schemes map a float tensor to ``n``-bit integer codes (``2 <= n <= 8``) and back,
per tensor (``axis=None``) or per channel (``axis``: the kept axis, ``-1`` for the
output channels of a Flax kernel), from the tensor's own values only:

* ``"asymmetric"`` [std]: ``Δ = (max − min)/(2^n − 1)``, ``z = round(−min/Δ)``,
  ``q = clip(round(x/Δ) + z, 0, 2^n − 1)``, ``x̂ = Δ·(q − z)``. (The seed prints
  ``2^{n−1}``; bnnjax reads it as a typo for ``2^n − 1``:
  docs/ptq.md#uniform-asymmetric.)
* ``"symmetric"`` [paper]: ``q = round(x·(2^{n−1} − 1)/max|x|)``,
  ``x̂ = q·max|x|/(2^{n−1} − 1)``; codes in ``[−(2^{n−1} − 1), 2^{n−1} − 1]``.
* ``"power_of_two"`` [paper + rec]: ``x̂ = sign(x)·2^e``,
  ``e = clip(round(log2|x|), e_min, e_max)``, ``e_max = round(log2 max|x|)``,
  ``e_min = e_max − 2^{n−1} + 2`` (one code is kept for zero, so ``2^{n−1} − 1``
  exponents); ``|x| < 2^{e_min − 1}`` becomes 0. The code is ``sign(x)·k`` with
  ``k = e − e_min + 1`` (0 for zero), so it fits ``n`` bits in two's complement.

``round`` is round-half-to-even (``jnp.round``, as numpy and TensorFlow). For the
power-of-two scheme ``round(log2 a)`` is evaluated exactly from the binary exponent
(``a = m·2^p``, ``m ∈ [½, 1)``: ``round(log2 a) = p`` if ``m ≥ √½`` else ``p − 1``)
rather than through a floating-point ``log2``, and ``2^e`` by ``ldexp``, so the
outputs are exact powers of two.

Degenerate tensors [rec] (the formulas divide by zero): an all-zero tensor or channel
gets codes 0 and ``x̂ = 0`` (``Δ = 1``, ``max|x| := 1``, ``e_max := 0``); a constant
non-zero one ``c`` under ``"asymmetric"`` uses ``Δ = |c|/(2^n − 1)``, which represents
``c`` (up to rounding of ``Δ``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct
from jax.typing import ArrayLike

SCHEMES: tuple[str, ...] = ("asymmetric", "symmetric", "power_of_two")
MIN_BITS = 2
MAX_BITS = 8


@struct.dataclass
class Quantized:
  """A quantized tensor: ``values`` (``x̂``) and what is stored to rebuild them.

  Attributes:
    values: the dequantized tensor ``x̂``, shape and dtype of ``x``.
    codes: ``int32`` integer codes, shape of ``x``: ``[0, 2^n − 1]`` (asymmetric),
      ``[−(2^{n−1} − 1), 2^{n−1} − 1]`` (symmetric, power of two).
    scale: per tensor or channel, broadcastable to ``x`` (size-1 axes except
      ``axis``): ``Δ`` (asymmetric), ``max|x|/(2^{n−1} − 1)`` (symmetric),
      ``2^{e_max}`` (power of two).
    zero_point: ``int32``, same shape as ``scale``: ``z`` (asymmetric), 0 otherwise.
    scheme, bits, axis: the arguments of :func:`quantize` (static).
  """
  values: jax.Array
  codes: jax.Array
  scale: jax.Array
  zero_point: jax.Array
  scheme: str = struct.field(pytree_node=False)
  bits: int = struct.field(pytree_node=False)
  axis: int | None = struct.field(pytree_node=False, default=None)

  @property
  def num_scales(self) -> int:
    """How many scale (and zero-point) entries are stored: 1 or the channels."""
    return int(math.prod(self.scale.shape))


def check_args(scheme: str, bits: int) -> None:
  """Raises ``ValueError`` naming ``scheme`` or ``bits`` when either is not allowed."""
  if scheme not in SCHEMES:
    raise ValueError(f"scheme={scheme!r}; allowed values are {list(SCHEMES)}.")
  if (isinstance(bits, bool) or not isinstance(bits, int)
      or not MIN_BITS <= bits <= MAX_BITS):
    raise ValueError(
        f"bits={bits!r}; allowed values are integers {MIN_BITS} to {MAX_BITS}.")


def _reduce_axes(ndim: int, axis: int | None) -> tuple[tuple[int, ...], int | None]:
  """The axes reduced to one scale, and ``axis`` made non-negative."""
  if axis is None:
    return tuple(range(ndim)), None
  if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim:
    raise ValueError(
        f"axis={axis!r} does not fit a tensor of {ndim} dimensions; use None (per "
        f"tensor) or an int in [{-ndim}, {ndim - 1}] (the channel axis).")
  axis = axis % ndim
  return tuple(i for i in range(ndim) if i != axis), axis


def code_range(scheme: str, bits: int) -> tuple[int, int]:
  """The smallest and largest integer code of ``scheme`` at ``bits``."""
  check_args(scheme, bits)
  if scheme == "asymmetric":
    return 0, 2**bits - 1
  return -(2**(bits - 1) - 1), 2**(bits - 1) - 1


def dequantize(codes: ArrayLike, scale: ArrayLike, zero_point: ArrayLike, *,
               scheme: str, bits: int) -> jax.Array:
  """Float values of stored ``codes`` (docs/ptq.md#quantization-schemes).

  * asymmetric: ``x̂ = Δ·(q − z)``;
  * symmetric: ``x̂ = q·s`` with ``s = max|x|/(2^{n−1} − 1)``;
  * power of two: ``x̂ = sign(q)·2^{e_max + |q| − (2^{n−1} − 1)}`` (``0`` for ``q = 0``),
    i.e. ``sign(q)·2^{e_min + |q| − 1}``, with ``scale = 2^{e_max}``.

  Args:
    codes: integer codes.
    scale: ``Δ``, ``s`` or ``2^{e_max}``, broadcastable to ``codes``.
    zero_point: ``z`` (asymmetric; ignored otherwise), broadcastable to ``codes``.
    scheme: one of :data:`SCHEMES`.
    bits: ``n``.

  Returns:
    ``x̂`` in ``scale``'s dtype.

  >>> import jax.numpy as jnp
  >>> dequantize(jnp.array([0, 1, 3]), jnp.float32(0.5), jnp.int32(1),
  ...            scheme="asymmetric", bits=2).tolist()
  [-0.5, 0.0, 1.0]
  """
  check_args(scheme, bits)
  return _dequantize(codes, scale, zero_point, bits, scheme, jnp)


def _dequantize(codes, scale, zero_point, bits, scheme: str, xp):
  """:func:`dequantize` without checks, in ``xp`` (``jax.numpy`` or ``numpy``)."""
  codes = xp.asarray(codes, xp.int32)
  scale = xp.asarray(scale)
  if scheme == "asymmetric":
    return scale * (codes - xp.asarray(zero_point, xp.int32)).astype(scale.dtype)
  if scheme == "symmetric":
    return codes.astype(scale.dtype) * scale
  top = _top(bits, xp)
  mag = xp.ldexp(scale, xp.abs(codes) - top)
  return xp.where(codes == 0, xp.zeros_like(mag), xp.sign(codes).astype(mag.dtype) * mag)


def _levels(bits, xp):
  """``2^n − 1`` as int32 (``bits`` a Python int or a traced integer)."""
  return xp.left_shift(xp.int32(1), xp.asarray(bits, xp.int32)) - xp.int32(1)


def _top(bits, xp):
  """``2^{n−1} − 1`` as int32."""
  return xp.left_shift(xp.int32(1), xp.asarray(bits, xp.int32) - xp.int32(1)) - xp.int32(1)


def _round_log2(a, xp=jnp):
  """``round(log2 a)`` for ``a > 0``, exactly: from ``a = m·2^p`` with ``m ∈ [½, 1)``,
  ``log2 a = p + log2 m`` with ``log2 m ∈ [−1, 0)``, which rounds to ``p`` iff
  ``m ≥ √½``. (Zero gives a meaningless value; callers mask it.)"""
  m, p = xp.frexp(a)
  return p - (m < math.sqrt(0.5)).astype(p.dtype)


def quantize(x: ArrayLike, *, scheme: str, bits: int, axis: int | None = None) -> Quantized:
  """Quantizes ``x`` to ``bits``-bit codes with ``scheme``, per tensor or channel.

  The formulas are those of the module docstring (docs/ptq.md). ``axis=None`` uses one
  scale for the whole tensor; ``axis=k`` one per index of axis ``k`` (per output
  channel of a Flax kernel: ``axis=-1``). ``scheme``, ``bits`` and ``axis`` are static
  under ``jax.jit``.

  Args:
    x: a float tensor (integers are converted to float32).
    scheme: ``"asymmetric"``, ``"symmetric"`` or ``"power_of_two"``.
    bits: ``n``, an integer from 2 to 8.
    axis: ``None`` (per tensor) or the channel axis kept by the scales.

  Returns:
    A :class:`Quantized` with ``values == dequantize(codes, scale, zero_point)``.

  Raises:
    ValueError: unknown ``scheme``, ``bits`` outside 2..8, or an ``axis`` that does
      not fit ``x``; the message names the argument.

  >>> import jax.numpy as jnp
  >>> x = jnp.array([-1.0, -0.2, 0.3, 2.0])
  >>> quantize(x, scheme="asymmetric", bits=2).values.tolist()  # Δ = 1, z = 1
  [-1.0, 0.0, 0.0, 2.0]
  >>> q = quantize(x, scheme="symmetric", bits=3)  # s = 2/3
  >>> q.codes.tolist()
  [-2, 0, 0, 3]
  >>> # e_max = 1, e_min = -1: |x| < 2^-2 becomes 0, 0.3 rises to 2^-1.
  >>> quantize(x, scheme="power_of_two", bits=3).values.tolist()
  [-1.0, 0.0, 0.5, 2.0]
  """
  check_args(scheme, bits)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  axes, axis = _reduce_axes(x.ndim, axis)
  values, codes, scale, zero_point = quantize_arrays(x, bits, scheme=scheme, axes=axes,
                                                     xp=jnp)
  return Quantized(values=values, codes=codes, scale=scale, zero_point=zero_point,
                   scheme=scheme, bits=bits, axis=axis)


def quantize_arrays(x, bits, *, scheme: str, axes: tuple[int, ...], xp=jnp):
  """The arrays of :func:`quantize` without checks: ``(values, codes, scale,
  zero_point)``, one scale per slice over the reduced ``axes``.

  ``xp`` is ``jax.numpy`` (jittable; ``bits`` may then be traced) or ``numpy``: the
  same float32 operations on the host, with no compilation, which is what
  :func:`bnnjax.ptq.quantize_params` uses to quantize a hundred tensors of many
  shapes in milliseconds.
  """
  dtype = x.dtype

  if scheme == "asymmetric":
    levels = _levels(bits, xp)
    lo = xp.min(x, axis=axes, keepdims=True)
    hi = xp.max(x, axis=axes, keepdims=True)
    delta = (hi - lo) / levels.astype(dtype)
    delta = xp.where(delta > 0, delta,
                     xp.where(lo != 0, xp.abs(lo) / levels.astype(dtype),
                              xp.ones_like(lo)))
    zero_point = xp.round(-lo / delta)
    codes = xp.clip(xp.round(x / delta) + zero_point, 0, levels).astype(xp.int32)
    scale, zero_point = delta, zero_point.astype(xp.int32)

  elif scheme == "symmetric":
    top = _top(bits, xp)
    m = xp.max(xp.abs(x), axis=axes, keepdims=True)
    m = xp.where(m > 0, m, xp.ones_like(m))
    codes = xp.clip(xp.round(x * top.astype(dtype) / m), -top, top).astype(xp.int32)
    scale, zero_point = m / top.astype(dtype), xp.zeros(m.shape, xp.int32)

  else:  # power_of_two
    top = _top(bits, xp)  # the number of exponents
    a = xp.abs(x)
    m = xp.max(a, axis=axes, keepdims=True)
    e_max = xp.where(m > 0, _round_log2(xp.where(m > 0, m, 1), xp), 0)
    e_min = e_max - top + 1
    safe = xp.where(a > 0, a, 1)
    e = xp.clip(_round_log2(safe, xp), e_min, e_max)
    # a < 2^(e_min - 1) iff a's binary exponent p (a = m·2^p, m in [1/2, 1)) is at
    # most e_min - 1; comparing exponents avoids forming a subnormal threshold,
    # which XLA on CPU flushes to zero.
    is_zero = (a == 0) | (xp.frexp(safe)[1] <= e_min - 1)
    k = e - e_min + 1
    codes = xp.where(is_zero, 0, xp.where(x >= 0, k, -k)).astype(xp.int32)
    scale = xp.ldexp(xp.ones(m.shape, dtype), e_max)
    zero_point = xp.zeros(m.shape, xp.int32)

  scale = scale.astype(dtype)
  values = _dequantize(codes, scale, zero_point, bits, scheme, xp).astype(dtype)
  return values, codes, scale, zero_point
