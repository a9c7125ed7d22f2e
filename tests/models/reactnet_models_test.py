"""The ``reactnet`` model argument (docs/reactnet.md): every model builds, runs and
back-propagates with it; RSign's shift and RPReLU sit where the docs say; a short
ReActNet run on the embedded MNIST learns."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import analysis
from bnnjax import models
from bnnjax import nn
from bnnjax.models import common
from bnnjax.models import resnet
from bnnjax.models import wrn
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import trainer
from configs import common as config_common

TINY = {
    "resnet18": ((16, 20, 3), dict(width=4)),
    "wrn22": ((16, 20, 3), dict(widths=(4, 4, 8, 8), dropout=0.3)),
    "nin": ((16, 20, 3), dict(width_mult=1 / 16)),
    "vgg7": ((16, 20, 3), dict(width_mult=1 / 32)),
    "alexnet": ((16, 20, 3), dict(width_mult=1 / 16)),
}


def rngs(seed=0):
  return nnx.Rngs(params=jax.random.key(seed, impl="rbg"),
                  dropout=jax.random.key(seed + 1, impl="rbg"))


def build(name, method="xnor", **overrides):
  shape, kwargs = TINY[name]
  return models.get_model(name, num_classes=10, input_shape=shape,
                          spec=nn.method_spec(method), rngs=rngs(),
                          **{**kwargs, **overrides})


def images(name, n=2, seed=0):
  return jax.random.normal(jax.random.key(seed), (n, *TINY[name][0]))


def modules(model, cls):
  return [m for _, m in nnx.iter_graph(model) if type(m) is cls]


def binary_input_layers(model):
  return [m for _, m in nnx.iter_graph(model)
          if isinstance(m, (nn.QuantConv, nn.QuantDense)) and m.spec.binary_input]


def reactnet_state(model):
  return nnx.state(model, nnx.Any(nn.ThresholdShift, nn.PReLUSlope))


def test_every_model_takes_the_argument_and_checks_it():
  for name in models.MODELS:
    assert "reactnet" in models.model_kwargs(name), name
  with pytest.raises(ValueError, match="reactnet='yes'; allowed values are True, False"):
    build("resnet18", reactnet="yes")


@pytest.mark.parametrize("name", [n for n in models.MODELS if n != "resnet18"])
def test_builds_runs_and_backpropagates_into_every_threshold(name):
  """A train-mode forward and backward pass (eval mode: the test below). ResNet-18's
  is the training run at the end of this file, whose every threshold must move."""
  model = build(name, reactnet=True)
  x, labels = images(name), jnp.array([1, 7])

  def loss(model):
    logits, features = model(x, train=True, return_features=True)
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(2), labels]), (logits, features)
  grad_fn = nnx.value_and_grad(loss, argnums=nnx.DiffState(0, nnx.Param), has_aux=True)
  (value, (logits, features)), grads = nnx.jit(grad_fn)(model)
  assert logits.shape == (2, 10) and features.ndim == 2 and np.isfinite(float(value))
  thresholds = nnx.Any(nn.ThresholdShift, nn.PReLUSlope)
  g_thresholds, g_params = grads.filter(thresholds), grads.filter(nnx.Not(thresholds))
  leaves = jax.tree.leaves((g_thresholds, g_params))
  assert leaves and all(bool(jnp.all(jnp.isfinite(l))) for l in leaves)
  # RSign's shift: one per binary-input layer (all hidden ones here), each with a
  # straight-through gradient; RPReLU's three parameters all learn.
  shifts = modules(model, nn.LearnableBias)
  assert len(shifts) == len(binary_input_layers(model)) > 0
  flat = jax.tree_util.tree_leaves_with_path(g_thresholds)
  assert len(flat) == len(shifts) + 3 * len(modules(model, nn.RPReLU))
  for path, grad in flat:
    assert float(jnp.max(jnp.abs(grad))) > 0, jax.tree_util.keystr(path)


def test_where_the_modules_sit():
  # ResNet-18: RPReLU after each of the 16 units' sums, a shift before each unit conv.
  r = build("resnet18", reactnet=True)
  units = [m for _, m in nnx.iter_graph(r) if isinstance(m, resnet.BiRealUnit)]
  assert len(units) == 16
  assert all(isinstance(u.rprelu, nn.RPReLU)
             and u.rprelu.beta[...].shape == (u.conv.out_features,)
             and isinstance(u.preact.shift, nn.LearnableBias) and u.preact.rprelu is None
             for u in units)
  assert r.head.shift is None and r.input_norm is None  # FP classifier and stem
  # WRN: RPReLU on each block's sum and after the inner BN; a shift before both convs.
  w = build("wrn22", reactnet=True)
  blocks = [m for _, m in nnx.iter_graph(w) if isinstance(m, wrn.WideBasicBlock)]
  assert all(b.rprelu is not None and b.preact2.rprelu is not None
             and b.preact1.rprelu is None and b.preact1.shift is not None
             and b.preact2.shift is not None for b in blocks)
  # Plain CNNs: every PreAct is BN → RPReLU (→ shift before a binary-input layer).
  v = build("vgg7", reactnet=True)
  pres = [op.pre for op in v.ops if getattr(op, "pre", None) is not None]
  assert all(p.rprelu is not None for p in pres)
  assert [p.shift is not None for p in pres] == [p.binary_input for p in pres]
  # Binarised endpoints get the shift too (RSign before *every* binary-input layer).
  q = build("resnet18", reactnet=True, quantize_first=True, quantize_last=True)
  assert q.input_norm.shift is not None and q.head.shift is not None
  # Full-precision input: no sign, no shift; RPReLU stays.
  b = build("resnet18", "bwn", reactnet=True)
  assert not modules(b, nn.LearnableBias) and len(modules(b, nn.RPReLU)) == 16


def test_preact_order():
  x = jax.random.normal(jax.random.key(3), (2, 5, 5, 4))
  shift, slope = jnp.array([0.5, -0.5, 1.0, 0.0]), jnp.array([0.1, -0.2, 0.3, 1.0])
  binary = common.PreAct(4, nn.method_spec("xnor"), rsign=True, rprelu=True, rngs=rngs())
  binary.shift.bias[...] = shift
  binary.rprelu.beta[...] = slope
  bn = binary.norm(x, use_running_average=True)
  want = jnp.where(bn > 0, bn, slope * bn) + shift  # BN → RPReLU → +b (then sign)
  np.testing.assert_allclose(binary(x), want, rtol=1e-6)
  fp = common.PreAct(4, nn.method_spec("bwn"), rsign=True, rprelu=True, rngs=rngs())
  assert fp.shift is None  # no sign to shift
  fp.rprelu.beta[...] = slope
  np.testing.assert_allclose(fp(x), jnp.where(bn > 0, bn, slope * bn), rtol=1e-6)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_off_is_the_plain_model_and_identity_thresholds_compute_it(name):
  """``reactnet=False`` builds exactly the model built without the argument; with
  b = 0 and RPReLU the identity (β = 1, γ = ζ = 0; the ReLU, β = 0, where it replaced
  one) ``reactnet=True`` computes the same logits from the same parameters (the
  modules take no random numbers)."""
  plain = build(name)
  off = build(name, reactnet=False)
  a, b = (nnx.state(m, nnx.Not(nnx.RngState)) for m in (plain, off))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  on = build(name, reactnet=True)
  for m in modules(on, nn.RPReLU):
    m.beta[...] = jnp.ones_like(m.beta[...])
  for _, m in nnx.iter_graph(on):  # where RPReLU replaced a ReLU, β = 0 is the ReLU
    if isinstance(m, common.PreAct) and m.rprelu is not None and not m.binary_input:
      m.rprelu.beta[...] = jnp.zeros_like(m.rprelu.beta[...])
  x = images(name)
  np.testing.assert_allclose(on(x), plain(x), rtol=1e-5, atol=1e-6)
  # ... and moving a threshold changes them.
  modules(on, nn.LearnableBias)[0].bias[...] += 0.7
  assert not np.allclose(on(x), plain(x))


def test_rsign_after_batch_norm_is_a_reparametrisation_of_its_bias():
  """docs/reactnet.md#what-the-shift-adds-here: in ``BN → +b → sign`` the shift adds
  to BN's own bias β, so folding ``b`` into β (and zeroing it) leaves the logits."""
  model = build("resnet18", reactnet=True)
  rng = np.random.default_rng(0)
  pres = [m for _, m in nnx.iter_graph(model)
          if isinstance(m, common.PreAct) and m.shift is not None]
  for p in pres:
    c = p.norm.bias[...].shape
    p.norm.mean[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)
    p.norm.bias[...] = jnp.asarray(rng.standard_normal(c) * 0.3, jnp.float32)
    p.shift.bias[...] = jnp.asarray(rng.standard_normal(c) * 0.5, jnp.float32)
  x = images("resnet18")
  before = np.asarray(model(x))
  for p in pres:
    p.norm.bias[...] = p.norm.bias[...] + p.shift.bias[...]
    p.shift.bias[...] = jnp.zeros_like(p.shift.bias[...])
  np.testing.assert_allclose(np.asarray(model(x)), before, rtol=1e-4, atol=1e-5)


def test_model_summary_counts_the_new_parameters():
  plain = analysis.summary(build("resnet18"), TINY["resnet18"][0], print_fn=None)
  model = build("resnet18", reactnet=True)
  on = analysis.summary(model, TINY["resnet18"][0], print_fn=None)
  added = sum(int(np.size(v)) for v in jax.tree.leaves(reactnet_state(model)))
  units = [m for _, m in nnx.iter_graph(model) if isinstance(m, resnet.BiRealUnit)]
  assert added == sum(u.conv.in_features + 3 * u.conv.out_features for u in units)
  assert on.total_params - plain.total_params == added
  assert on.params_by_bits[32] - plain.params_by_bits[32] == added
  kinds = {l.kind for l in on.layers}
  assert {"LearnableBias", "RPReLU"} <= kinds


def test_short_reactnet_run_learns_mnist(tmp_path):
  """A ReActNet-style run (RSign + RPReLU on XNOR-Net layers) on 2048 real MNIST
  images: test accuracy far above the 10% of chance, and the thresholds moved."""
  c = config_common.base_config()
  c.update(model_name="resnet18", method="xnor", dataset="mnist", batch_size=32,
           num_train_examples=2048, num_test_examples=500, num_train_steps=120,
           log_every_steps=40, checkpoint_every_steps=1000, eval_batch_size=500,
           lr=3e-3, progress=False, tensorboard=False)
  c.model_kwargs = {"width": 8, "reactnet": True}
  results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["test/top1"] > 0.6, results
  params = {k: v for k, v in ckpt_lib.read_arrays(str(tmp_path)).items()
            if k.startswith("params[")}  # not the optimizer's moments
  shifts = [v for k, v in params.items() if k.endswith("['shift']['bias']")]
  slopes = [v for k, v in params.items() if k.endswith("['rprelu']['beta']")]
  assert len(shifts) == 16 and all(np.abs(v).max() > 0 for v in shifts)  # init 0
  assert len(slopes) == 16 and not np.allclose(np.concatenate(slopes), 0.25)  # init
