"""The ``reactnet`` model argument (docs/reactnet.md): every model builds, runs and
back-propagates with it; the residual models follow ReActNet's post-activation order
(``RPReLU(BN(conv(sign(x + b))) + shortcut(x))``), where RSign's shift is a parameter of
its own and not a reparametrisation; the plain CNNs keep ``BN → RPReLU → +b → sign``;
a short ReActNet run on the embedded MNIST learns."""

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
from tests.tiny_zoo import TINY
from tests.tiny_zoo import rngs



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


def _train_pass_fn(x, labels):
  """``model ↦ ((loss, (logits, features)), grads)`` of a train-mode cross-entropy on
  ``x``, jitted (one compile per model graph)."""
  def loss(model):
    logits, features = model(x, train=True, return_features=True)
    return (-jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels]),
            (logits, features))
  return nnx.jit(nnx.value_and_grad(loss, argnums=nnx.DiffState(0, nnx.Param),
                                    has_aux=True))


def _train_pass(model, x, labels):
  return _train_pass_fn(x, labels)(model)


_VGG7 = []


def _randomised_vgg7_pass():
  """``(model, x, labels, pass)``: a randomised ReActNet VGG-7's :func:`_train_pass` on
  4 images, computed once for the two tests below that read it (one compile instead
  of two; neither changes the model: the one that folds its shifts folds a clone)."""
  if not _VGG7:
    model = _randomise(build("vgg7", reactnet=True))
    x, labels = images("vgg7", n=4), jnp.array([1, 7, 3, 3])
    _VGG7.append((model, x, labels, _train_pass(model, x, labels)))
  return _VGG7[0]


@pytest.mark.parametrize("name", [n for n in models.MODELS if n != "resnet18"])
def test_builds_runs_and_backpropagates_into_every_threshold(name):
  """A train-mode forward and backward pass (eval mode: the test below). ResNet-18's
  is the training run at the end of this file, whose every threshold must move.
  VGG-7's is the randomised model of the reparametrisation test below (the same pass)."""
  if name == "vgg7":
    model, x, labels, ((value, (logits, features)), grads) = _randomised_vgg7_pass()
  else:
    model = build(name, reactnet=True)
    x, labels = images(name), jnp.array([1, 7])
    (value, (logits, features)), grads = _train_pass(model, x, labels)
  assert logits.shape == (len(labels), 10) and features.ndim == 2
  assert np.isfinite(float(value))
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
  # ResNet-18: each of the 16 units is shift → conv → BN → + shortcut → RPReLU, with
  # no batch norm in front of the conv; the stem has no ReLU before the first sign.
  r = build("resnet18", reactnet=True)
  units = [m for _, m in nnx.iter_graph(r) if isinstance(m, resnet.BiRealUnit)]
  assert len(units) == 16
  assert all(u.preact is None and isinstance(u.shift, nn.LearnableBias)
             and u.shift.bias[...].shape == (u.conv.in_features,)
             and u.norm.scale[...].shape == (u.conv.out_features,)
             and isinstance(u.rprelu, nn.RPReLU)
             and u.rprelu.beta[...].shape == (u.conv.out_features,) for u in units)
  assert not r.stem_relu and build("resnet18").stem_relu
  assert r.head.shift is None and r.input_norm is None  # FP classifier and stem
  # WRN: shift → conv1 → BN → RPReLU → shift → conv2 → BN → + shortcut → RPReLU; the
  # stem gets a batch norm (no ReLU), a changing shortcut conv one too.
  w = build("wrn22", reactnet=True)
  blocks = [m for _, m in nnx.iter_graph(w) if isinstance(m, wrn.WideBasicBlock)]
  assert len(blocks) == 9
  assert all(b.preact1 is None and b.preact2 is None
             and b.shift1 is not None and b.shift2 is not None
             and b.norm1 is not None and b.norm2 is not None
             and b.rprelu1 is not None and b.rprelu is not None
             and b.dropout.rate == 0.3
             and (b.shortcut is None) == (b.shortcut_norm is None) for b in blocks)
  assert sum(b.shortcut is not None for b in blocks) == 2
  assert w.stem_norm is not None and not w.stem_relu
  assert build("wrn22").stem_norm is None
  # Plain CNNs: every PreAct is BN → RPReLU (→ shift before a binary-input layer).
  v = build("vgg7", reactnet=True)
  pres = [op.pre for op in v.ops if getattr(op, "pre", None) is not None]
  assert all(p.rprelu is not None for p in pres)
  assert [p.shift is not None for p in pres] == [p.binary_input for p in pres]
  # Binarised endpoints get the shift too (RSign before *every* binary-input layer),
  # after the batch norm that stays in front of them.
  q = build("resnet18", reactnet=True, quantize_first=True, quantize_last=True)
  assert q.input_norm.shift is not None and q.head.shift is not None
  # Full-precision input: no sign, no shift; RPReLU and the post-activation order
  # stay, and the stems keep their ReLU.
  b = build("resnet18", "bwn", reactnet=True)
  assert not modules(b, nn.LearnableBias) and len(modules(b, nn.RPReLU)) == 16
  assert b.stem_relu and all(u.preact is None and u.shift is None for u in
                             [m for _, m in nnx.iter_graph(b)
                              if isinstance(m, resnet.BiRealUnit)])
  bw = build("wrn22", "bwn", reactnet=True)
  assert not modules(bw, nn.LearnableBias) and len(modules(bw, nn.RPReLU)) == 18
  assert bw.stem_relu


def _randomise(model, seed=0):
  """Batch statistics, affine parameters, shifts and RPReLU parameters away from their
  init, so that a module out of place changes the outputs."""
  rng = np.random.default_rng(seed)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  for _, m in nnx.iter_graph(model):
    if isinstance(m, nnx.BatchNorm):
      c = m.mean[...].shape
      m.mean[...] = f32(rng.standard_normal(c) * 0.3)
      m.var[...] = f32(rng.uniform(0.5, 2.0, c))
      m.scale[...] = f32(rng.uniform(0.5, 1.5, c) * rng.choice([-1, 1], c))
      m.bias[...] = f32(rng.standard_normal(c) * 0.3)
    if isinstance(m, nn.LearnableBias):
      m.bias[...] = f32(rng.standard_normal(m.bias[...].shape) * 0.5)
    if isinstance(m, nn.RPReLU):
      c = m.beta[...].shape
      m.gamma[...] = f32(rng.standard_normal(c) * 0.3)
      m.beta[...] = f32(rng.uniform(-0.5, 1.0, c))
      m.zeta[...] = f32(rng.standard_normal(c) * 0.3)
  return model


@pytest.mark.parametrize("method", ["xnor", "bwn"])
def test_residual_units_follow_reactnets_order(method):
  """Eval mode, by hand from the modules' own pieces: ``RPReLU(BN(conv(x + b)) +
  shortcut(x))`` (the conv signs ``x + b`` for ``xnor``; ``bwn`` has no shift), the
  shortcut of the unshifted ``x``; WRN's two convs likewise, RPReLU after the first
  one's batch norm."""
  bn = lambda norm, v: norm(v, use_running_average=True)
  shift = lambda s, v: v if s is None else s(v)
  x = jax.random.normal(jax.random.key(5), (2, 6, 6, 4))
  for stride, c_out in [(1, 4), (2, 8)]:
    u = resnet.BiRealUnit(4, c_out, stride, nn.method_spec(method), input_size=(6, 6),
                          reactnet=True, rngs=rngs())
    _randomise(u)
    assert (u.shift is None) == (method == "bwn")
    s = x if u.shortcut is None else u.shortcut(x)
    want = u.rprelu(bn(u.norm, u.conv(shift(u.shift, x))) + s)
    np.testing.assert_allclose(u(x), want, rtol=1e-5, atol=1e-6)
    w = wrn.WideBasicBlock(4, c_out, stride, nn.method_spec(method), dropout=0.0,
                           input_size=(6, 6), reactnet=True, rngs=rngs())
    _randomise(w)
    h = w.rprelu1(bn(w.norm1, w.conv1(shift(w.shift1, x))))
    s = x if w.shortcut is None else bn(w.shortcut_norm, w.shortcut(x))
    want = w.rprelu(bn(w.norm2, w.conv2(shift(w.shift2, h))) + s)
    np.testing.assert_allclose(w(x), want, rtol=1e-5, atol=1e-6)
  # The shift feeds the sign alone: the shortcut still sees x, so shifting the unit's
  # input by b instead is a different function.
  u = _randomise(resnet.BiRealUnit(4, 4, 1, nn.method_spec("xnor"), input_size=(6, 6),
                                   reactnet=True, rngs=rngs()))
  b = u.shift.bias[...]
  moved = nnx.clone(u)
  moved.shift.bias[...] = jnp.zeros_like(b)
  assert np.abs(np.asarray(moved(x + b) - u(x))).max() > 1e-2


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
def test_off_is_the_plain_model_and_a_moved_threshold_changes_the_logits(name):
  """``reactnet=False`` builds exactly the model built without the argument (same
  parameters, same random numbers); with ``reactnet=True`` moving one shift changes
  the logits."""
  plain = build(name)
  off = build(name, reactnet=False)
  a, b = (nnx.state(m, nnx.Not(nnx.RngState)) for m in (plain, off))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  x = images(name)
  np.testing.assert_array_equal(off(x), plain(x))
  on = build(name, reactnet=True)
  before = np.asarray(on(x))
  modules(on, nn.LearnableBias)[0].bias[...] += 0.7
  assert not np.allclose(on(x), before)


@pytest.mark.parametrize("name", ["nin", "vgg7", "alexnet"])
def test_plain_cnn_with_identity_thresholds_computes_the_plain_model(name):
  """The plain CNNs keep the pre-activation placement: with b = 0 and RPReLU the
  identity (β = 1, γ = ζ = 0; the ReLU, β = 0, where it replaced one) ``reactnet=True``
  computes the plain model's logits from the same parameters (the modules take no
  random numbers). The residual models change order instead (test above)."""
  plain, on = build(name), build(name, reactnet=True)
  for m in modules(on, nn.RPReLU):
    m.beta[...] = jnp.ones_like(m.beta[...])
  for _, m in nnx.iter_graph(on):  # where RPReLU replaced a ReLU, β = 0 is the ReLU
    if isinstance(m, common.PreAct) and m.rprelu is not None and not m.binary_input:
      m.rprelu.beta[...] = jnp.zeros_like(m.rprelu.beta[...])
  x = images(name)
  np.testing.assert_allclose(on(x), plain(x), rtol=1e-5, atol=1e-6)


def _by_path(grads):
  return {jax.tree_util.keystr(p).removesuffix(".value"): np.asarray(g)
          for p, g in jax.tree_util.tree_leaves_with_path(grads)}


def _grads_by_path(model, x, labels):
  return _by_path(_train_pass(model, x, labels)[1])


def _fold(model, units, into_stem=False):
  """A copy of ``model`` with the shift of each unit index in ``units`` added to the
  additive parameter before it (the previous unit's RPReLU ζ; the stem batch norm's
  bias for unit 0) and zeroed."""
  folded = nnx.clone(model)
  f_units = [m for _, m in nnx.iter_graph(folded) if isinstance(m, resnet.BiRealUnit)]
  for i in units:
    b = f_units[i].shift.bias[...]
    target = folded.stem_norm.bias if i == 0 else f_units[i - 1].rprelu.zeta
    target[...] = target[...] + b
    f_units[i].shift.bias[...] = jnp.zeros_like(b)
  return folded


def test_rsign_shift_in_reactnets_order_is_no_reparametrisation():
  """docs/reactnet.md#what-the-shift-adds. In a ResNet-18 unit with an identity
  shortcut (``sign(x + b)``, no batch norm in front, ``x`` also on the shortcut) no
  other parameter receives the shift's gradient, and folding the shift into the
  additive parameter before it (the previous unit's RPReLU output shift ζ, the stem
  batch norm's bias for the first unit) changes the logits.

  Where that does not hold, as in ReActNet's own code: at the 3 downsampling units the
  shortcut ends in a batch norm whose batch statistics remove any per-channel
  constant, so in training the shift and the previous ζ get the same gradient and the
  fold leaves the (train-mode) logits; the binarised classifier's ``BN → +b → sign``
  and VGG-7's ``BN → RPReLU → +b → sign`` reparametrise the BN bias and ζ."""
  model = _randomise(build("resnet18", reactnet=True, quantize_last=True))
  x, labels = images("resnet18", n=4), jnp.array([1, 7, 3, 3])
  train_pass = _train_pass_fn(x, labels)
  grads = _by_path(train_pass(model)[1])
  units = [(path, m) for path, m in nnx.iter_graph(model)
           if isinstance(m, resnet.BiRealUnit)]
  assert len(units) == 16
  key = lambda path, *rest: "".join(
      f"[{p}]" if isinstance(p, int) else f"['{p}']" for p in (*path, *rest))
  downsampling = [i for i, (_, u) in enumerate(units) if u.shortcut is not None]
  assert downsampling == [4, 8, 12]
  for i, (path, u) in enumerate(units):
    g = grads[key(path, "shift", "bias")]
    assert np.abs(g).max() > 0, path
    twins = [o for o, h in grads.items() if o != key(path, "shift", "bias")
             and h.shape == g.shape and np.allclose(h, g, rtol=1e-4, atol=1e-7)]
    want = [key(units[i - 1][0], "rprelu", "zeta")] if i in downsampling else []
    assert twins == want, (path, twins)
  np.testing.assert_allclose(grads["['head']['shift']['bias']"],
                             grads["['head']['norm']['bias']"], rtol=1e-5, atol=1e-8)
  # Train mode (batch statistics), as the gradients above: the logits of the same
  # compiled pass serve every folded copy (same graph; no second program to compile),
  # on a clone since train mode updates the statistics.
  logits = lambda m: np.asarray(train_pass(nnx.clone(m))[0][1][0])
  before = logits(model)
  np.testing.assert_allclose(logits(_fold(model, downsampling)), before,
                             rtol=1e-4, atol=1e-5)
  identity = [i for i in range(16) if i not in downsampling]
  assert np.abs(logits(_fold(model, identity)) - before).max() > 1e-2
  for i in identity:  # each one alone too
    assert np.abs(logits(_fold(model, [i])) - before).max() > 1e-4, i

  # WRN: b₁ as ResNet's units (the previous ζ's twin where the shortcut is
  # BN(conv1x1(x))); b₂ meets RPReLU₁'s output only, so it is ζ₁'s twin (no dropout).
  w = _randomise(build("wrn22", reactnet=True, dropout=0.0))
  g = _grads_by_path(w, images("wrn22", n=4), labels)
  blocks = [(path, m) for path, m in nnx.iter_graph(w)
            if isinstance(m, wrn.WideBasicBlock)]
  for i, (path, b) in enumerate(blocks):
    for shift, want in [
        ("shift1", [key(blocks[i - 1][0], "rprelu", "zeta")] if b.shortcut is not None
         else []),
        ("shift2", [key(path, "rprelu1", "zeta")])]:
      h = g[key(path, shift, "bias")]
      assert np.abs(h).max() > 0, (path, shift)
      twins = [o for o, v in g.items() if o != key(path, shift, "bias")
               and v.shape == h.shape and np.allclose(v, h, rtol=1e-4, atol=1e-7)]
      assert twins == want, (path, shift, twins)
  assert sum(b.shortcut is not None for _, b in blocks) == 2

  shared, xv, labels, (_, grads) = _randomised_vgg7_pass()
  g = _by_path(grads)
  vgg = nnx.clone(shared)
  pres = [(i, op.pre) for i, op in enumerate(vgg.ops)
          if isinstance(getattr(op, "pre", None), common.PreAct) and op.pre.shift is not None]
  assert pres
  for i, _ in pres:
    np.testing.assert_allclose(g[f"['ops'][{i}]['pre']['shift']['bias']"],
                               g[f"['ops'][{i}]['pre']['rprelu']['zeta']"],
                               rtol=1e-5, atol=1e-8)
  before = np.asarray(vgg(xv))
  for _, p in pres:
    p.rprelu.zeta[...] += p.shift.bias[...]
    p.shift.bias[...] = jnp.zeros_like(p.shift.bias[...])
  np.testing.assert_allclose(np.asarray(vgg(xv)), before, rtol=1e-4, atol=1e-5)


def test_model_summary_counts_the_new_parameters():
  plain = analysis.summary(build("resnet18"), TINY["resnet18"][0], print_fn=None)
  model = build("resnet18", reactnet=True)
  on = analysis.summary(model, TINY["resnet18"][0], print_fn=None)
  added = sum(int(np.size(v)) for v in jax.tree.leaves(reactnet_state(model)))
  units = [m for _, m in nnx.iter_graph(model) if isinstance(m, resnet.BiRealUnit)]
  assert added == sum(u.conv.in_features + 3 * u.conv.out_features for u in units)
  # Each unit's batch norm moves behind its conv: c_out channels instead of c_in
  # (scale, bias, mean, variance: 4 numbers each).
  moved = 4 * sum(u.conv.out_features - u.conv.in_features for u in units)
  assert moved > 0
  assert on.total_params - plain.total_params == added + moved
  assert on.params_by_bits[32] - plain.params_by_bits[32] == added + moved
  kinds = {l.kind for l in on.layers}
  assert {"LearnableBias", "RPReLU"} <= kinds


def test_short_reactnet_run_learns_mnist(tmp_path):
  """A ReActNet-style run (RSign + RPReLU on XNOR-Net layers) on 2048 real MNIST
  images: test accuracy far above the 10% of chance (measured 51.8% after these 60
  steps), and the thresholds moved. The float ±1 products (``binary_compute``): the
  packed backend that ``auto`` picks on CPU computes the same run (measured: the same
  51.8%; their equality is tests/nn/compute_test.py's) but took 56 s of CPU against 40."""
  c = config_common.base_config()
  c.update(model_name="resnet18", method="xnor", dataset="mnist", batch_size=32,
           num_train_examples=2048, num_test_examples=500, num_train_steps=60,
           log_every_steps=20, checkpoint_every_steps=1000, eval_batch_size=500,
           lr=3e-3, progress=False, tensorboard=False, binary_compute="float")
  c.model_kwargs = {"width": 8, "reactnet": True}
  results = trainer.train_and_evaluate(c, str(tmp_path))
  assert results["test/top1"] > 0.45, results
  params = {k: v for k, v in ckpt_lib.read_arrays(str(tmp_path)).items()
            if k.startswith("params[")}  # not the optimizer's moments
  shifts = [v for k, v in params.items() if k.endswith("['shift']['bias']")]
  slopes = [v for k, v in params.items() if k.endswith("['rprelu']['beta']")]
  assert len(shifts) == 16 and all(np.abs(v).max() > 0 for v in shifts)  # init 0
  assert len(slopes) == 16 and not np.allclose(np.concatenate(slopes), 0.25)  # init
