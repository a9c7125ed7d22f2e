"""What the trainer measures about binary weights: per-step diagnostics and latent
histograms.

Per-step diagnostics are pure functions of parameter pytrees, called from the training
step (they trace under ``jax.jit``) and logged as scalars:

* :func:`flip_ratio` — Larq's ``FlipRatio`` metric: the fraction of binary weights
  whose sign changed between two parameter states. A healthy BNN flips a small and
  shrinking fraction; a ratio stuck near 0 means the latent weights stopped moving
  across zero, a ratio near 0.5 means they change at random.
* :func:`saturation` — the fraction of latent weights outside the clip range
  ``|w| > clip`` of the straight-through estimator (``ste_sign``'s gradient is
  ``1{|w| <= clip}``, docs/sign.md#straight-through-gradients): saturated weights
  receive no gradient through the sign.
* :func:`tree_norms` — global and per-layer L2 norms of a gradient or update pytree.
* :func:`training_diagnostics` — all of them as one flat ``{metric name: scalar}``.

Parameters are NNX pytrees: an ``nnx.State`` (e.g. ``params`` from
``nnx.split(model, nnx.Param, ...)``, or the gradients/updates with the same
structure), or a model (its ``nnx.Param`` state is taken). Binary weights are
selected by type — ``LatentWeight`` leaves — never by name. A leaf's name is its path
joined with ``/`` (:func:`bnnjax.tree_paths.path_name`), e.g.
``"blocks/0/unit1/conv/kernel"``; a *layer* is the module that holds the variables
(``"blocks/0/unit1/conv"``).

Latent histograms (BONN Figs. 3-4), on host numpy: every ``histogram_every_steps`` the
trainer appends :func:`histogram_record` to ``latent_histograms.jsonl`` and at the end
draws :func:`plot_latent_histograms`. BONN's kernel loss pulls latent weights toward a
mixture of two Gaussians at ``±μ``; each record says how far that went:

- :func:`two_mode_fit`: a symmetric two-component Gaussian mixture ``½N(m, s²) +
  ½N(−m, s²)`` fitted by EM; its Ashman's D ``= 2m/s`` is > 2 for cleanly separated
  modes and near 1.6 for a single Gaussian fitted this way.
- :func:`mode_mass`: the fraction of weights with ``|k|`` within ``rel_width·μ_i`` of
  their filter's ``μ_i``.

:mod:`bnnjax.analysis` exports these functions too.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from bnnjax.nn.layers import LatentWeight
from bnnjax.tree_paths import path_name


def _variables(tree, argname: str) -> list[tuple[str, Any]]:
  """``[(path, leaf)]`` with ``nnx.Variable`` objects kept as leaves."""
  if isinstance(tree, nnx.Module):
    tree = nnx.state(tree, nnx.Param)
  leaves = jax.tree_util.tree_leaves_with_path(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable))
  if not leaves:
    raise ValueError(f"{argname} holds no arrays.")
  return [(path_name(path), leaf) for path, leaf in leaves]


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
  # sign(0) = +1, as the quantizers binarise (docs/sign.md#the-forward-pass).
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
  ``LatentWeight`` leaves, with ``sign(0) = +1`` (docs/sign.md#the-forward-pass).

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
  (``ste_sign``: ``g·1{|w| <= clip}``, docs/sign.md#straight-through-gradients).

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


# ------------------------------------------------------------------ latent histograms
def two_mode_fit(x, iterations: int = 100) -> dict[str, float]:
  """EM fit of ``½N(m, s²) + ½N(−m, s²)`` to the values of ``x``.

  Returns ``{"m": m, "s": s, "ashman_d": 2m/s}``.
  """
  x = np.asarray(x, np.float64).ravel()
  m = float(np.mean(np.abs(x)))
  s = float(np.std(x)) or 1e-12
  for _ in range(iterations):
    # responsibility of the +m component: sigmoid(2 m x / s²)
    r = 0.5 * (1.0 + np.tanh(m * x / s ** 2))
    m = float(np.mean((2.0 * r - 1.0) * x))
    s = float(np.sqrt(np.mean(r * (x - m) ** 2 + (1.0 - r) * (x + m) ** 2))) or 1e-12
  m = abs(m)
  return {"m": m, "s": s, "ashman_d": 2.0 * m / s}


def mode_mass(kernel, mu=None, rel_width: float = 0.5) -> float:
  """Fraction of weights with ``| |k| − μ_i | ≤ rel_width · μ_i`` (``μ_i`` per filter,
  last axis; default ``mean|k_i|``)."""
  k = np.asarray(kernel, np.float64)
  k = k.reshape(-1, k.shape[-1])
  mu = np.mean(np.abs(k), axis=0) if mu is None else np.asarray(mu, np.float64)
  return float(np.mean(np.abs(np.abs(k) - mu) <= rel_width * mu))


def bimodality(kernel, mu=None) -> dict[str, float]:
  """Both measures for one layer: ``ashman_d``, ``m``, ``s`` and ``mode_mass``."""
  return {**two_mode_fit(kernel), "mode_mass": mode_mass(kernel, mu)}


def histogram_record(step: int, layers: Iterable[tuple[str, np.ndarray]],
                     bins: int = 81) -> dict:
  """One JSON-able record: per layer the histogram of its latent weights, on bins
  symmetric around 0 spanning ``±4·std`` of the weights at this step."""
  out = {"step": int(step), "layers": {}}
  for name, k in layers:
    k = np.asarray(k, np.float64).ravel()
    r = 4.0 * float(np.std(k)) or 1.0
    counts, edges = np.histogram(k, bins=bins, range=(-r, r))
    out["layers"][name] = {"counts": counts.tolist(), "range": r,
                           **{k_: round(v, 6) for k_, v in bimodality(k).items()}}
  return out


def read_histograms(path: str) -> list[dict]:
  """The records of a ``latent_histograms.jsonl`` file (:func:`histogram_record`),
  in order."""
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def plot_latent_histograms(path: str, out_dir: str, max_layers: int = 12) -> list[str]:
  """Draws, for each layer in the histogram file ``path``, its latent-weight
  histogram at each recorded step (light to dark over training) as one PNG.

  Returns the PNG paths.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  records = read_histograms(path)
  if not records:
    raise ValueError(f"{path} holds no histogram records.")
  os.makedirs(out_dir, exist_ok=True)
  names = list(records[0]["layers"])[:max_layers]
  cmap = plt.get_cmap("viridis")
  written = []
  for name in names:
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for i, rec in enumerate(records):
      layer = rec["layers"][name]
      counts = np.asarray(layer["counts"], np.float64)
      edges = np.linspace(-layer["range"], layer["range"], len(counts) + 1)
      centres = (edges[:-1] + edges[1:]) / 2
      density = counts / max(counts.sum(), 1) / (edges[1] - edges[0])
      ax.plot(centres, density, color=cmap(i / max(len(records) - 1, 1)),
              label=f"step {rec['step']} (D={layer['ashman_d']:.2f})")
    ax.set_title(f"latent weights: {name}", fontsize=9)
    ax.set_xlabel("weight value")
    ax.set_ylabel("density")
    ax.legend(fontsize=6)
    fig.tight_layout()
    png = os.path.join(out_dir, f"latent_{name.replace('/', '.')}.png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    written.append(png)
  return written
