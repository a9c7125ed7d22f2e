"""The binary-input rule: BN → sign for binary-input layers, BN → ReLU otherwise."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.models import common


@pytest.mark.parametrize("method", ["xnor", "xnor_cf_2", "xnorpp_3"])
def test_binary_input_gets_no_relu(method):
  spec = nn.method_spec(method)
  x = jnp.array([-2.0, -0.5, 0.0, 1.5])
  np.testing.assert_array_equal(common.input_activation(spec)(x), x)


@pytest.mark.parametrize("method", ["fp", "bwn", "bw_cf_2"])
def test_full_precision_input_gets_relu(method):
  spec = nn.method_spec(method)
  x = jnp.array([-2.0, -0.5, 0.0, 1.5])
  np.testing.assert_array_equal(common.input_activation(spec)(x), jax.nn.relu(x))


def test_preact():
  x = jax.random.normal(jax.random.key(0), (16, 3, 3, 4)) * 3 + 1
  rngs = nnx.Rngs(params=jax.random.key(0, impl="rbg"),
                  dropout=jax.random.key(1, impl="rbg"))
  binary = common.PreAct(4, nn.method_spec("xnor"), dropout=0.5, rngs=rngs)
  fp = common.PreAct(4, nn.method_spec("bwn"), dropout=0.5, rngs=rngs)
  normed = (x - x.mean((0, 1, 2))) / jnp.sqrt(x.var((0, 1, 2)) + 1e-5)
  # Eval: no dropout; BN with the (initial) running averages 0 / 1.
  np.testing.assert_allclose(binary(x), x / np.sqrt(1 + 1e-5), rtol=1e-6)
  np.testing.assert_allclose(fp(x), jax.nn.relu(x) / np.sqrt(1 + 1e-5), rtol=1e-6)
  # Train, binary input: dropout comes before BN, so the output is BN of a dropped
  # input and still takes both signs; FP input: ReLU then dropout, never negative.
  yb = binary(x, train=True)
  assert float(yb.min()) < 0 < float(yb.max())
  yf = fp(x, train=True)
  assert float(yf.min()) == 0.0
  kept = yf != 0
  np.testing.assert_allclose(yf[kept], 2 * jax.nn.relu(normed)[kept], rtol=1e-4, atol=1e-5)


def test_batch_norm_hyper_parameters():
  bn = common.batch_norm(3, rngs=nnx.Rngs(0))
  assert bn.momentum == 0.9 and bn.epsilon == 1e-5


def test_endpoint_specs():
  spec = nn.method_spec("xnor")
  assert common.endpoint_specs(spec, quantize_first=False, quantize_last=False) == (
      nn.FP, nn.FP)
  assert common.endpoint_specs(spec, quantize_first=True, quantize_last=False) == (
      spec, nn.FP)
  assert common.endpoint_specs(spec, quantize_first=False, quantize_last=True) == (
      nn.FP, spec)


def test_first_layer_norm_only_for_binary_input():
  rngs = nnx.Rngs(0)
  assert common.first_layer_norm(nn.method_spec("bwn"), 3, rngs=rngs) is None
  assert isinstance(common.first_layer_norm(nn.method_spec("xnor"), 3, rngs=rngs),
                    common.InputNorm)


def test_pool_sizes():
  x = jnp.zeros((1, 7, 8, 2))
  for kind, window, stride, pad in [("max", 3, 2, 1), ("avg", 3, 2, 1), ("max", 3, 2, 0),
                                    ("avg", 2, 2, "SAME"), ("max", 2, 2, 0)]:
    y = common.pool(x, kind, window, stride, pad)
    assert y.shape[1:3] == common.pool_output_size((7, 8), window, stride, pad)
  # "SAME" average pooling averages real pixels only (ceil mode on odd sizes).
  np.testing.assert_allclose(common.pool(jnp.ones((1, 3, 3, 1)), "avg", 2, 2, "SAME"), 1.0)
