"""Training diagnostics of binary networks: flip ratio, saturation, gradient/update norms.

Pure functions of parameter pytrees, meant to be called from a training step (they
trace under ``jax.jit``) and logged as scalars:

* :func:`flip_ratio` — Larq's ``FlipRatio`` metric: the fraction of binary weights
  whose sign changed between two parameter states. A healthy BNN flips a small and
  shrinking fraction; a ratio stuck near 0 means the latent weights stopped moving
  across zero, a ratio near 0.5 means they change at random.
* :func:`saturation` — the fraction of latent weights outside the clip range
  ``|w| > clip`` of the straight-through estimator (``ste_sign``'s gradient is
  ``1{|w| <= clip}``, SPEC §1): saturated weights receive no gradient through the sign.
* :func:`tree_norms` — global and per-layer L2 norms of a gradient or update pytree.
* :func:`training_diagnostics` — all of them as one flat ``{metric name: scalar}``.

Parameters are NNX pytrees: an ``nnx.State`` (e.g. ``params`` from
``nnx.split(model, nnx.Param, ...)``, or the gradients/updates with the same
structure), or a model (its ``nnx.Param`` state is taken). Binary weights are
selected by type — ``LatentWeight`` leaves — never by name. A leaf's name is its path
joined with ``/``, e.g. ``"blocks/0/unit1/conv/kernel"``; a *layer* is the module
that holds the variables (``"blocks/0/unit1/conv"``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from bnnjax.nn.layers import LatentWeight


def _key_str(k) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _variables(tree, argname: str) -> list[tuple[str, Any]]:
  """``[(path, leaf)]`` with ``nnx.Variable`` objects kept as leaves."""
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree, nnx.Param)
  leaves = jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
  if not leaves:
    raise ValueError(f"{argname} holds no arrays.")
  return [("/".join(_key_str(k) for k in path), leaf) for path, leaf in leaves]


def _array(leaf) -> jax.Array:
  return jnp.asarray(leaf.get_value() if isinstance(leaf, nnx.Variable) else leaf)


def latent_weights(params, *, argname: str = "params") -> dict[str, jax.Array]:
  """The ``LatentWeight`` leaves of ``params`` as ``{path: array}``.

  Args:
    params: an ``nnx.State`` / pytree holding ``nnx.Variable`` leaves, or an
      ``nnx.Module``. A pure dict of arrays (``State.to_pure_dict()``) has lost the
      variable types and cannot be used.
    argname: the argument name used in error messages.

  Returns:
    An empty dict for a model without binary weights (e.g. full precision).
  """
  return {p: _array(v) for p, v in _variables(params, argname)
          if isinstance(v, LatentWeight)}


def _require_latent(params, argname: str) -> dict[str, jax.Array]:
  latent = latent_weights(params, argname=argname)
  if not latent:
    raise ValueError(
        f"{argname} holds no LatentWeight leaves: the model has no binary weights "
        "(full precision), or the variable types were lost (pass an nnx.State, not "
        "State.to_pure_dict()). Check with bnnjax.analysis.latent_weights(params).")
  return latent


def _sign(x: jax.Array) -> jax.Array:
  # SPEC convention: sign(0) = +1, as the quantizers binarise.
  return x >= 0


def _count(mask: jax.Array) -> jax.Array:
  """``#{mask}`` as float32. XLA:CPU sums floats vectorised but booleans and integers
  element by element (8.5 ms against 3.3 ms for a 3×3×512×512 kernel), and these counts
  run in every training step. Exact up to 2^24 elements per layer; beyond, a relative
  error of about 1e-7 in a ratio."""
  return jnp.sum(jnp.where(mask, jnp.float32(1), jnp.float32(0)))


def flip_ratio(old_params, new_params) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Fraction of binary weights whose sign changed between two parameter states.

  Larq's ``FlipRatio``: ``#{i : sign(w_old_i) ≠ sign(w_new_i)} / #{i}``, over the
  ``LatentWeight`` leaves, with ``sign(0) = +1`` (SPEC §1).

  Args:
    old_params: parameters before (``nnx.State`` or model).
    new_params: parameters after, with the same structure.

  Returns:
    ``(total, per_layer)``: the ratio over all binary weights (float32 scalar), and
    ``{kernel path: ratio}`` per binarised kernel.

  Raises:
    ValueError: either argument has no ``LatentWeight`` leaves, or their binary
      weights differ in paths or shapes.
  """
  old = _require_latent(old_params, "old_params")
  new = _require_latent(new_params, "new_params")
  if old.keys() != new.keys():
    raise ValueError(
        "old_params and new_params have different LatentWeight paths: "
        f"{sorted(old.keys() ^ new.keys())}.")
  per_layer, flipped, count = {}, 0, 0
  for path, w_old in old.items():
    w_new = new[path]
    if w_old.shape != w_new.shape:
      raise ValueError(f"{path}: old_params has shape {w_old.shape}, new_params "
                       f"{w_new.shape}.")
    changed = _count(_sign(w_old) != _sign(w_new))
    per_layer[path] = (changed / w_old.size).astype(jnp.float32)
    flipped = flipped + changed
    count += w_old.size
  return (flipped / count).astype(jnp.float32), per_layer


def saturation(params, *, clip: float = 1.0, inclusive: bool = False
               ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Fraction of latent weights outside the clip range, ``|w| > clip``.

  These are the weights the clipped straight-through estimator gives no gradient
  (``ste_sign``: ``g·1{|w| <= clip}``, SPEC §1).

  Args:
    params: ``nnx.State`` or model.
    clip: the clip range (1.0, Larq's and XNOR-Net's default); must be > 0.
    inclusive: count ``|w| >= clip`` instead, i.e. also weights pinned at the bound
      (useful when the trainer clips latent weights to ``±clip``, so that none can be
      strictly outside).

  Returns:
    ``(total, per_layer)`` as :func:`flip_ratio`.

  Raises:
    ValueError: no ``LatentWeight`` leaves, or ``clip <= 0``.
  """
  if not clip > 0:
    raise ValueError(f"clip={clip!r}; allowed values are > 0.")
  latent = _require_latent(params, "params")
  per_layer, outside, count = {}, 0, 0
  for path, w in latent.items():
    mask = jnp.abs(w) >= clip if inclusive else jnp.abs(w) > clip
    n = _count(mask)
    per_layer[path] = (n / w.size).astype(jnp.float32)
    outside = outside + n
    count += w.size
  return (outside / count).astype(jnp.float32), per_layer


def tree_norms(tree, *, argname: str = "tree") -> tuple[jax.Array, dict[str, jax.Array]]:
  """Global and per-layer L2 norms of a pytree of gradients, updates or parameters.

  ``global = sqrt(Σ_leaves ||x||²)`` (``optax.global_norm``); a layer's norm is the
  same sum over the variables of one module (kernel, bias, Γ factors, ...), keyed by
  the module's path (the leaf path without its last element).

  Args:
    tree: ``nnx.State`` (e.g. the gradient of a loss with respect to ``params``, or
      an optimizer's updates), or a model (its ``nnx.Param`` state).
    argname: the argument name used in error messages.
  """
  sq: dict[str, jax.Array] = {}
  for path, leaf in _variables(tree, argname):
    x = _array(leaf)
    layer = path.rsplit("/", 1)[0] if "/" in path else path
    s = jnp.sum(jnp.square(x.astype(jnp.float32)))
    sq[layer] = sq[layer] + s if layer in sq else s
  total = jnp.sqrt(sum(sq.values()))
  return total, {k: jnp.sqrt(v) for k, v in sq.items()}


def training_diagnostics(old_params, new_params, grads=None, updates=None, *,
                         clip: float = 1.0, inclusive: bool = False,
                         per_layer: bool = True) -> dict[str, jax.Array]:
  """Every diagnostic of one step as a flat ``{name: scalar}`` dict for a metric writer.

  Names: ``flip_ratio``, ``saturation`` (of ``new_params``), ``grad_norm``,
  ``update_norm``, and with ``per_layer`` also ``flip_ratio/<kernel path>``,
  ``saturation/<kernel path>``, ``grad_norm/<layer path>``,
  ``update_norm/<layer path>``. Flip ratio and saturation are left out when the model
  has no binary weights; the norms when ``grads``/``updates`` are ``None``.

  Args:
    old_params: parameters before the step.
    new_params: parameters after the step (after any latent clipping).
    grads: gradients of the loss with respect to ``old_params``, or ``None``.
    updates: the optimizer's updates, or ``None``.
    clip: clip range for :func:`saturation`.
    inclusive: see :func:`saturation`.
    per_layer: also return the per-layer values.
  """
  out: dict[str, jax.Array] = {}

  def put(name, result):
    total, layers = result
    out[name] = total
    if per_layer:
      out.update({f"{name}/{k}": v for k, v in layers.items()})

  if latent_weights(new_params, argname="new_params"):
    put("flip_ratio", flip_ratio(old_params, new_params))
    put("saturation", saturation(new_params, clip=clip, inclusive=inclusive))
  if grads is not None:
    put("grad_norm", tree_norms(grads, argname="grads"))
  if updates is not None:
    put("update_norm", tree_norms(updates, argname="updates"))
  return out
