"""Optimizers, schedules and per-group learning rates from a config."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.train import optim
from configs import common


def _params():
  layer = nn.QuantConv(2, 4, 3, spec=nn.method_spec("xnorpp_1"), rngs=nnx.Rngs(0))
  return nnx.split(layer, nnx.Param, ...)[1]


def _config(**kw):
  c = common.base_config()
  c.update(kw)
  return c


def test_schedules():
  c = _config(schedule="step", lr=0.1, decay_every_epochs=2.0, decay_factor=0.1)
  s = optim.make_schedule(c, 0.1, steps_per_epoch=10, total_steps=100)
  np.testing.assert_allclose([s(0), s(19), s(20), s(40)], [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
  c = _config(schedule="step", lr=0.1, decay_epochs=(3, 5), decay_factor=0.5)
  s = optim.make_schedule(c, 0.1, steps_per_epoch=10, total_steps=100)
  np.testing.assert_allclose([s(29), s(30), s(50)], [0.1, 0.05, 0.025], rtol=1e-6)
  c = _config(schedule="cosine", warmup_epochs=1.0)
  s = optim.make_schedule(c, 1.0, steps_per_epoch=10, total_steps=110)
  np.testing.assert_allclose([s(0), s(5), s(10), s(110)], [0.0, 0.5, 1.0, 0.0], atol=1e-6)


def test_group_learning_rates_with_multi_transform():
  params = _params()
  c = _config(optimizer="sgd", momentum=0.0, lr=0.1, schedule="constant")
  c.group_lr = {"ScaleFactor": 0.01}
  tx, schedules = optim.make_optimizer(c, params, 10, 100)
  assert set(schedules) == {"default", "ScaleFactor"}
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(updates["gamma_alpha"][...], -0.01)
  np.testing.assert_allclose(updates["kernel"][...], -0.1)


def test_weight_decay_only_on_kernels():
  params = _params()
  c = _config(optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant", weight_decay=0.5)
  tx, _ = optim.make_optimizer(c, params, 10, 100)
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  np.testing.assert_allclose(updates["kernel"][...], -0.5 * params["kernel"][...], rtol=1e-6)
  np.testing.assert_array_equal(updates["gamma_alpha"][...], 0.0)


@pytest.mark.parametrize("field,value,match", [
    ("optimizer", "rmsprop", "config.optimizer.*sgd"),
    ("schedule", "linear", "config.schedule.*cosine"),
    ("lr", 0.0, "config.lr"),
])
def test_bad_optimizer_fields(field, value, match):
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(_config(**{field: value}), _params(), 10, 100)


def test_unknown_group_names_types():
  c = _config()
  c.group_lr = {"Modulation": 0.01}
  with pytest.raises(ValueError, match="group_lr.*Modulation.*LatentWeight"):
    optim.make_optimizer(c, _params(), 10, 100)


def test_grad_clip():
  params = _params()
  c = _config(optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant", grad_clip_norm=1.0)
  tx, _ = optim.make_optimizer(c, params, 10, 100)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 10.0), params)
  updates, _ = tx.update(grads, tx.init(params), params)
  assert optax.global_norm(updates) == pytest.approx(1.0, rel=1e-5)


def test_weight_decay_reaches_kernels_only():
  """Decay shrinks kernels (float and latent) but no BN/bias parameter and none of
  the learned scales or priors, even those of rank >= 2 (Γ case 2's α, BONN's w)."""
  rngs = nnx.Rngs(0)
  layers = nnx.List([
      nn.QuantConv(2, 4, 3, spec=nn.method_spec("xnorpp_2"), input_size=(5, 5),
                   use_bias=True, rngs=rngs),
      nn.QuantConv(4, 4, 3, spec=nn.method_spec("bonn"), rngs=rngs),
      nn.QuantConv(4, 4, 3, rngs=rngs),
      nnx.BatchNorm(4, rngs=rngs)])
  params = nnx.split(layers, nnx.Param, ...)[1]
  c = _config(optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant",
              weight_decay=0.5)
  tx, _ = optim.make_optimizer(c, params, steps_per_epoch=1, total_steps=1)
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  decayed = {}
  for (path, var), (_, u) in zip(
      jax.tree.leaves_with_path(params, is_leaf=lambda x: isinstance(x, nnx.Variable)),
      jax.tree.leaves_with_path(updates, is_leaf=lambda x: isinstance(x, nnx.Variable))):
    name = "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path)
    decayed[name] = bool(np.any(np.asarray(u[...]) != 0))
    if decayed[name]:  # lr 1, decay 0.5: the update is -0.5 * the parameter
      np.testing.assert_allclose(u[...], -0.5 * var[...], rtol=1e-6)
  assert {n for n, d in decayed.items() if d} == {"0/kernel", "1/kernel", "2/kernel"}
  assert "0/gamma_alpha" in decayed and "1/bonn_modulation" in decayed
  assert "3/scale" in decayed and "0/bias" in decayed
