"""Bop, the binary optimizer (Helwegen et al. 2019, *Latent Weights Do Not Exist:
Rethinking Binarized Neural Network Optimization*, Algorithm 2; docs/bop.md), as an
optax ``GradientTransformation``.

Bop trains binary weights without latent weights. It keeps an exponential moving
average ``m`` of each weight's gradient, with adaptivity rate ``γ``, and flips a weight
when that average is strong (``|m| > τ``) and points the same way as the weight (a step
``w − m`` would cross zero)::

    m_t = (1 − γ) m_{t−1} + γ g_t                      (written m + γ (g − m), as Larq)
    w_t = −w_{t−1}  if |m_t| > τ and sign(m_t) = sign(w_{t−1}),  else  w_{t−1}

This is Larq's ``larq.optimizers.Bop`` (``var_t = sign(−sign(var·m_t − τ)·var)``) for
weights that are ±1, with ``sign(0) = +1`` (docs/sign.md#the-forward-pass). Two cases
Larq leaves to the magnitude of ``var``, where :func:`bop` follows the paper's rule on
the binary weight ``sign(w)`` instead:

* a weight that is not ±1 (a float kernel before its first update) is compared by its
  sign: it flips iff ``sign(w)·m > τ`` (Larq compares ``w·m > τ``), and the update
  returns it as ``±1``, i.e. ``w_new = sign(w)`` or ``−sign(w)``;
* ``sign(w)·m = τ`` exactly keeps the weight (the paper's strict ``|m| > τ``; Larq's
  ``sign(0) = +1`` would set it to +1).

The update optax returns is ``w_new − w``, so ``optax.apply_updates`` gives ``w_new``:
exactly ``∓w`` for ±1 weights, and ``±1`` up to one rounding for a float weight (then
exact from the next update on). :mod:`bnnjax.train.optim` routes a model's
``LatentWeight`` kernels here when ``config.kernel_optimizer = "bop"``; the trainer
sets those kernels to ``sign(w)`` before the first step, so they are ±1 throughout.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

# Larq's defaults (``larq.optimizers.Bop(threshold=1e-8, gamma=1e-4)``), also the
# paper's CIFAR-10 (§5.2) and ImageNet (§5.3) values.
DEFAULT_GAMMA = 1e-4
DEFAULT_THRESHOLD = 1e-8


class BopState(NamedTuple):
  """Bop's state: ``count``, the number of updates so far (the step of the ``γ`` and
  ``τ`` schedules), and ``m``, the moving average of the gradients (same structure as
  the parameters)."""
  count: jax.Array
  m: Any


def _check(name: str, value, *, lo: float, lo_strict: bool, hi: float | None) -> None:
  if callable(value):
    return
  ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
        and math.isfinite(value) and (value > lo if lo_strict else value >= lo)
        and (hi is None or value <= hi))
  if not ok:
    allowed = f"numbers {'>' if lo_strict else '>='} {lo}"
    allowed += f" and <= {hi}" if hi is not None else ""
    raise ValueError(f"{name}={value!r}; allowed values are {allowed}, or an optax "
                     "schedule (a function of the step).")


def _sign(x: jax.Array) -> jax.Array:
  """``sign(x)`` with ``sign(0) = +1``, in ``x``'s dtype."""
  one = jnp.ones((), x.dtype)
  return jnp.where(x >= 0, one, -one)


def flip_mask(w: jax.Array, m: jax.Array, threshold) -> jax.Array:
  """Where Bop flips: ``|m| > τ`` and ``sign(m) = sign(w)``, i.e. ``sign(w)·m > τ``
  (``sign(0) = +1``; for ``τ >= 0`` the two forms are the same)."""
  return _sign(w) * m > threshold


def bop(gamma: float | optax.Schedule = DEFAULT_GAMMA,
        threshold: float | optax.Schedule = DEFAULT_THRESHOLD
        ) -> optax.GradientTransformation:
  """Bop (Helwegen et al. 2019, Algorithm 2; Larq's ``Bop``) as an optax transformation.

  ``m ← m + γ(g − m)``, then ``w ← −w`` where ``|m| > τ`` and ``sign(m) = sign(w)``,
  else ``w ← sign(w)`` (``sign(0) = +1``). The returned update is ``w_new − w``.

  Args:
    gamma: the adaptivity rate ``γ`` in ``(0, 1]``, or an optax schedule of the step
      (the number of updates before this one). Larq's default 1e-4.
    threshold: the threshold ``τ >= 0``, or a schedule. Larq's default 1e-8.

  Returns:
    An ``optax.GradientTransformation`` whose ``update(grads, state, params)`` needs
    ``params``.

  Raises:
    ValueError: ``gamma`` or ``threshold`` out of range (naming the argument).

  >>> import jax.numpy as jnp
  >>> tx = bop(gamma=0.5, threshold=0.1)
  >>> w = jnp.array([1., 1., -1., -1.])
  >>> u, s = tx.update(jnp.array([0.4, -0.4, 0.4, -0.4]), tx.init(w), w)
  >>> w + u, s.m   # m = 0.5·g: flips where m agrees with w by more than 0.1
  (Array([-1.,  1., -1.,  1.], dtype=float32), Array([ 0.2, -0.2,  0.2, -0.2], dtype=float32))
  """
  _check("gamma", gamma, lo=0.0, lo_strict=True, hi=1.0)
  _check("threshold", threshold, lo=0.0, lo_strict=False, hi=None)

  def value(hyper, count):
    return hyper(count) if callable(hyper) else hyper

  def init_fn(params):
    return BopState(count=jnp.zeros([], jnp.int32),
                    m=jax.tree.map(jnp.zeros_like, params))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("bop's update needs params: tx.update(grads, state, params).")
    g = value(gamma, state.count)
    tau = value(threshold, state.count)
    m = jax.tree.map(lambda m, x: m + (g * (x - m)).astype(m.dtype), state.m, updates)

    def step(w, m):
      s = _sign(w)
      w_new = jnp.where(flip_mask(w, m, tau), -s, s)
      return w_new - w

    new_updates = jax.tree.map(step, params, m)
    return new_updates, BopState(count=optax.safe_increment(state.count), m=m)

  return optax.GradientTransformation(init_fn, update_fn)


def binarize(w: jax.Array) -> jax.Array:
  """``sign(w)`` (``sign(0) = +1``): a latent kernel as the ±1 weights Bop trains."""
  return _sign(jnp.asarray(w))


def binarize_kernels(params):
  """``params`` with every ``LatentWeight`` (the binary kernels) set to ``sign(w)``:
  the ±1 weights Bop starts from. Other variables are returned as they are.

  Binarising does not change the forward pass of a sign-quantized kernel
  (``sign(sign(w)) = sign(w)``), only the scales computed from the kernel's magnitude
  (XNOR-Net's ``α = mean|W|`` becomes 1); learned scales (XNOR-Net++'s Γ) keep the
  value they were initialised with from the float kernel.
  """
  from flax import nnx
  from bnnjax.nn.layers import LatentWeight

  def one(v):
    return v.replace(binarize(v.get_value())) if isinstance(v, LatentWeight) else v
  return jax.tree.map(one, params, is_leaf=lambda x: isinstance(x, nnx.Variable))
