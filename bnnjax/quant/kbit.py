"""Multi-bit quantizers with straight-through gradients: ternary and DoReFa's k-bit
(docs/quantizers.md).

* :func:`ste_tern` — ternary ``{-1, 0, +1}`` with a threshold ``Δ`` (Ternary Weight
  Networks, Li et al. 2016), Larq's ``SteTern``;
* :func:`dorefa` — DoReFa-Net's ``k``-bit quantizer (Zhou et al. 2016, §2.3) for
  activations (``[0, 1]``) or weights (``[-1, 1]``), Larq's ``DoReFa``.

Both are ``jax.custom_vjp`` functions with their hyper-parameters as
non-differentiable keyword arguments (Python scalars, hashed by JAX); the output keeps
the input dtype. Bad hyper-parameters raise ``ValueError`` naming the quantizer and
the hyper-parameter.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from bnnjax.quant.sign import _compute_dtype
from bnnjax.quant.sign import _is_number
from bnnjax.quant.sign import check_clip
from bnnjax.quant.sign import clipped_gradient

DOREFA_MODES = ("activations", "weights")
# 2^16 levels: n·u and its rounding are exact enough in float32, the table is small.
MAX_K_BIT = 16


# --------------------------------------------------------------------------- ste_tern
def _twn_threshold(x):
  """TWN's ``Δ = 0.7 · Σ|x| / n`` over the whole tensor (Larq's order of operations),
  accumulated in at least float32."""
  xf = x.astype(_compute_dtype(x.dtype))
  return 0.7 * jnp.sum(jnp.abs(xf)) / x.size


def _tern(x, threshold, twn):
  # Larq's formula, literally: sign(sign(x + Δ) + sign(x − Δ)) with Δ in x's dtype, so
  # |x| = Δ goes to ±1 and, for Δ = 0, x = 0 to 0.
  delta = (_twn_threshold(x) if twn else jnp.asarray(threshold)).astype(x.dtype)
  return jnp.sign(jnp.sign(x + delta) + jnp.sign(x - delta))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _ste_tern(x, threshold, twn, clip):
  return _tern(x, threshold, twn)


def _ste_tern_fwd(x, threshold, twn, clip):
  return _tern(x, threshold, twn), x


def _ste_tern_bwd(threshold, twn, clip, x, g):
  return (clipped_gradient(x, g, clip),)


_ste_tern.defvjp(_ste_tern_fwd, _ste_tern_bwd)


def ste_tern(x: ArrayLike, threshold: float = 0.05, ternary_weight_networks: bool = False,
             clip: float | None = 1.0) -> jax.Array:
  """Ternarization with a threshold ``Δ`` and the clipped straight-through estimator.

  Forward ``sign(sign(x + Δ) + sign(x − Δ))``, that is ``+1`` for ``x >= Δ``, ``0`` for
  ``|x| < Δ`` and ``−1`` for ``x <= −Δ`` (``Δ > 0``; with ``Δ = 0`` it is ``sign(x)``
  with ``0 ↦ 0``). ``Δ = threshold``, or with ``ternary_weight_networks=True`` TWN's
  rule ``Δ = 0.7 · mean|x|`` over the whole tensor (Li et al. 2016; the rule assumes
  normally distributed weights). ``Δ`` is compared in the input dtype, as in
  Larq. Backward ``g · 1{|x| <= clip}`` (``Δ`` gets no gradient). Larq:
  ``SteTern(threshold_value, ternary_weight_networks, clip_value)``.

  >>> ste_tern(jnp.array([-0.5, -0.05, 0.0, 0.04, 0.05, 0.5]))
  Array([-1., -1.,  0.,  0.,  1.,  1.], dtype=float32)
  """
  if not _is_number(threshold) or not threshold >= 0 or threshold == float("inf"):
    raise ValueError(f"ste_tern: threshold={threshold!r}; allowed values are finite "
                     "numbers >= 0.")
  if not isinstance(ternary_weight_networks, bool):
    raise ValueError(f"ste_tern: ternary_weight_networks={ternary_weight_networks!r}; "
                     "allowed values are True or False.")
  return _ste_tern(jnp.asarray(x), float(threshold), ternary_weight_networks,
                   check_clip("ste_tern", clip))


# ----------------------------------------------------------------------------- dorefa
def _quantize_unit(u, n):
  """DoReFa's ``quantize_k(u) = round(n·u) / n`` on ``[0, 1]``, ``n = 2^k − 1``
  (``round`` halves to even, as ``tf.round``).

  ``i / n`` is looked up in a table of the correctly rounded quotients: XLA turns a
  division by a constant into a multiplication by ``1/n``, which is an ulp off for
  some ``i`` (``7 · fl(1/7) = 1.0000001``), so the top level would not be 1. NaN stays
  NaN.
  """
  levels = jnp.asarray(np.arange(n + 1, dtype=np.float64) / n, u.dtype)
  i = jnp.round(u * n)
  q = jnp.take(levels, jnp.clip(jnp.nan_to_num(i), 0, n).astype(jnp.int32))
  return jnp.where(jnp.isnan(u), u, q)


def _dorefa(x, k_bit, mode):
  """Forward values in the compute dtype and what the backward pass needs."""
  n = 2 ** k_bit - 1
  xf = x.astype(_compute_dtype(x.dtype))
  if mode == "activations":
    return _quantize_unit(jnp.clip(xf, 0.0, 1.0), n), None
  t = jnp.tanh(xf)
  m = jnp.max(jnp.abs(t))  # a constant (stop-gradient), as in Larq
  # divide_no_nan: an all-zero kernel is not normed (t / (2m) := 0).
  u = jnp.where(m == 0, 0.0, t / jnp.where(m == 0, 1.0, 2 * m)) + 0.5
  return 2 * _quantize_unit(u, n) - 1, (t, m)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _dorefa_q(x, k_bit, mode):
  return _dorefa(x, k_bit, mode)[0].astype(x.dtype)


def _dorefa_fwd(x, k_bit, mode):
  y, res = _dorefa(x, k_bit, mode)
  return y.astype(x.dtype), (x, res)


def _dorefa_bwd(k_bit, mode, res, g):
  x, aux = res
  if mode == "activations":
    # d clip(x, 0, 1) / dx, the boundaries included (tf.clip_by_value's gradient).
    return (jnp.where((x >= 0) & (x <= 1), g, jnp.zeros_like(g)),)
  t, m = aux
  # d/dx [2·(tanh(x) / (2m) + 1/2) − 1] = (1 − tanh²(x)) / m; 0 when m = 0.
  d = jnp.where(m == 0, 0.0, (1 - t * t) / jnp.where(m == 0, 1.0, m))
  return ((g.astype(d.dtype) * d).astype(g.dtype),)


_dorefa_q.defvjp(_dorefa_fwd, _dorefa_bwd)


def dorefa(x: ArrayLike, k_bit: int = 2, mode: str = "activations") -> jax.Array:
  """DoReFa-Net's ``k``-bit quantizer (Zhou et al. 2016, §2.3), Larq's
  ``DoReFa(k_bit, mode)``.

  With ``n = 2^k − 1`` and ``quantize_k(u) = round(n·u) / n`` (half to even) forward

  * ``mode="activations"``: ``quantize_k(clip(x, 0, 1))``, ``2^k`` levels in ``[0, 1]``;
    backward ``g · 1{0 <= x <= 1}``;
  * ``mode="weights"``: ``2 · quantize_k(tanh(x) / (2·max|tanh(x)|) + 1/2) − 1``,
    ``2^k`` levels in ``[−1, 1]``, the largest ``|tanh(x)|`` of the tensor mapped to
    ``±1``; backward ``g · (1 − tanh²(x)) / max|tanh(x)|`` (``round`` passes the
    gradient, the max is a constant; an all-zero tensor is not normed and gets 0).

  Computed in at least float32; the result is rounded once to the input dtype.

  >>> dorefa(jnp.array([-0.5, 0.2, 0.5, 1.5]), k_bit=2)
  Array([0.        , 0.33333334, 0.6666667 , 1.        ], dtype=float32)
  """
  if not _is_number(k_bit) or int(k_bit) != k_bit or not 1 <= k_bit <= MAX_K_BIT:
    raise ValueError(f"dorefa: k_bit={k_bit!r}; allowed values are integers 1..{MAX_K_BIT}.")
  if mode not in DOREFA_MODES:
    raise ValueError(f"dorefa: mode={mode!r}; allowed values are {list(DOREFA_MODES)}.")
  return _dorefa_q(jnp.asarray(x), int(k_bit), mode)
