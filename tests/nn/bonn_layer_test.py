"""BONN's layer mode: parameters, their initialisation and the 1/mean(w) output scale."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax import lax

from bnnjax import nn


def sgn(x):
  return jnp.where(x >= 0, 1.0, -1.0)


def test_bonn_conv_parameters_and_forward():
  layer = nn.QuantConv(3, 4, 3, spec=nn.method_spec("bonn"), rngs=nnx.Rngs(0))
  k = layer.kernel[...]
  assert isinstance(layer.kernel, nn.LatentWeight)
  assert isinstance(layer.bonn_modulation, nn.Modulation)
  assert isinstance(layer.bonn_mu, nn.PriorParam)
  assert layer.bonn_modulation.shape == (3, 3)
  assert layer.bonn_mu.shape == layer.bonn_log_sigma.shape == (4,)
  np.testing.assert_allclose(layer.bonn_mu[...], jnp.mean(jnp.abs(k), axis=(0, 1, 2)),
                             rtol=1e-6)
  np.testing.assert_allclose(jnp.exp(layer.bonn_log_sigma[...]),
                             jnp.std(k, axis=(0, 1, 2)), rtol=1e-5)
  np.testing.assert_allclose(layer.bonn_modulation[...], 1 / jnp.mean(jnp.abs(k)), rtol=1e-6)
  layer.bonn_modulation[...] = jnp.arange(1.0, 10.0).reshape(3, 3)  # mean 5
  x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))
  expected = lax.conv_general_dilated(sgn(x), sgn(k), (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC")) / 5.0
  np.testing.assert_allclose(layer(x), expected, rtol=1e-6)


def test_bonn_dense_modulation_shape():
  layer = nn.QuantDense(5, 3, spec=nn.method_spec("bonn"), rngs=nnx.Rngs(0))
  assert layer.bonn_modulation.shape == (5,)
  assert layer(jnp.ones((2, 5))).shape == (2, 3)


def test_modulation_gets_gradient_only_through_scale():
  layer = nn.QuantConv(2, 2, 3, spec=nn.method_spec("bonn"), rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (1, 4, 4, 2))
  g = nnx.grad(lambda m: m(x).sum())(layer)
  w = layer.bonn_modulation[...]
  y_unscaled = layer(x) * jnp.mean(w)
  # d/dw_ij [sum(y_unscaled) / mean(w)] = -sum(y_unscaled) / mean(w)^2 / 9
  np.testing.assert_allclose(g.bonn_modulation[...],
                             -y_unscaled.sum() / jnp.mean(w) ** 2 / 9, rtol=1e-5)
