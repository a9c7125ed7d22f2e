"""Packed export of ReActNet models (docs/reactnet.md#packed-inference): the packed
binary layers see the shifted input, so they binarise ``sign(x + b)`` and the packed
model computes the eval-mode logits, in the residual models' post-activation order
(``RPReLU(BN(conv(sign(x + b))) + shortcut(x))``) as in the plain CNNs'
``BN → RPReLU → +b → sign``; the shifts and RPReLU parameters save and load."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax import packed

TINY = {
    "resnet18": ((12, 12, 3), {"width": 4}),
    "wrn22": ((12, 12, 3), {"widths": (4, 4, 8, 8), "depth": 10}),
    "vgg7": ((16, 20, 3), {"width_mult": 0.0625}),
}


def _randomise(model, seed=0):
  """Batch statistics, affine parameters, RSign shifts and RPReLU parameters far from
  their init (negative slopes too), so a shift the packed path dropped would show."""
  rng = np.random.default_rng(seed)
  f32 = lambda a: jnp.asarray(a, jnp.float32)
  for _, m in nnx.iter_graph(model):
    if isinstance(m, nnx.BatchNorm):
      c = m.mean[...].shape
      m.mean[...] = f32(rng.standard_normal(c) * 0.3)
      m.var[...] = f32(rng.uniform(0.5, 2.0, c))
      m.scale[...] = f32(rng.standard_normal(c))
      m.bias[...] = f32(rng.standard_normal(c) * 0.3)
    if isinstance(m, nn.LearnableBias):
      m.bias[...] = f32(rng.standard_normal(m.bias[...].shape) * 0.5)
    if isinstance(m, nn.RPReLU):
      c = m.beta[...].shape
      m.gamma[...] = f32(rng.standard_normal(c) * 0.3)
      m.beta[...] = f32(rng.uniform(-0.5, 1.0, c))
      m.zeta[...] = f32(rng.standard_normal(c) * 0.3)


def _build(name, method):
  shape, kwargs = TINY[name]
  model = models.get_model(name, num_classes=6, input_shape=shape,
                           spec=nn.method_spec(method), rngs=nnx.Rngs(params=0, dropout=1),
                           reactnet=True, **kwargs)
  _randomise(model)
  x = jnp.asarray(np.random.default_rng(1).standard_normal((3, *shape)), jnp.float32)
  return model, x


def _zero_shifts(model):
  out = nnx.clone(model)
  for _, m in nnx.iter_graph(out):
    if isinstance(m, nn.LearnableBias):
      m.bias[...] = jnp.zeros_like(m.bias[...])
  return out


@pytest.mark.parametrize("name,method", [("resnet18", "xnor"), ("resnet18", "xnorpp_1"),
                                         ("wrn22", "xnor"), ("vgg7", "xnor")])
def test_packed_reactnet_equals_eval_model_and_round_trips(name, method, tmp_path):
  model, x = _build(name, method)
  pm = packed.pack_model(model)
  n_binary = len([1 for _, m in nnx.iter_graph(model)
                  if isinstance(m, (nn.QuantConv, nn.QuantDense)) and m.spec.binary_kernel])
  assert len(packed.packed_layers(pm)) == n_binary > 0
  # The batch norms behind the convs (post-activation order) are kept as they are.
  n_norms = lambda m: len([1 for _, v in nnx.iter_graph(m) if isinstance(v, nnx.BatchNorm)])
  assert n_norms(pm) == n_norms(model)
  # The shifts are model modules before the packed layers, kept as they are.
  assert len([1 for _, m in nnx.iter_graph(pm) if isinstance(m, nn.LearnableBias)]) > 0
  graphdef, state = nnx.split(pm)
  run = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x, train=False))
  want = np.asarray(packed.inference_fn(model)(x))
  got = np.asarray(run(state, x))
  # Same tolerance as tests/packed/model_test.py: under jit the training layers
  # compute their scales inside a fused program (last-bit rounding).
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
  # The packed layers binarise sign(x + b): without the shifts the logits change.
  without = np.asarray(run(nnx.state(_zero_shifts(pm)), x))
  assert np.abs(without - got).max() > 1e-3
  loaded = packed.load(packed.save(pm, str(tmp_path / f"{name}_{method}")))
  a, b = nnx.state(loaded, nnx.Not(nnx.RngState)), nnx.state(pm, nnx.Not(nnx.RngState))
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)
  assert len(jax.tree.leaves(nnx.state(loaded, nnx.Any(nn.ThresholdShift,
                                                        nn.PReLUSlope)))) > 0
