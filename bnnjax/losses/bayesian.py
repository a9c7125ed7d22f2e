"""BONN's Bayesian kernel and feature losses (Gu et al., BONN, Eqs. 7-10; docs/bonn.md).

Pure functions in optax style: keyword-only hyper-parameters, no ``λ/2`` or ``θ/2``
inside (the caller weights them), the feature loss per example (the caller reduces).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from bnnjax.quant.sign import sign


def _modulation_for(kernel: jax.Array, modulation: jax.Array) -> jax.Array:
  """Broadcasts ``modulation`` over a kernel: conv ``(kh, kw)`` over channels,
  dense ``(d_in,)`` over outputs, or a scalar."""
  if modulation.ndim == 0:
    return modulation
  if kernel.ndim == 4 and modulation.shape == kernel.shape[:2]:
    return modulation[:, :, None, None]
  if kernel.ndim == 2 and modulation.shape == kernel.shape[:1]:
    return modulation[:, None]
  raise ValueError(
      f"modulation of shape {modulation.shape} does not fit a kernel of shape "
      f"{kernel.shape}: use (kh, kw) for a conv kernel, (d_in,) for a dense one, or a "
      "scalar.")


def bayesian_kernel_loss(kernel: ArrayLike, modulation: ArrayLike, mu: ArrayLike,
                         log_sigma: ArrayLike, *, nu: float) -> jax.Array:
  """BONN's Bayesian kernel loss of one layer (seed Eq. 7/9 without ``λ/2``).

  ``L = Σ_i [ ||k̂_i − w ∘ k_i||² + ν Σ_{k∈k_i, k≥0} (k − μ_i)²/σ_i²
  + ν Σ_{k∈k_i, k<0} (k + μ_i)²/σ_i² + ν · D_i · log σ_i² ]``

  where ``i`` runs over the filters (last axis), ``k̂ = stop_gradient(sign(k))`` with
  ``sign(0) = +1`` (so ``k = 0`` belongs to the ``k ≥ 0`` mode), ``σ = exp(log_sigma)``
  and ``D_i`` the number of elements of filter ``i``. The second and third terms are
  the negative log-likelihood of a two-mode Gaussian mixture at ``±μ_i``; they pull
  the latent weights toward two modes.

  Args:
    kernel: latent kernel, conv ``(kh, kw, c_in, c_out)`` or dense ``(d_in, d_out)``.
    modulation: ``w``; shape ``(kh, kw)`` (conv, broadcast over channels), ``(d_in,)``
      (dense, broadcast over outputs) or a scalar.
    mu: ``(c_out,)`` mode centres ``μ_i``.
    log_sigma: ``(c_out,)`` ``log σ_i``.
    nu: ``ν``, weight of the prior terms.

  Returns:
    A scalar.
  """
  kernel = jnp.asarray(kernel)
  w = _modulation_for(kernel, jnp.asarray(modulation))
  mu = jnp.asarray(mu)
  log_sigma = jnp.asarray(log_sigma)
  c_out = kernel.shape[-1]
  for name, v in (("mu", mu), ("log_sigma", log_sigma)):
    if v.shape != (c_out,):
      raise ValueError(f"{name} must have shape ({c_out},), got {v.shape}.")
  k_hat = jax.lax.stop_gradient(sign(kernel))
  reconstruction = jnp.sum((k_hat - w * kernel) ** 2)
  diff = jnp.where(kernel >= 0, kernel - mu, kernel + mu)
  prior = jnp.sum(diff ** 2 * jnp.exp(-2.0 * log_sigma))
  d_i = kernel.size // c_out
  log_det = d_i * jnp.sum(2.0 * log_sigma)
  return reconstruction + nu * (prior + log_det)


def bayesian_feature_loss(features: ArrayLike, labels: ArrayLike, centers: ArrayLike,
                          log_sigma: ArrayLike) -> jax.Array:
  """BONN's Bayesian feature loss per example (seed Eq. 8 without ``θ/2``).

  ``L_m = ||f_m − c_{y_m}||² + Σ_n [ (f_{m,n} − c_{y_m,n})² / σ²_{y_m,n} + log σ²_{y_m,n} ]``

  Args:
    features: ``(batch, dim)`` features entering the classifier.
    labels: ``(batch,)`` integer classes.
    centers: ``(num_classes, dim)`` class centres ``c``.
    log_sigma: ``(num_classes, dim)`` ``log σ``.

  Returns:
    ``(batch,)`` values.
  """
  features = jnp.asarray(features)
  centers = jnp.asarray(centers)
  log_sigma = jnp.asarray(log_sigma)
  if centers.shape != log_sigma.shape or centers.shape[1:] != features.shape[1:]:
    raise ValueError(
        f"centers {centers.shape} and log_sigma {log_sigma.shape} must both be "
        f"(num_classes, {features.shape[-1]}).")
  c = centers[labels]
  ls = log_sigma[labels]
  d2 = (features - c) ** 2
  return jnp.sum(d2, axis=-1) + jnp.sum(d2 * jnp.exp(-2.0 * ls) + 2.0 * ls, axis=-1)


def update_centers(centers: ArrayLike, features: ArrayLike, labels: ArrayLike,
                   rate: float) -> jax.Array:
  """Center-loss update of the class centres (Wen et al. 2016;
  docs/bonn.md#bayesian-feature-loss).

  ``c_j ← c_j − a · Σ_m 1{y_m = j} (c_j − f_m) / (1 + Σ_m 1{y_m = j})``

  Classes absent from the batch stay exactly unchanged. No gradient flows through the
  result (``features`` are taken under ``stop_gradient``).
  """
  centers = jnp.asarray(centers)
  features = jax.lax.stop_gradient(jnp.asarray(features))
  onehot = jax.nn.one_hot(labels, centers.shape[0], dtype=centers.dtype)
  counts = jnp.sum(onehot, axis=0)[:, None]
  sums = onehot.T @ features.astype(centers.dtype)
  delta = (counts * centers - sums) / (1.0 + counts)
  return centers - rate * delta
