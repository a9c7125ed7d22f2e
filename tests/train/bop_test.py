"""Bop (bnnjax.train.bop, docs/bop.md): the flip rule by hand and against Larq's update,
its config fields and their errors, its place among the optimizer groups, and a real
MNIST run through the trainer that learns, keeps the kernels ±1 and resumes exactly."""

import doctest
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.train import bop as bop_lib
from bnnjax.train import checkpoint as ckpt_lib
from bnnjax.train import optim
from bnnjax.train import trainer
from bnnjax.train import validation
from configs import common


# ------------------------------------------------------------------ the rule itself
def test_flip_rule_by_hand_over_three_steps():
  """γ = 1/2, τ = 1/4 (exact in float32). Four ±1 weights, three gradients each:

  m1 = g1/2, m2 = (m1 + g2)/2, m3 = (m2 + g3)/2; a weight flips at step t iff
  sign(w_{t-1})·m_t > 1/4.
  """
  tx = bop_lib.bop(gamma=0.5, threshold=0.25)
  w0 = jnp.array([1.0, 1.0, -1.0, -1.0])
  grads = jnp.array([[1.0, 0.25, -1.0, 0.0],     # step 1
                     [1.0, 0.5, -1.0, 1.0],      # step 2
                     [-1.0, 0.5, 1.0, 1.0]])     # step 3
  m_expected = [[0.5, 0.125, -0.5, 0.0],
                [0.75, 0.3125, -0.75, 0.5],
                [-0.125, 0.40625, 0.125, 0.75]]
  # Step 1: w0·m1 = [.5, .125, .5, 0] -> flips 0 and 2.
  # Step 2: w1 = [-1, 1, 1, -1]; w1·m2 = [-.75, .3125, -.75, -.5] -> flips 1.
  # Step 3: w2 = [-1, -1, 1, -1]; w2·m3 = [.125, -.40625, .125, -.75] -> no flip.
  w_expected = [[-1.0, 1.0, 1.0, -1.0],
                [-1.0, -1.0, 1.0, -1.0],
                [-1.0, -1.0, 1.0, -1.0]]
  step = jax.jit(tx.update)
  w, state = w0, tx.init(w0)
  for t in range(3):
    u, state = step(grads[t], state, w)
    w = optax.apply_updates(w, u)
    np.testing.assert_array_equal(state.m, m_expected[t])
    np.testing.assert_array_equal(w, w_expected[t])
  assert int(state.count) == 3


def _larq_update(w, m, g, gamma, tau):
  """Larq's ``Bop._resource_apply_dense`` in numpy: ``m += γ(g − m)``,
  ``w = sign(−sign(w·m − τ)·w)`` with Larq's ``sign(0) = +1``."""
  m = m + gamma * (g - m)
  larq_sign = lambda x: np.where(x >= 0, 1.0, -1.0).astype(np.float32)
  return larq_sign(-np.sign(w * m - tau) * w), m


def test_matches_larq_on_binary_weights():
  rng = np.random.default_rng(0)
  shape = (3, 3, 4, 8)
  w = np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)
  m = np.zeros(shape, np.float32)
  tx = bop_lib.bop(gamma=0.1, threshold=1e-3)
  wj, state = jnp.asarray(w), tx.init(jnp.asarray(w))
  step = jax.jit(tx.update)
  flips = 0
  for _ in range(5):
    g = (rng.normal(size=shape) * 0.02).astype(np.float32)
    w_larq, m = _larq_update(w, m, g, np.float32(0.1), np.float32(1e-3))
    u, state = step(jnp.asarray(g), state, wj)
    wj = optax.apply_updates(wj, u)
    np.testing.assert_allclose(state.m, m, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(wj, w_larq)
    flips += int(np.sum(w_larq != w))
    w = w_larq
  assert 0 < flips < 5 * w.size  # some flip, not all: the test can tell them apart


def test_float_weights_become_their_sign_and_zero_is_plus_one():
  tx = bop_lib.bop(gamma=1.0, threshold=0.5)
  w = jnp.array([0.3, -0.2, 0.0, 0.7, -0.9])
  g = jnp.array([0.0, 0.0, 0.0, 0.6, -0.6])  # the last two agree with sign(w), > τ
  u, _ = tx.update(g, tx.init(w), w)
  np.testing.assert_array_equal(optax.apply_updates(w, u), [1.0, -1.0, 1.0, -1.0, 1.0])
  # sign(0) = +1: a zero weight flips like a +1 when m > τ.
  u, _ = tx.update(jnp.array([0.6]), tx.init(jnp.zeros(1)), jnp.zeros(1))
  np.testing.assert_array_equal(u, [-1.0])
  np.testing.assert_array_equal(bop_lib.binarize(jnp.array([0.0, -0.0, -1e-9])),
                                [1.0, 1.0, -1.0])


def test_exact_threshold_does_not_flip():
  """The paper's strict |m| > τ (Larq's sign(0) = +1 would give +1 here)."""
  tx = bop_lib.bop(gamma=1.0, threshold=0.5)
  w = jnp.array([1.0, -1.0])
  u, _ = tx.update(jnp.array([0.5, -0.5]), tx.init(w), w)
  np.testing.assert_array_equal(optax.apply_updates(w, u), [1.0, -1.0])


def test_gamma_schedule_is_read_at_the_update_count():
  sched = optax.piecewise_constant_schedule(1.0, {1: 0.5})  # γ: 1, then 0.5
  tx = bop_lib.bop(gamma=sched, threshold=10.0)  # no flips: only m is checked
  w = jnp.ones(2)
  state = tx.init(w)
  _, state = tx.update(jnp.array([2.0, 4.0]), state, w)
  np.testing.assert_array_equal(state.m, [2.0, 4.0])  # γ = 1: m = g
  _, state = tx.update(jnp.array([0.0, 0.0]), state, w)
  np.testing.assert_array_equal(state.m, [1.0, 2.0])  # γ = 0.5


def test_docstring_example():
  assert doctest.testmod(bop_lib, raise_on_error=True).attempted > 0


@pytest.mark.parametrize("kwargs,match", [
    ({"gamma": 0.0}, r"gamma=0.0; allowed values are numbers > 0.0 and <= 1.0"),
    ({"gamma": 1.5}, r"gamma=1.5"),
    ({"gamma": float("nan")}, r"gamma=nan"),
    ({"threshold": -1e-8}, r"threshold=-1e-08; allowed values are numbers >= 0.0"),
    ({"threshold": True}, r"threshold=True"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    bop_lib.bop(**kwargs)


def test_update_needs_params():
  tx = bop_lib.bop()
  with pytest.raises(ValueError, match="needs params"):
    tx.update(jnp.ones(2), tx.init(jnp.ones(2)))


# ------------------------------------------------------------------ config fields
def _config(**kw):
  c = common.base_config()
  c.kernel_optimizer = "bop"
  c.update(kw)
  return c


@pytest.mark.parametrize("field,value,match", [
    ("kernel_optimizer", "sgd", r"config.kernel_optimizer='sgd'; allowed values are "
                                r"\['latent', 'bop'\]"),
    ("bop_gamma", 0.0, r"config.bop_gamma=0.0; allowed values are finite numbers > 0"),
    ("bop_gamma", 2.0, r"config.bop_gamma=2.0; .*<= 1"),
    ("bop_threshold", -1.0, r"config.bop_threshold=-1.0; allowed values are finite "
                            r"numbers >= 0"),
    ("bop_gamma_schedule", "linear", r"config.bop_gamma_schedule='linear'; allowed values"
                                     r".*'constant', 'cosine', 'step'"),
])
def test_field_errors_name_the_field(field, value, match):
  c = _config()
  c[field] = value
  with pytest.raises(validation.ConfigError, match=match):
    validation.validate(c)
  with pytest.raises(ValueError, match=match.split(";")[0]):
    optim.validate(c)


def _params(method="xnorpp_1"):
  """A conv layer's params: the kernel (LatentWeight), Γ (ScaleFactor), a bias (Param)."""
  layer = nn.QuantConv(2, 4, 3, spec=nn.method_spec(method), use_bias=True,
                       rngs=nnx.Rngs(0))
  params = nnx.split(layer, nnx.Param, ...)[1]
  return bop_lib.binarize_kernels(params)


@pytest.mark.parametrize("kw,match", [
    ({"clip_latent": 1.0}, r"config.clip_latent=1.0 with config.kernel_optimizer='bop'"),
    ({"kernel_quantizer": "approx_sign"}, r"config.kernel_quantizer='approx_sign' with"),
    ({"kernel_quantizer": "swish_sign"}, r"config.kernel_quantizer='swish_sign' with.*"
                                         r"allowed values are \[None, 'ste_sign', "
                                         r"'identity_sign'\]"),
    ({"kernel_quantizer_kwargs": {"clip": 0.5}},
     r"config.kernel_quantizer_kwargs.clip=0.5 with.*clip >= 1"),
    ({"group_lr": {"LatentWeight": 0.1}}, r"config.group_lr.LatentWeight with"),
])
def test_combinations_bop_cannot_work_with(kw, match):
  c = _config(**kw)
  with pytest.raises(ValueError, match=match):
    optim.make_optimizer(c, _params(), 10, 100)


def test_bop_needs_binary_kernels():
  c = _config(method="fp")
  params = nnx.split(nn.QuantConv(2, 4, 3, spec=nn.FP, rngs=nnx.Rngs(0)),
                     nnx.Param, ...)[1]
  with pytest.raises(ValueError, match=r"kernel_optimizer='bop' with config.method='fp'.*"
                                       r"no binary kernels"):
    optim.make_optimizer(c, params, 10, 100)


# ------------------------------------------------------------------ optimizer groups
def test_other_parameters_keep_their_optimizer_and_groups():
  """Under Bop the bias and Γ get exactly the updates they get without it (SGD with
  their group learning rates, weight decay on kernels only), the kernel gets Bop's."""
  params = _params()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
  kw = dict(optimizer="sgd", momentum=0.0, lr=0.1, schedule="constant", weight_decay=0.5,
            group_lr={"ScaleFactor": 0.01}, bop_gamma=0.5, bop_threshold=0.1)
  tx_latent, _ = optim.make_optimizer(_config(kernel_optimizer="latent", **kw), params,
                                      10, 100)
  tx_bop, schedules = optim.make_optimizer(_config(**kw), params, 10, 100)
  u_latent, _ = tx_latent.update(grads, tx_latent.init(params), params)
  u_bop, state = tx_bop.update(grads, tx_bop.init(params), params)
  for name in ("bias", "gamma_alpha"):
    np.testing.assert_array_equal(u_bop[name][...], u_latent[name][...])
  np.testing.assert_allclose(u_bop["gamma_alpha"][...], -0.01 * 0.25)
  np.testing.assert_allclose(u_bop["bias"][...], -0.1 * 0.25)
  # Kernel: m = 0.5·0.25 = 0.125 > τ = 0.1, so exactly the +1 weights flip; no weight
  # decay and no learning rate reach it.
  w = params["kernel"][...]
  np.testing.assert_array_equal(u_bop["kernel"][...], np.where(w > 0, -2.0, 0.0))
  assert set(schedules) == {"default", "ScaleFactor", "bop"}
  assert float(schedules["bop"](0)) == pytest.approx(0.5)
  # The kernel's moving average is in the state, under the "bop" group.
  m = state.inner_states["bop"].inner_state.m
  np.testing.assert_allclose(m["kernel"][...], 0.125)


def test_grad_clip_norm_leaves_bops_gradient_alone():
  params = _params()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.25), params)
  c = _config(optimizer="sgd", momentum=0.0, lr=1.0, schedule="constant",
              grad_clip_norm=1e-3, bop_gamma=1.0, bop_threshold=0.2)
  tx, _ = optim.make_optimizer(c, params, 10, 100)
  u, state = tx.update(grads, tx.init(params), params)
  m = state[1].inner_states["bop"].inner_state.m
  np.testing.assert_allclose(m["kernel"][...], 0.25)  # raw gradient, not clipped
  w = params["kernel"][...]
  np.testing.assert_array_equal(u["kernel"][...], np.where(w > 0, -2.0, 0.0))
  # The others are clipped by their own global norm (bias 4 + Γ 4 values of 0.25).
  np.testing.assert_allclose(u["bias"][...], -1e-3 * 0.25 / np.sqrt(8 * 0.25**2),
                             rtol=1e-5)


def test_gamma_follows_the_learning_rate_schedule_or_its_own():
  c = _config(schedule="cosine", bop_gamma=1e-3)
  s = optim.bop_gamma_schedule(c, 10, 100)
  np.testing.assert_allclose([s(0), s(50), s(100)], [1e-3, 5e-4, 0.0], atol=1e-9)
  c = _config(schedule="constant", bop_gamma=1e-4, bop_gamma_schedule="step",
              decay_every_epochs=2.0, decay_factor=0.1)
  s = optim.bop_gamma_schedule(c, 10, 100)
  np.testing.assert_allclose([s(19), s(20), s(40)], [1e-4, 1e-5, 1e-6], rtol=1e-6)


def test_bop_config_builds_and_validates():
  from configs import bop_resnet18
  c = bop_resnet18.get_config()
  validation.validate(c)
  optim.validate(c)
  assert c.kernel_optimizer == "bop" and c.dataset == "mnist"
  p = bop_resnet18.get_config("paper")
  validation.validate(p)
  assert (p.dataset, p.batch_size, p.lr, p.schedule, p.bop_gamma_schedule) == (
      "cifar10", 50, 1e-2, "constant", "step")
  assert (p.bop_gamma, p.bop_threshold) == (1e-4, 1e-8)


# ------------------------------------------------------------------ through the trainer
def _real_config(**kw):
  """VGG-7 (BinaryNet, the paper's CIFAR-10 net) narrowed, every conv and dense layer
  binary: only batch norms and Γ are real-valued (Adam); the kernels learn by Bop."""
  c = common.base_config()
  c.update(dict(model_name="vgg7", method="xnorpp_1", quantize_first=True,
                quantize_last=True, dataset="mnist", num_train_examples=2048,
                num_test_examples=250, batch_size=16, eval_batch_size=250,
                num_train_steps=60, log_every_steps=20, checkpoint_every_steps=1000,
                lr=3e-3, progress=False, tensorboard=False, binary_compute="float",
                kernel_optimizer="bop", bop_gamma=1e-3, bop_threshold=1e-6))
  c.model_kwargs = {"width_mult": 0.125}
  c.update(kw)
  return c


def _kernels(workdir):
  flat = ckpt_lib.read_arrays(str(workdir))
  return {k: v for k, v in flat.items()
          if k.startswith("params[") and k.endswith("['kernel']")}


def test_short_real_run_learns_mnist(tmp_path):
  """60 steps of 16 real MNIST images: top-1 on 250 test images far above chance
  (measured 71.6%; with Bop's flips switched off, τ = 1, the same run reaches 9.2%: the
  accuracy comes from the kernels Bop trains). The kernels stay ±1; the flip ratio and
  γ are logged."""
  results = trainer.train_and_evaluate(_real_config(), str(tmp_path))
  assert results["test/top1"] > 0.5, results
  kernels = _kernels(tmp_path)
  assert len(kernels) == 8  # 6 convs, 2 dense layers
  for name, k in kernels.items():
    assert set(np.unique(k)) <= {-1.0, 1.0}, name
  records = [json.loads(l) for l in open(tmp_path / "metrics.jsonl")]
  logged = [r for r in records if "flip_ratio" in r]
  assert logged[0]["flip_ratio"] > 0 and all(r["saturation"] == 0 for r in logged)
  # γ = 1e-3 follows the learning rate's cosine decay.
  assert 0 < logged[-1]["lr/bop"] < logged[0]["lr/bop"] < 1e-3


def test_checkpoint_round_trip_of_the_bop_state(tmp_path):
  """The optimizer state under Bop (multi_transform groups, Bop's count and moving
  averages, Adam's moments) is saved and restored by name into a fresh state, as a
  resumed run does; set_up starts from ±1 kernels."""
  setup = trainer.set_up(_real_config())
  state = setup.state
  kernels = [v for v in jax.tree.leaves(state.params) if v.ndim >= 2]
  assert kernels and all(set(np.unique(k)) <= {-1.0, 1.0} for k in kernels)
  grads = jax.tree.map(lambda x: jnp.full_like(x, 1e-3), state.params)
  params, opt_state = state.params, state.opt_state
  update = jax.jit(setup.tx.update)  # one program, not one per op
  for _ in range(2):
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
  state = state.replace(step=jnp.asarray(2, jnp.int32), params=params, opt_state=opt_state)
  ck = ckpt_lib.Checkpointer(str(tmp_path))
  ck.save(2, state)
  ck.wait()
  restored = ck.restore(setup.state)
  ck.close()
  a, b = jax.tree.leaves(state), jax.tree.leaves(restored)
  assert len(a) == len(b)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  flat = ckpt_lib.read_arrays(str(tmp_path))
  m = [k for k in flat if "['bop']" in k and "['m']" in k]
  assert m and all(np.all(flat[k] != 0) for k in m if flat[k].ndim >= 2)
  assert int(flat[next(k for k in flat if "['bop']" in k and "count" in k)]) == 2


def test_old_runs_without_the_bop_fields_still_resume(tmp_path):
  """A config.json written before kernel_optimizer existed reads as 'latent'."""
  c = common.base_config()
  saved = json.loads(c.to_json_best_effort())
  for k in ("kernel_optimizer", "bop_gamma", "bop_threshold", "bop_gamma_schedule"):
    del saved[k]
  (tmp_path / "config.json").write_text(json.dumps(saved))
  assert trainer.config_differences(str(tmp_path), c) == {}
  c.kernel_optimizer = "bop"
  assert trainer.config_differences(str(tmp_path), c) == {
      "kernel_optimizer": ("latent", "bop")}
