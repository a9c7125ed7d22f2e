"""Binary convolution as im2col + packed XNOR-popcount matmul
(docs/packed.md#binary-convolution).

The input is packed per pixel along its channels (``ceil(c_in/32)`` words per pixel)
and the kernel per tap along ``c_in``, so im2col gathers whole words: the patch of an
output position is the ``kh·kw·ceil(c_in/32)`` words of its taps, and the product runs
over ``K = kh·kw·c_in`` real bits (channel padding bits are 0 in both operands). On
XLA a short contraction into few output channels
(:func:`bnnjax.kernels.xla.unrolled_is_faster`) writes no patch matrix: each term
``popcount(tap_ij[..., q] XOR W[i, j, q, :])`` reads its strided view of the input and
all are summed in one fusion (at batch 1, im2col's slices and concatenation were ten
small XLA operations per conv).

Padding. A border of +1 (``pad_value=1``) is exact in one bit: padded pixels are words
with every channel bit set. Zero padding (``pad_value=0``) is a third value: the conv
is computed with a +1 border and corrected by

    y_0[p, o] = y_1[p, o] − Σ_{padded taps t of p} s[t, o],  s[t, o] = Σ_c sign(W[t, c, o])

(the padded taps contributed ``+1·sign(W)`` instead of 0; Larq Compute Engine does the
same). ``s = 2·popcount(W_packed[t, :, o]) − c_in`` comes from the packed kernel, and
the correction map is a tiny conv of the border indicator with ``s``.

Taps that read only the border. On small maps some kernel taps never reach a real
pixel (a 3×3 kernel on a 1×1 map with padding 1: every tap but the centre), so the
product runs over the hull of the *live* taps only (:func:`live_tap_hull`), on the
input cropped or padded to that hull's geometry: with a 0 border a dead tap adds 0,
with a +1 border it adds ``s[t, o]`` to every output, added back as a constant. On
ResNet-18's last stage at batch 1 that is 16 words per output instead of 144.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bnnjax.kernels import api
from bnnjax.kernels import xla
from bnnjax.kernels.float_conv import out_size
from bnnjax.kernels.float_conv import tap_views
from bnnjax.kernels.float_conv import valid_range
from bnnjax.kernels.packing import num_words
from bnnjax.kernels.packing import pack_bits
from bnnjax.kernels.packing import popcount_sum
from bnnjax.kernels.reference import conv_pads

PAD_VALUES = (0.0, 1.0)


def _pair(v, name) -> tuple[int, int]:
  if isinstance(v, (int, np.integer)):
    v = (int(v), int(v))
  v = tuple(v)
  if len(v) != 2 or not all(isinstance(i, (int, np.integer)) and i >= 1 for i in v):
    raise ValueError(f"{name}={v!r}; allowed values are a positive int or a pair of them.")
  return tuple(int(i) for i in v)


def _check_pad_value(pad_value) -> float:
  if float(pad_value) not in PAD_VALUES:
    raise ValueError(f"pad_value={pad_value!r}; allowed values are 0 or 1.")
  return float(pad_value)


def pack_conv_kernel(w: jax.Array) -> jax.Array:
  """``sign(w)`` of a ``(kh, kw, c_in, c_out)`` kernel packed along ``c_in``:
  ``(kh, kw, ceil(c_in/32), c_out)`` uint32."""
  if jnp.ndim(w) != 4:
    raise ValueError(f"w must be a (kh, kw, c_in, c_out) kernel, got shape {jnp.shape(w)}.")
  return pack_bits(w, axis=2)


def tap_sums(w_packed: jax.Array, in_features: int) -> jax.Array:
  """``s[kh, kw, o] = Σ_c sign(W[kh, kw, c, o]) = 2·popcount − c_in`` (int32)."""
  return 2 * popcount_sum(w_packed, axis=2) - in_features


def pad_correction(w_packed: jax.Array, in_features: int, in_hw, strides,
                   pads, sums: jax.Array | None = None) -> jax.Array:
  """``Σ_{padded taps} s`` per output position, ``(H_out, W_out, c_out)`` int32.

  ``sums``: :func:`tap_sums` of the kernel when computed ahead (a packed layer keeps
  them), else computed from ``w_packed``.
  """
  (lo_h, hi_h), (lo_w, hi_w) = pads
  h, w = in_hw
  border = np.ones((1, h + lo_h + hi_h, w + lo_w + hi_w, 1), np.float32)
  border[:, lo_h:lo_h + h, lo_w:lo_w + w, :] = 0
  if sums is None:
    sums = tap_sums(w_packed, in_features)
  s = sums.astype(jnp.float32)[:, :, None, :]
  # Small integers (|Σ| <= kh·kw·c_in): exact in float32.
  corr = lax.conv_general_dilated(jnp.asarray(border), s, window_strides=strides,
                                  padding="VALID",
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return jnp.round(corr[0]).astype(jnp.int32)


def live_tap_hull(kernel_size, strides, pads, in_hw) -> tuple[tuple[int, int], ...] | None:
  """Per spatial axis, the first and last kernel tap (inclusive) that reads a real
  pixel at some output position of the padded conv: ``((i0, i1), (j0, j1))``; ``None``
  when no tap does (a stride that steps over the whole map).

  Taps outside the hull read only the border at every output. The hull may hold dead
  taps between live ones (a stride larger than the map); those are computed as usual.
  """
  hull = []
  for k, s, (lo, hi), size in zip(kernel_size, strides, pads, in_hw):
    out = out_size(size, k, s, lo, hi)
    live = [i for i in range(k) if valid_range(i, size, out, s, lo)[1] > 0]
    if not live:
      return None
    hull.append((live[0], live[-1]))
  return tuple(hull)


def packed_taps(x_packed: jax.Array, kernel_size, strides, pads,
                in_features: int) -> list[jax.Array]:
  """The ``kh·kw`` strided views of the input with a +1 border that the kernel's taps
  read, row-major over ``(i, j)``: each ``(N, H_out, W_out, words)``.

  Args:
    x_packed: ``(N, H, W, words)`` uint32, pixels packed along channels.
    kernel_size, strides, pads: the conv geometry (explicit pads).
    in_features: ``c_in`` (sets which bits a +1 border pixel has).
  """
  (lo_h, hi_h), (lo_w, hi_w) = pads
  h, w = x_packed.shape[1:3]
  if lo_h or hi_h or lo_w or hi_w:
    one = pack_bits(jnp.ones((in_features,), jnp.bool_))  # +1 in the real channels
    inside = np.zeros((h + lo_h + hi_h, w + lo_w + hi_w, 1), bool)
    inside[lo_h:lo_h + h, lo_w:lo_w + w] = True
    x_packed = jnp.where(inside, jnp.pad(x_packed, ((0, 0), (lo_h, hi_h), (lo_w, hi_w),
                                                    (0, 0))), one)
  return tap_views(x_packed, kernel_size, strides)


def im2col_packed(x_packed: jax.Array, kernel_size, strides, pads,
                  in_features: int) -> jax.Array:
  """Patches of packed pixels with a +1 border: ``(N, H_out, W_out, kh·kw·words)``
  (the :func:`packed_taps` concatenated along the words)."""
  return jnp.concatenate(packed_taps(x_packed, kernel_size, strides, pads, in_features),
                         axis=-1)


def _direct_product(x_packed, w_packed, strides, pads, in_features) -> jax.Array:
  """``Σ_{i,j,q} popcount(tap_ij[..., q] XOR W[i, j, q, :])`` as one elementwise sum
  over the ``(N, H_out, W_out, c_out)`` output: no patch matrix is written."""
  kh, kw, words, _ = w_packed.shape
  taps = packed_taps(x_packed, (kh, kw), strides, pads, in_features)
  return xla.popcount_terms((taps[i * kw + j][..., q:q + 1], w_packed[i, j, q])
                            for i in range(kh) for j in range(kw) for q in range(words))


def binary_conv_packed(x_packed: jax.Array, w_packed: jax.Array, *, in_features: int,
                       strides=1, padding="SAME", pad_value: float = 0.0,
                       implementation: api.Implementation = None,
                       interpret: bool = False,
                       sums: jax.Array | None = None) -> jax.Array:
  """``sign(x) ⊛ sign(W)`` from packed operands, exactly, as int32 ``(N, Ho, Wo, c_out)``.

  Args:
    x_packed: ``(N, H, W, ceil(c_in/32))`` uint32, ``pack_bits(x, axis=-1)``.
    w_packed: ``(kh, kw, ceil(c_in/32), c_out)`` uint32, :func:`pack_conv_kernel`.
    in_features: ``c_in``.
    strides: int or pair.
    padding: ``"SAME"``, ``"VALID"`` or ``((lo, hi), (lo, hi))``.
    pad_value: value of the border, 0 or 1 (docs/packed.md#padding; see the
      module docstring).
    implementation: the matmul's implementation (:func:`bnnjax.kernels.xnor_matmul`).
    interpret: Pallas interpret mode.
    sums: the kernel's :func:`tap_sums`, if kept (zero padding's correction).
  """
  x_packed, w_packed = jnp.asarray(x_packed), jnp.asarray(w_packed)
  if x_packed.ndim != 4 or w_packed.ndim != 4:
    raise ValueError(f"binary_conv: x_packed must be (N, H, W, words) and w_packed "
                     f"(kh, kw, words, c_out), got {x_packed.shape} and {w_packed.shape}.")
  words = num_words(in_features)
  if x_packed.shape[-1] != words or w_packed.shape[2] != words:
    raise ValueError(
        f"binary_conv: in_features={in_features} needs {words} words per pixel and per "
        f"tap; got x_packed {x_packed.shape} and w_packed {w_packed.shape}.")
  strides = _pair(strides, "strides")
  pad_value = _check_pad_value(pad_value)
  kh, kw, _, c_out = w_packed.shape
  n, h, w, _ = x_packed.shape
  pads = conv_pads(padding, (kh, kw), strides, (h, w))
  ho, wo = out_size(h, kh, strides[0], *pads[0]), out_size(w, kw, strides[1], *pads[1])
  if ho < 1 or wo < 1:
    raise ValueError(f"binary_conv: a {kh}×{kw} kernel does not fit the padded input "
                     f"{h + sum(pads[0])}×{w + sum(pads[1])}.")
  if sums is None and any(p for pair in pads for p in pair):
    sums = tap_sums(w_packed, in_features)  # the border's corrections need them
  hull = live_tap_hull((kh, kw), strides, pads, (h, w))
  if hull is None:  # every output reads only the border: Σ_t s[t, o] of a +1 border, or 0
    border = (jnp.sum(sums, axis=(0, 1)) if pad_value == 1.0
              else jnp.zeros((c_out,), jnp.int32))
    return jnp.broadcast_to(border.astype(jnp.int32), (n, ho, wo, c_out))
  (i0, i1), (j0, j1) = hull
  dead_sum = 0
  if (i0, i1, j0, j1) != (0, kh - 1, 0, kw - 1):
    # Only the hull's taps, on the border that the hull reads (module docstring).
    if pad_value == 1.0:
      dead_sum = (jnp.sum(sums, axis=(0, 1))
                  - jnp.sum(sums[i0:i1 + 1, j0:j1 + 1], axis=(0, 1)))
    w_packed = w_packed[i0:i1 + 1, j0:j1 + 1]
    sums = sums[i0:i1 + 1, j0:j1 + 1]
    kh, kw = i1 - i0 + 1, j1 - j0 + 1
    # The padded extent the hull's taps read: (out − 1)·stride + k rows from the
    # border's start moved by the hull's first tap; real pixels past it are cropped.
    geometry = []
    for (lo, _), t0, o, st, k, size in zip(pads, (i0, j0), (ho, wo), strides, (kh, kw),
                                           (h, w)):
      lo, extent = lo - t0, (o - 1) * st + k
      size = min(size, extent - lo)
      geometry.append(((lo, extent - lo - size), size))
    pads = tuple(g[0] for g in geometry)
    h, w = (g[1] for g in geometry)
    x_packed = x_packed[:, :h, :w]
  k = kh * kw * in_features
  if (xla.unrolled_is_faster(kh * kw * words, c_out)
      and api.resolve(implementation)[0] == "xla"):
    # A short contraction on XLA: the taps' terms summed in one fusion, read straight
    # from the input (docs/packed.md#binary-convolution).
    y = k - 2 * _direct_product(x_packed, w_packed, strides, pads, in_features)
  else:
    patches = im2col_packed(x_packed, (kh, kw), strides, pads, in_features)
    kwords = patches.shape[-1]
    y = api.xnor_matmul(patches.reshape(n * ho * wo, kwords),
                        w_packed.reshape(kwords, c_out), k,
                        implementation=implementation, interpret=interpret)
    y = y.reshape(n, ho, wo, c_out)
  y = y + dead_sum
  if pad_value == 0.0 and any(p for pair in pads for p in pair):
    y = y - pad_correction(w_packed, in_features, (h, w), strides, pads, sums)
  return y


def binary_conv(x: jax.Array, w: jax.Array, *, strides=1, padding="SAME",
                pad_value: float = 0.0, implementation: api.Implementation = None,
                interpret: bool = False) -> jax.Array:
  """``sign(x) ⊛ sign(w)`` (``sign(0) = +1``) by packed XNOR-popcount, int32.

  Equals ``lax.conv_general_dilated`` of the ±1 arrays with a border of ``pad_value``
  exactly (:func:`~bnnjax.kernels.reference.binary_conv_reference`).

  Args:
    x: NHWC input (any real dtype; only signs matter).
    w: ``(kh, kw, c_in, c_out)`` kernel.
    strides, padding, pad_value, implementation, interpret: see
      :func:`binary_conv_packed`.

  Returns:
    ``(N, H_out, W_out, c_out)`` int32.
  """
  x, w = jnp.asarray(x), jnp.asarray(w)
  if x.ndim != 4:
    raise ValueError(f"binary_conv: x must be NHWC, got shape {x.shape}.")
  if w.ndim != 4 or w.shape[2] != x.shape[-1]:
    raise ValueError(f"binary_conv: w must be (kh, kw, c_in={x.shape[-1]}, c_out), got "
                     f"shape {w.shape}.")
  strides = _pair(strides, "strides")
  pad_value = _check_pad_value(pad_value)
  pads = conv_pads(padding, w.shape[:2], strides, x.shape[1:3])
  w_packed = _pack_live_taps(w, live_tap_hull(w.shape[:2], strides, pads, x.shape[1:3]),
                             pad_value)
  return binary_conv_packed(pack_bits(x, axis=-1), w_packed, in_features=x.shape[-1],
                            strides=strides, padding=pads, pad_value=pad_value,
                            implementation=implementation, interpret=interpret)


def _pack_live_taps(w: jax.Array, hull, pad_value: float) -> jax.Array:
  """A float kernel packed for :func:`binary_conv_packed`, which reads only the taps in
  ``hull`` (:func:`live_tap_hull`): with a zero border only those are packed (the dead
  ones are left 0). On a 1×1 map a 3×3 kernel packs its centre tap only: a training
  step packs its latent kernel on every call, and for ResNet-18's 3×3×512×512 kernels
  that is 9× less to pack. With a +1 border a dead tap adds its :func:`tap_sums` to
  every output, which come from the packed kernel, so every tap is packed.
  """
  kh, kw = w.shape[:2]
  if hull == ((0, kh - 1), (0, kw - 1)) or pad_value == 1.0:
    return pack_conv_kernel(w)
  w_packed = jnp.zeros((kh, kw, num_words(w.shape[2]), w.shape[3]), jnp.uint32)
  if hull is not None:
    (i0, i1), (j0, j1) = hull
    w_packed = w_packed.at[i0:i1 + 1, j0:j1 + 1].set(
        pack_conv_kernel(w[i0:i1 + 1, j0:j1 + 1]))
  return w_packed


def binary_dense(x: jax.Array, w: jax.Array, *, implementation: api.Implementation = None,
                 interpret: bool = False) -> jax.Array:
  """``sign(x) @ sign(w)`` by packed XNOR-popcount, int32 ``(..., d_out)``."""
  x, w = jnp.asarray(x), jnp.asarray(w)
  if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[0]:
    raise ValueError(f"binary_dense: x (..., d_in) and w (d_in, d_out) do not match: "
                     f"{x.shape} and {w.shape}.")
  lead = x.shape[:-1]
  a = pack_bits(x.reshape(-1, x.shape[-1]), axis=1)
  y = api.xnor_matmul(a, pack_bits(w, axis=0), w.shape[0],
                      implementation=implementation, interpret=interpret)
  return y.reshape(*lead, w.shape[1])
