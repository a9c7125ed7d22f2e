"""The loss hook's registry and the l2 term against a hand computation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.train import loss_terms
from configs import common


CTX = loss_terms.LossContext(input_shape=(3,), num_classes=2, steps_per_epoch=10)


class Two(nnx.Module):
  def __init__(self):
    self.fp = nn.QuantDense(3, 2, rngs=nnx.Rngs(0))
    self.binary = nn.QuantDense(2, 2, spec=nn.method_spec("bwn"), rngs=nnx.Rngs(1))


def test_l2_term_by_type():
  model = Two()
  model.fp.kernel[...] = jnp.arange(6.0).reshape(3, 2)
  model.binary.kernel[...] = jnp.array([[1.0, -2.0], [0.5, 0.0]])
  c = common.base_config()
  c.loss_terms = {"l2": {"weight": 0.1}}
  (term,) = loss_terms.build_loss_terms(model, c, CTX)
  assert term.weight == 0.1
  assert float(term.fn(model, {}, {})) == pytest.approx(55.0 + 5.25)  # biases excluded
  latent = loss_terms.l2_term(weight=1.0, variable_type="LatentWeight")
  assert float(latent.fn(model, {}, {})) == pytest.approx(5.25)


@pytest.mark.parametrize("terms,match", [
    ({"center": {"weight": 1.0}}, "unknown term 'center'"),
    ({"l2": {}}, "needs a 'weight'"),
    ({"l2": {"weight": 1.0, "variable_type": "Foo"}}, "variable_type"),
    ({"l2": {"weight": 1.0, "bogus": 2}}, "loss_terms.l2"),
])
def test_bad_terms_name_field(terms, match):
  c = common.base_config()
  c.loss_terms = terms
  with pytest.raises(ValueError, match=match):
    loss_terms.build_loss_terms(Two(), c, CTX)


class TinyBonn(nnx.Module):
  """A conv (BONN) + dense classifier returning (logits, features) like the models."""

  def __init__(self):
    self.conv = nn.QuantConv(1, 4, 3, spec=nn.method_spec("bonn"), rngs=nnx.Rngs(0))
    self.head = nn.QuantDense(4, 3, rngs=nnx.Rngs(1))

  def __call__(self, x, *, train=False, return_features=False):
    f = self.conv(x).mean(axis=(1, 2))
    return (self.head(f), f) if return_features else self.head(f)


def test_bonn_terms_sum_layers_and_update_centres():
  from bnnjax import losses
  model = TinyBonn()
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01, center_rate=0.5)
  ctx = loss_terms.LossContext(input_shape=(5, 5, 1), num_classes=3, steps_per_epoch=10)
  feature_term, kernel_term = sorted(loss_terms.build_loss_terms(model, c, ctx),
                                     key=lambda t: t.name)
  assert kernel_term.weight == 0.5e-4 and feature_term.weight == 0.5e-3  # λ/2, θ/2
  conv = model.conv
  expected = losses.bayesian_kernel_loss(conv.kernel[...], conv.bonn_modulation[...],
                                         conv.bonn_mu[...], conv.bonn_log_sigma[...],
                                         nu=1e-4)
  assert float(kernel_term.fn(model, {}, {})) == pytest.approx(float(expected))

  x = jnp.linspace(-1, 1, 2 * 25).reshape(2, 5, 5, 1)
  batch = {"image": x, "label": jnp.array([0, 2])}
  logits, feats = model(x, return_features=True)
  prior = model.bonn_feature_prior
  assert prior.centers.shape == (3, 4) and isinstance(prior.centers, nn.ClassCenter)
  value = feature_term.fn(model, batch, {"features": feats, "step": jnp.int32(0)})
  assert float(value) == pytest.approx(float(jnp.mean(jnp.sum(feats ** 2, -1) * 2)))
  np.testing.assert_allclose(prior.centers[...],
                             losses.update_centers(jnp.zeros((3, 4)), feats, batch["label"], 0.5))
  np.testing.assert_array_equal(prior.centers[...][1], 0.0)  # absent class untouched


@pytest.mark.parametrize("normalise, count", [("sum", lambda k: 1),
                                              ("kernel_mean", lambda k: k.size // k.shape[-1]),
                                              ("layer_mean", lambda k: k.size)])
def test_kernel_term_normalisation_divides_each_layer(normalise, count):
  """bonn_kernel_normalise: the paper's sum, or L_K per layer divided by the elements
  of one filter (kh·kw·c_in) or of the whole kernel."""
  from bnnjax import losses
  model = TinyBonn()
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01, kernel_normalise=normalise)
  ctx = loss_terms.LossContext(input_shape=(5, 5, 1), num_classes=3, steps_per_epoch=10)
  term = [t for t in loss_terms.build_loss_terms(model, c, ctx)
          if t.name == "bayesian_kernel"][0]
  conv = model.conv
  k = conv.kernel[...]
  assert k.ndim == 4 and count(k) in (1, k.size // k.shape[-1], k.size)
  expected = losses.bayesian_kernel_loss(k, conv.bonn_modulation[...], conv.bonn_mu[...],
                                         conv.bonn_log_sigma[...], nu=1e-4) / count(k)
  assert float(term.fn(model, {}, {})) == pytest.approx(float(expected), rel=1e-6)


def test_kernel_term_normalisation_is_checked():
  from bnnjax.train import validation
  with pytest.raises(ValueError, match=r"bonn_kernel_normalise='mean'; allowed values "
                     r"are \['sum', 'kernel_mean', 'layer_mean'\]"):
    loss_terms.method_term("bayesian_kernel", TinyBonn(), CTX, weight=1.0,
                           normalise="mean")
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01, kernel_normalise="per_weight")
  with pytest.raises(validation.ConfigError, match="config.bonn_kernel_normalise"):
    validation.validate(c)


def test_feature_term_waits_for_start_epoch():
  model = TinyBonn()
  term = loss_terms.method_term(
      "bayesian_feature", model, loss_terms.LossContext((5, 5, 1), 3, steps_per_epoch=10),
      weight=1.0, start_epoch=2.0)
  x = jnp.ones((1, 5, 5, 1))
  feats = model(x, return_features=True)[1]
  out = lambda step: float(term.fn(model, {"label": jnp.array([1])},
                                   {"features": feats, "step": jnp.int32(step)}))
  assert out(19) == 0.0 and out(20) != 0.0


def test_kernel_term_needs_bonn_layers():
  c = common.base_config()
  c.loss_terms = {"bayesian_kernel": {"weight": 1.0}}
  with pytest.raises(ValueError, match="method='bonn'"):
    loss_terms.build_loss_terms(Two(), c, CTX)


def _one_step(terms, lr=0.01, steps=1):
  """``steps`` Adam steps of the trainer's step function on TinyBonn (fixed batch)."""
  import optax
  from bnnjax.train import parallel, trainer
  model = TinyBonn()
  model.bonn_feature_prior = None  # not attached: no feature term here
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  schedules = {"default": optax.constant_schedule(lr)}
  tx = optax.adam(schedules["default"])
  flags = [isinstance(v, nn.LatentWeight) for v in jax.tree.leaves(
      params, is_leaf=lambda x: isinstance(x, nnx.Variable))]
  groups = ["default"] * len(flags)
  mesh = parallel.make_mesh()
  step = trainer.make_train_step(graphdef, tx, terms, schedules, flags, None, mesh,
                                 leaf_groups=groups)
  state = trainer.TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))
  x = jnp.linspace(-1, 1, 4 * 25).reshape(4, 5, 5, 1)
  batch = {"image": x, "label": jnp.array([0, 2, 1, 0])}
  start = nnx.merge(graphdef, *jax.tree.map(jnp.copy, (params, rest)))  # step donates
  for _ in range(steps):
    state, metrics = step(state, batch)
  return start, nnx.merge(graphdef, state.params, state.rest), metrics


def test_decoupled_term_is_applied_at_the_learning_rate_after_adam():
  """Adam sees only the cross-entropy's gradient; the decoupled kernel loss moves each
  parameter by exactly −lr · weight · ∂L_K/∂θ on top (at θ of the step's start)."""
  weight, lr = 25.0, 0.01  # deltas ≫ the float32 spacing of the parameters
  start, plain, _ = _one_step([], lr)
  term = loss_terms.method_term("bayesian_kernel", TinyBonn(), CTX, weight=weight)
  decoupled = dataclasses.replace(term, decoupled=True)
  _, moved, metrics = _one_step([decoupled], lr)
  grads = nnx.grad(lambda m: term.fn(m, {}, {}))(start)
  for name in ("kernel", "bonn_modulation", "bonn_mu", "bonn_log_sigma"):
    got = getattr(moved.conv, name)[...] - getattr(plain.conv, name)[...]
    want = -lr * weight * getattr(grads.conv, name)[...]
    assert float(jnp.max(jnp.abs(want))) > 0, name
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7, err_msg=name)
  np.testing.assert_array_equal(moved.head.kernel[...], plain.head.kernel[...])
  # The logged objective is the whole one: CE + weight · L_K(θ at the step's start).
  assert float(metrics["loss/total"]) == pytest.approx(
      float(metrics["loss/ce"]) + weight * float(term.fn(start, {}, {})), rel=1e-5)
  # Coupled, Adam normalises the same term's gradient: a different update.
  _, coupled, _ = _one_step([term], lr)
  assert not np.allclose(coupled.conv.kernel[...], moved.conv.kernel[...], atol=1e-6)


def test_decoupled_flag_is_checked_and_needs_a_model_only_term():
  model = TinyBonn()
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01, kernel_decoupled=True)
  ctx = loss_terms.LossContext(input_shape=(5, 5, 1), num_classes=3, steps_per_epoch=10)
  terms = {t.name: t for t in loss_terms.build_loss_terms(model, c, ctx)}
  assert terms["bayesian_kernel"].decoupled and not terms["bayesian_feature"].decoupled
  c.loss_terms = {"l2": {"weight": 1.0, "decoupled": "yes"}}
  with pytest.raises(ValueError, match=r"loss_terms.l2.decoupled='yes'"):
    loss_terms.build_loss_terms(model, c, ctx)
  c.loss_terms = {"bayesian_feature": {"weight": 1.0, "decoupled": True}}
  (feature,) = loss_terms.build_loss_terms(model, c, ctx)
  with pytest.raises(ValueError, match=r"bayesian_feature.decoupled=True, but the term "
                     r"reads outputs\['features'\]"):
    loss_terms.decoupled_loss([feature], model)


def test_bonn_runs_saved_before_decoupling_resume(tmp_path):
  """A BONN config.json saved before loss terms could be decoupled (no
  ``bonn_kernel_decoupled``, no ``decoupled`` key) matches a coupled config; with
  ``bonn_kernel_decoupled=True`` (the BONN configs' default under Adam) it is refused,
  the message naming the value the old run had (False)."""
  import json
  from bnnjax.train import trainer
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01)
  old = json.loads(c.to_json_best_effort())
  del old["bonn_kernel_decoupled"], old["loss_terms"]["bayesian_kernel"]["decoupled"]
  del old["bonn_kernel_normalise"], old["loss_terms"]["bayesian_kernel"]["normalise"]
  (tmp_path / "config.json").write_text(json.dumps(old))
  assert trainer.config_differences(str(tmp_path), c) == {}
  c.bonn_kernel_normalise = "kernel_mean"  # a later field away from its old value
  assert trainer.config_differences(str(tmp_path), c)["bonn_kernel_normalise"] == (
      "sum", "kernel_mean")
  c.bonn_kernel_normalise = "sum"
  c.bonn_kernel_decoupled = True
  diff = trainer.config_differences(str(tmp_path), c)
  assert diff["bonn_kernel_decoupled"] == (False, True)
  assert diff["loss_terms"][1]["bayesian_kernel"]["decoupled"] is True


@pytest.mark.parametrize("name", ["alexnet", "nin", "vgg7"])
def test_bonn_terms_fit_every_model(name):
  """BONN's terms on the zoo models that tests/train/trainer_test.py does not train
  with them (it trains ResNet-18 and WRN): the feature prior takes the size of the
  features entering the classifier, and both terms trace to scalars through a
  train-mode forward pass (shapes only, nothing compiled)."""
  from bnnjax import models
  from bnnjax.methods import bonn
  from tests.tiny_zoo import TINY, rngs
  shape, kwargs = TINY[name]
  model = models.get_model(name, num_classes=10, input_shape=shape,
                           spec=nn.method_spec("bonn"), rngs=rngs(), **kwargs)
  c = common.base_config()
  common.add_bonn(c, w_lr=0.01)
  ctx = loss_terms.LossContext(input_shape=shape, num_classes=10, steps_per_epoch=10)
  terms = loss_terms.build_loss_terms(model, c, ctx)
  assert sorted(t.name for t in terms) == ["bayesian_feature", "bayesian_kernel"]
  assert len(bonn.layers(model)) >= 4
  graphdef, state = nnx.split(model)
  x = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
  y = jax.ShapeDtypeStruct((2,), jnp.int32)

  def values(state, x, y):
    m = nnx.merge(graphdef, state)
    logits, feats = m(x, train=True, return_features=True)
    outputs = {"logits": logits, "features": feats, "step": jnp.int32(0)}
    return feats, {t.name: t.fn(m, {"image": x, "label": y}, outputs) for t in terms}
  feats, out = jax.eval_shape(values, state, x, y)
  assert model.bonn_feature_prior.centers.shape == (10, feats.shape[-1])
  assert all(v.shape == () and v.dtype == jnp.float32 for v in out.values())
