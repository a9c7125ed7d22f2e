"""Flip ratio, saturation and norms against direct counts."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax.train import diagnostics
from bnnjax import models
from bnnjax import nn


def tiny(method="xnor"):
  return models.get_model("vgg7", num_classes=10, input_shape=(8, 8, 1),
                          spec=nn.method_spec(method),
                          rngs=nnx.Rngs(params=jax.random.key(0, impl="rbg")),
                          width_mult=1 / 32)


def split_params(model):
  return nnx.split(model, nnx.Param, ...)[1]


def perturb(params, scale, seed=0):
  """Adds noise to every leaf (LatentWeight or not)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
      treedef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def latent_arrays(params):
  leaves = jax.tree_util.tree_leaves_with_path(
      params, is_leaf=lambda x: isinstance(x, nnx.Variable))
  return {"/".join(str(k.key) for k in p): np.asarray(v.get_value())
          for p, v in leaves if isinstance(v, nn.LatentWeight)}


def test_latent_weights_selects_by_type():
  params = split_params(tiny())
  latent = diagnostics.latent_weights(params)
  # vgg7: six convs, a hidden dense and the classifier; first and last are FP.
  assert len(latent) == 6 and all(k.endswith("/kernel") for k in latent)
  assert latent.keys() == latent_arrays(params).keys()
  assert diagnostics.latent_weights(tiny()).keys() == latent.keys()  # a model works too
  assert diagnostics.latent_weights(split_params(tiny("fp"))) == {}


def test_flip_ratio_zero_without_change():
  params = split_params(tiny())
  total, per_layer = diagnostics.flip_ratio(params, params)
  assert float(total) == 0.0 and all(float(v) == 0.0 for v in per_layer.values())


def test_flip_ratio_equals_direct_count():
  old = split_params(tiny())
  new = perturb(old, 0.05)
  total, per_layer = jax.jit(diagnostics.flip_ratio)(old, new)
  a, b = latent_arrays(old), latent_arrays(new)
  flips = {k: int(np.sum((a[k] >= 0) != (b[k] >= 0))) for k in a}
  sizes = {k: a[k].size for k in a}
  assert sum(flips.values()) > 0
  for k in a:
    assert float(per_layer[k]) == pytest.approx(flips[k] / sizes[k], abs=1e-7)
  assert float(total) == pytest.approx(sum(flips.values()) / sum(sizes.values()),
                                       abs=1e-7)


def test_flip_ratio_sign_of_zero_is_plus_one():
  dense = lambda: nn.QuantDense(2, 2, spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0))
  old = nnx.state(dense(), nnx.Param)
  new = nnx.state(dense(), nnx.Param)
  old["kernel"].set_value(jnp.array([[0.0, 0.0], [-1.0, 2.0]]))
  new["kernel"].set_value(jnp.array([[0.5, -0.1], [0.0, 2.0]]))
  # 0 → 0.5: no flip; 0 → -0.1: flip; -1 → 0: flip; 2 → 2: no flip.
  total, per_layer = diagnostics.flip_ratio(old, new)
  assert float(total) == 0.5 and float(per_layer["kernel"]) == 0.5


def test_saturation_hand_count():
  model = nn.QuantDense(3, 2, spec=nn.method_spec("bwn"), rngs=nnx.Rngs(0))
  params = nnx.state(model, nnx.Param)
  params["kernel"].set_value(jnp.array([[0.2, -1.5], [1.0, -1.0], [3.0, 0.99]]))
  total, per_layer = diagnostics.saturation(params)  # |w| > 1: -1.5 and 3.0
  assert float(total) == pytest.approx(2 / 6)
  assert float(per_layer["kernel"]) == pytest.approx(2 / 6)
  total, _ = diagnostics.saturation(params, inclusive=True)  # also the two ±1.0
  assert float(total) == pytest.approx(4 / 6)
  total, _ = diagnostics.saturation(params, clip=0.5)
  assert float(total) == pytest.approx(5 / 6)
  with pytest.raises(ValueError, match="clip"):
    diagnostics.saturation(params, clip=0.0)


def test_saturation_direct_count_on_model():
  params = perturb(split_params(tiny()), 1.0, seed=3)
  total, per_layer = diagnostics.saturation(params, clip=1.0)
  arrays = latent_arrays(params)
  out = {k: int(np.sum(np.abs(a) > 1.0)) for k, a in arrays.items()}
  for k, a in arrays.items():
    assert float(per_layer[k]) == pytest.approx(out[k] / a.size, abs=1e-7)
  assert float(total) == pytest.approx(
      sum(out.values()) / sum(a.size for a in arrays.values()), abs=1e-7)


def test_tree_norms_match_optax_and_hand_sums():
  model = tiny()
  params = split_params(model)
  grads = perturb(jax.tree.map(jnp.zeros_like, params), 1.0, seed=1)
  total, per_layer = diagnostics.tree_norms(grads)
  assert float(total) == pytest.approx(float(optax.global_norm(grads)), rel=1e-5)
  leaves = jax.tree_util.tree_leaves_with_path(
      grads, is_leaf=lambda x: isinstance(x, nnx.Variable))
  hand = {}
  for path, v in leaves:
    layer = "/".join(str(k.key) for k in path[:-1])
    hand[layer] = hand.get(layer, 0.0) + float(np.sum(np.square(v.get_value())))
  assert per_layer.keys() == hand.keys()
  for k, v in hand.items():
    assert float(per_layer[k]) == pytest.approx(np.sqrt(v), rel=1e-5)


def test_training_diagnostics_in_a_jitted_step():
  model = tiny()
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adam(0.1)
  opt_state = tx.init(params)
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  y = jnp.arange(4)

  @jax.jit
  def step(params, opt_state):
    def loss(p):
      logits = nnx.merge(graphdef, p, rest)(x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    new = optax.apply_updates(params, updates)
    return new, diagnostics.training_diagnostics(params, new, grads, updates)

  new, metrics = step(params, opt_state)
  for name in ("flip_ratio", "saturation", "grad_norm", "update_norm"):
    assert name in metrics and np.isfinite(float(metrics[name]))
  assert float(metrics["flip_ratio"]) > 0  # Adam with lr 0.1 flips some signs
  latent = diagnostics.latent_weights(params)
  assert {f"flip_ratio/{k}" for k in latent} <= metrics.keys()
  assert float(metrics["flip_ratio"]) == pytest.approx(
      float(diagnostics.flip_ratio(params, new)[0]))
  short = diagnostics.training_diagnostics(params, new, per_layer=False)
  assert set(short) == {"flip_ratio", "saturation"}
  fp = split_params(tiny("fp"))
  assert diagnostics.training_diagnostics(fp, fp, per_layer=False) == {}


def test_errors_name_the_argument():
  fp = split_params(tiny("fp"))
  xnor = split_params(tiny())
  with pytest.raises(ValueError, match="old_params holds no LatentWeight"):
    diagnostics.flip_ratio(fp, xnor)
  with pytest.raises(ValueError, match="new_params holds no LatentWeight"):
    diagnostics.flip_ratio(xnor, xnor.to_pure_dict())
  with pytest.raises(ValueError, match="params holds no LatentWeight"):
    diagnostics.saturation(fp)
  other = split_params(tiny("xnor_cf_2"))
  other_paths = nnx.state(
      nn.QuantDense(2, 2, spec=nn.method_spec("xnor"), rngs=nnx.Rngs(0)), nnx.Param)
  with pytest.raises(ValueError, match="different LatentWeight paths"):
    diagnostics.flip_ratio(xnor, other_paths)
  diagnostics.flip_ratio(xnor, other)  # same structure, different method: fine
