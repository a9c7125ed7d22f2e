"""Float 2-D convolution lowered per shape, fast on CPU at every feature-map size.

``conv2d(x, w, strides=..., padding=..., pad_value=...)`` computes exactly the function
of ``lax.conv_general_dilated(pad(x, pad_value), w, strides, "VALID")`` (NHWC input,
``(kh, kw, c_in, c_out)`` kernel) and is differentiated by JAX as usual. It picks one of
three lowerings per shape (:func:`choose_lowering`):

``xla``
  ``lax.conv_general_dilated``: cuDNN on GPU, the MXU on TPU, and on an AVX-512 CPU the
  fastest, forward and both gradients, for stride-1 convs on maps of 4×4 and more
  (without AVX-512 only for narrow convs: its gradients collapsed on larger problems
  there, see ``xla_taps``). XLA:CPU's
  convolution collapses on smaller maps (2-core AVX-512 machine, batch 64, 3×3:
  2×2×256→256 in 43 ms forward, about 7 GFLOP/s, against 1.6 ms for ``taps``), and so
  do its gradients.
``taps``
  a sum of one matmul per kernel tap ``(i, j)``: ``y[:, R_ij] += x[:, S_ij] @ w[i, j]``
  where ``R_ij`` is the block of output positions whose input pixel under tap ``(i, j)``
  is real (not border) and ``S_ij`` those input pixels. Border pixels are never
  multiplied: a tap that reads only border is skipped, and a partly outside tap
  multiplies only its real block. On a 1×1 map a padded 3×3 conv is one matmul through
  its centre tap; on a 2×2 map it does 16 of 36 tap-position products. A border of
  ``pad_value ≠ 0`` contributes ``pad_value · Σ_c w[i, j, c, o]`` at the positions a tap
  reads border, added as one small matmul of the (constant) border-indicator map.
``im2col``
  the taps concatenated along channels and one ``(N·Ho·Wo, kh·kw·c_in)`` matmul: best
  when ``c_in`` is small (the 7×7 stem on a 1-channel image), where a matmul per tap
  would contract over a handful of channels.
``xla_taps``
  XLA's conv forward, the gradients of ``taps`` backward (a ``jax.custom_vjp``), by
  the CPU rule without AVX-512: on a 2-core AVX2 machine XLA's forward conv was the
  fastest on large maps (batch 128, 28×28, 16→16: 7-9 ms against 51-61 ms for
  ``taps``) while its input gradient collapsed (265 ms for forward and gradients
  against 137-152 ms this way). On an AVX-512 machine XLA's own gradients are 3-6×
  faster than those of ``taps`` at that shape, and ``xla`` is used there. Forward-mode
  differentiation (``jax.jvp``) is not defined through it.

Gradients of ``taps`` and ``im2col`` are matmuls too (JAX transposes slices into pads),
so both directions avoid XLA:CPU's slow small-map convolutions.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bnnjax.kernels.reference import conv_pads

LOWERINGS = ("xla", "taps", "im2col", "xla_taps")


def _pair(v, name) -> tuple[int, int]:
  if isinstance(v, (int, np.integer)):
    v = (int(v), int(v))
  v = tuple(int(i) for i in v)
  if len(v) != 2 or min(v) < 1:
    raise ValueError(f"{name}={v!r}; allowed values are a positive int or a pair of them.")
  return v


def out_size(size, k, s, lo, hi):
  """Output length of a conv of kernel ``k``, stride ``s``, pads ``lo``/``hi``."""
  return (size + lo + hi - k) // s + 1


def tap_views(x_padded: jax.Array, kernel_size, strides) -> list[jax.Array]:
  """The ``kh·kw`` strided views of an already padded NHWC ``x_padded`` that a conv's
  taps read, row-major over ``(i, j)``: view ``(i, j)`` is
  ``x_padded[:, i + s_h·o_h, j + s_w·o_w, :]`` over every output position, each
  ``(N, H_out, W_out, C)``."""
  (kh, kw), (sh, sw) = kernel_size, strides
  ho = out_size(x_padded.shape[1], kh, sh, 0, 0)
  wo = out_size(x_padded.shape[2], kw, sw, 0, 0)
  return [x_padded[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]


def valid_range(i, size, out, stride, lo):
  """Output indices ``o`` whose input index ``o·stride + i − lo`` is inside ``[0, size)``:
  ``(first, count)`` (count 0 when the tap reads only border)."""
  first = max(0, -(-(lo - i) // stride))
  last = min(out - 1, (size - 1 + lo - i) // stride)
  return first, max(0, last - first + 1)


# Below this many multiply-adds (N·Ho·Wo·kh·kw·c_in·c_out) a conv is XLA's: it is fast
# enough there, and one op compiles faster than a matmul per tap (tests, tiny models).
SMALL_CONV_MACS = 1 << 20
# Stride-1 k×k convs with an output map of at least this many positions (4×4) are XLA's
# (forward and both gradients) on a CPU with AVX-512; smaller maps are ``taps``.
XLA_MIN_POSITIONS = 16
# On CPUs without AVX-512 (measured on a 2-core AVX2 machine) XLA's conv gradients
# collapsed on large maps, and the rule below these constants applies.
# Narrow convs (c_in, c_out ≤ NARROW_CHANNELS) with a k×k kernel, an output map larger
# than 2×2 and fewer than NARROW_CONV_MACS multiply-adds are XLA's too. Measured forward
# + both gradients (``python -m benchmarks.conv_lowering --shapes=narrow``, 2-core CPU,
# default XLA flags): up to ~6e7 multiply-adds XLA's conv and ``taps`` were within
# 0.6-1.6× of each other either way over two runs at batch 128 (7×7 8→8 1.1-1.7 vs
# 1.6-2.0 ms, 7×7 32→32 6.4-7.5 vs 4.8-7.0 ms, 28×28 8→8 28-29 vs 40-46 ms), and XLA's
# compiled 3-4× faster (0.3 vs 1.0-1.3 s per conv), which is what tests and notebook
# models on small inputs pay most. Above
# it XLA's input gradient collapses as it does at 64 channels (batch 128, 28×28 16→16,
# 2.3e8: 219 vs 102 ms; 28×28 32→32: 674 vs 203 ms), and ``taps`` stays ahead on 2×2
# and 1×1 maps (2×2 32→32: 2.4 vs 0.8 ms) and at 48 or more channels.
NARROW_CHANNELS = 32
NARROW_CONV_MACS = 1 << 26
# Output maps of at least this many positions (20×20) run XLA's forward conv with the
# gradients of ``taps`` (``xla_taps``) where ``taps`` would run both. Measured forward +
# both gradients (2-core AVX2 CPU, 3×3, stride 1, alternated, ms): batch 128, 28×28
# 16→16, 107-111 against 165-183 for ``taps``; batch 64, 28×28 64→64 XLA's forward
# 69 against 121 for ``taps`` (``conv_lowering_cpu.md``). On 14×14 and smaller maps
# ``taps`` is as fast or faster forward (14×14 64→64 with gradients: 74-96 against
# 74-89). In the README's model's whole training step: 818 against 866 ms (median of
# 3 alternated rounds).
XLA_FORWARD_MIN_POSITIONS = 400


@functools.cache
def cpu_has_avx512() -> bool:
  """Whether this machine's CPU has AVX-512 (``avx512f`` in ``/proc/cpuinfo``; False
  where there is no such file). :func:`choose_lowering` picks XLA's conv gradients
  only where they were measured fast: on AVX-512."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("flags"):
          return "avx512f" in line.split()
  except OSError:
    pass
  return False


def choose_lowering(x_shape, w_shape, strides, pads, platform: str | None = None, *,
                    avx512: bool | None = None) -> str:
  """The lowering :func:`conv2d` uses for this geometry on ``platform``.

  Off CPU: always ``xla`` (cuDNN and the MXU are fast at every shape). On CPU, first
  ``xla`` for convs of fewer than :data:`SMALL_CONV_MACS` multiply-adds and
  ``im2col`` for a k×k kernel on ``c_in < 4`` (an image stem). Then, on a CPU with
  AVX-512: ``taps`` for a 1×1 kernel (one matmul), a stride above 1, or an output map
  of fewer than :data:`XLA_MIN_POSITIONS` positions; ``xla`` otherwise. Measured with
  jax 0.10 on a 2-core AVX-512 CPU, forward / input gradient / kernel gradient timed
  apart (ms, median of 3 alternated rounds, 3×3 kernels), XLA's conv against ``taps``:

  * stride 1, maps of 4×4 and more: batch 128, 28×28 16→16 4.8 / 4.7 / 7.8 against
    29 / 28 / 43; 14×14 32→32 5.3 / 5.5 / 7.6 against 5.6 / 4.5 / 21; 28×28 8→8 and
    12→12 (where ``im2col`` was 3-5× slower still) 4.4 / 5.2 / 4.5 and 6.2 / 5.4 / 7.1
    against 4.9 / 7.3 / 25 and 23 / 27 / 37; batch 64, 28×28 64→64 38 / 38 / 43
    against 71 / 70 / 116; 4×4 128→128 1.8 / 2.0 / 2.2 against 2.6 / 2.3 / 2.7; 7×7
    64→64 about equal. The kernel gradient of ``taps`` (one matmul per tap with a
    transposed operand, ~80 GFLOP/s) is what loses.
  * 2×2 maps: XLA collapses (64, 2×2 256→256: 43 / 43 ms forward / input gradient
    against 1.6 / 1.8), and on 1×1 maps ``taps`` multiplies the centre tap only.
  * stride 2: ``taps`` as fast or faster (128, 28×28 16→32: 4.8 / 2.4 / 4.1 against
    3.7 / 7.1 / 6.5; 14×14 32→64 and 7×7 64→128 within 5%).

  In the README model's whole training step (width 16, batch 128) that is 241 against
  422 ms with the AVX2 rule (median of 5 alternated rounds).

  On a CPU without AVX-512, the rule measured on a 2-core AVX2 machine, where XLA's
  input gradient collapsed on large maps (batch 128, 28×28 16→16: 265 ms forward and
  gradients against 137-152 ms for ``taps``):
  ``xla`` for narrow convs (``c_in, c_out ≤`` :data:`NARROW_CHANNELS`, a k×k kernel,
  an output map larger than 2×2, fewer than :data:`NARROW_CONV_MACS` multiply-adds);
  ``im2col`` for a k×k kernel on ``c_in < 16``; ``xla_taps`` for a k×k kernel with an
  output map of at least :data:`XLA_FORWARD_MIN_POSITIONS` positions; ``taps``
  otherwise. Not re-measured on an AVX2 machine since: capping XLA's code generation
  at AVX2 on the AVX-512 machine (``--xla_cpu_max_isa=AVX2``) kept XLA's gradients
  fast (28×28 16→16 at batch 128, both gradients: 15 against 53 ms for ``taps``), so
  the collapse may come from the libraries' own CPU dispatch or from an older XLA.

  Args:
    x_shape: ``(N, H, W, c_in)``.
    w_shape: ``(kh, kw, c_in, c_out)``.
    strides: ``(sh, sw)``.
    pads: ``((lo, hi), (lo, hi))``.
    platform: ``"cpu"``, ``"gpu"``, ``"tpu"``; default: JAX's default backend.
    avx512: which CPU rule; default :func:`cpu_has_avx512`.
  """
  platform = platform or jax.default_backend()
  if platform != "cpu":
    return "xla"
  n, h, w, c_in = x_shape
  kh, kw, _, c_out = w_shape
  ho = out_size(h, kh, strides[0], *pads[0])
  wo = out_size(w, kw, strides[1], *pads[1])
  macs = n * ho * wo * kh * kw * c_in * c_out
  if macs < SMALL_CONV_MACS:
    return "xla"
  if kh * kw > 1 and c_in < 4:
    return "im2col"
  if cpu_has_avx512() if avx512 is None else avx512:
    if kh * kw == 1 or max(strides) > 1 or ho * wo < XLA_MIN_POSITIONS:
      return "taps"
    return "xla"
  if (kh * kw > 1 and max(c_in, c_out) <= NARROW_CHANNELS and ho * wo > 4
      and macs < NARROW_CONV_MACS):
    return "xla"
  if kh * kw > 1 and c_in < 16:
    return "im2col"
  if kh * kw > 1 and ho * wo >= XLA_FORWARD_MIN_POSITIONS:
    return "xla_taps"
  return "taps"


def _conv_xla(x, w, strides, pads, pad_value, precision, out_dtype):
  if pad_value != 0.0:
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=pad_value)
    pads = ((0, 0), (0, 0))
  return lax.conv_general_dilated(x, w, window_strides=strides, padding=pads,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                  precision=precision, preferred_element_type=out_dtype)


def _tap_slice(x, i, j, strides, starts, counts):
  """Input pixels read by tap ``(i, j)`` at the output block ``starts``/``counts``."""
  (sh, sw), (oh0, ow0), (nh, nw) = strides, starts, counts
  r0, c0 = oh0 * sh + i, ow0 * sw + j
  return x[:, r0:r0 + sh * (nh - 1) + 1:sh, c0:c0 + sw * (nw - 1) + 1:sw, :]


def _conv_taps(x, w, strides, pads, pad_value, precision, out_dtype):
  n, h, wd, c_in = x.shape
  kh, kw, _, c_out = w.shape
  (lo_h, hi_h), (lo_w, hi_w) = pads
  ho = out_size(h, kh, strides[0], lo_h, hi_h)
  wo = out_size(wd, kw, strides[1], lo_w, hi_w)
  # Shift the input so that index o·s + i addresses the unpadded pixel o·s + i − lo.
  # Only real pixels are ever read, so the shift is a coordinate change, not a copy.
  y = None
  border = np.zeros((ho, wo, kh * kw), np.float32)
  for i in range(kh):
    oh0, nh = valid_range(i, h, ho, strides[0], lo_h)
    for j in range(kw):
      ow0, nw = valid_range(j, wd, wo, strides[1], lo_w)
      border[:, :, i * kw + j] = 1.0
      if nh == 0 or nw == 0:
        continue
      border[oh0:oh0 + nh, ow0:ow0 + nw, i * kw + j] = 0.0
      xs = _tap_slice(x, i - lo_h, j - lo_w, strides, (oh0, ow0), (nh, nw))
      part = jnp.dot(xs.reshape(-1, c_in), w[i, j], precision=precision,
                     preferred_element_type=out_dtype).reshape(n, nh, nw, c_out)
      if (oh0, nh, ow0, nw) != (0, ho, 0, wo):
        part = jnp.pad(part, ((0, 0), (oh0, ho - oh0 - nh), (ow0, wo - ow0 - nw), (0, 0)))
      y = part if y is None else y + part
  if y is None:
    y = jnp.zeros((n, ho, wo, c_out), out_dtype or jnp.result_type(x, w))
  if pad_value != 0.0 and border.any():
    # Σ_c w per tap, summed in the output dtype: a bfloat16 sum of ±1 over more than
    # 256 channels would round
    tap_sums = jnp.sum(w, axis=2, dtype=out_dtype).reshape(kh * kw, c_out)
    y = y + pad_value * jnp.dot(jnp.asarray(border, tap_sums.dtype).reshape(-1, kh * kw),
                                tap_sums, precision=precision,
                                ).reshape(1, ho, wo, c_out).astype(y.dtype)
  return y


def _conv_im2col(x, w, strides, pads, pad_value, precision, out_dtype):
  n = x.shape[0]
  kh, kw, c_in, c_out = w.shape
  xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), constant_values=pad_value)
  ho = out_size(xp.shape[1], kh, strides[0], 0, 0)
  wo = out_size(xp.shape[2], kw, strides[1], 0, 0)
  patches = jnp.concatenate(
      [_tap_slice(xp, i, j, strides, (0, 0), (ho, wo)) for i in range(kh)
       for j in range(kw)], axis=-1)
  y = jnp.dot(patches.reshape(-1, kh * kw * c_in), w.reshape(kh * kw * c_in, c_out),
              precision=precision, preferred_element_type=out_dtype)
  return y.reshape(n, ho, wo, c_out)


# ``pads`` is conv_pads' tuple of int pairs, ``precision`` a ``lax.Precision`` or None
# and ``out_dtype`` a numpy dtype or None: hashable, as non-differentiable arguments
# must be.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _conv_xla_taps(x, w, strides, pads, pad_value, precision, out_dtype):
  return _conv_xla(x, w, strides, pads, pad_value, precision, out_dtype)


def _conv_xla_taps_fwd(x, w, strides, pads, pad_value, precision, out_dtype):
  return _conv_xla(x, w, strides, pads, pad_value, precision, out_dtype), (x, w)


def _conv_xla_taps_bwd(strides, pads, pad_value, precision, out_dtype, res, g):
  # The vjp of a bilinear function needs only its operands: the taps forward traced
  # here is dead code under jit and removed.
  x, w = res
  _, vjp = jax.vjp(lambda a, b: _conv_taps(a, b, strides, pads, pad_value, precision,
                                           out_dtype), x, w)
  return vjp(g)


_conv_xla_taps.defvjp(_conv_xla_taps_fwd, _conv_xla_taps_bwd)

_IMPLS = {"xla": _conv_xla, "taps": _conv_taps, "im2col": _conv_im2col,
          "xla_taps": _conv_xla_taps}


def conv2d(x: jax.Array, w: jax.Array, *, strides=1, padding="SAME",
           pad_value: float = 0.0, lowering: str | None = None,
           precision: lax.Precision | None = None,
           preferred_element_type=None) -> jax.Array:
  """``x ⊛ w`` (NHWC, HWIO) with a border of ``pad_value``, lowered per shape.

  The same function as ``lax.conv_general_dilated`` on the input padded with
  ``pad_value`` (values and gradients equal up to float summation order).

  Args:
    x: ``(N, H, W, c_in)``.
    w: ``(kh, kw, c_in, c_out)``.
    strides: an int or a pair.
    padding: ``"SAME"``, ``"VALID"`` or explicit ``((lo, hi), (lo, hi))``.
    pad_value: value of the border (0 for ordinary zero padding; 1 for a binary
      input's +1 border).
    lowering: one of :data:`LOWERINGS`, or ``None`` for :func:`choose_lowering`.
    precision: the ``lax.Precision`` of every conv and matmul of the lowering (None:
      JAX's default, which on a GPU may be TF32 for float32; XLA:CPU computes float32
      at any setting). ``bnnjax.nn.layers.matmul_precision`` chooses it per layer.
    preferred_element_type: the dtype products accumulate in and the result has
      (None: that of ``x``/``w``): float32 for bfloat16 ±1 operands, whose integer
      sums it holds exactly (docs/gpu.md).

  Returns:
    ``(N, H_out, W_out, c_out)`` in ``preferred_element_type``, or the dtype of
    ``x``/``w``.
  """
  if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[-1]:
    raise ValueError(f"conv2d: x must be NHWC and w (kh, kw, c_in={x.shape[-1]}, c_out); "
                     f"got shapes {x.shape} and {w.shape}.")
  strides = _pair(strides, "strides")
  pads = conv_pads(padding, w.shape[:2], strides, x.shape[1:3])
  ho = out_size(x.shape[1], w.shape[0], strides[0], *pads[0])
  wo = out_size(x.shape[2], w.shape[1], strides[1], *pads[1])
  if ho < 1 or wo < 1:
    raise ValueError(f"conv2d: a {w.shape[0]}×{w.shape[1]} kernel does not fit the input "
                     f"{x.shape[1]}×{x.shape[2]} with padding {pads}.")
  if lowering is None:
    lowering = choose_lowering(x.shape, w.shape, strides, pads)
  if lowering not in _IMPLS:
    raise ValueError(f"conv2d: lowering={lowering!r}; allowed values are "
                     f"{list(LOWERINGS)} or None (chosen per shape).")
  if precision is not None:
    precision = lax.Precision(precision)
  out_dtype = None if preferred_element_type is None else np.dtype(preferred_element_type)
  return _IMPLS[lowering](x, w, strides, pads, float(pad_value), precision, out_dtype)
