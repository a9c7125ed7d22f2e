"""Max pooling by strided slices equals nnx.max_pool, values and gradients, ties too."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax.kernels import pooling


@pytest.mark.parametrize("shape,window,stride,pad", [
    ((2, 14, 14, 3), 3, 2, 1), ((2, 7, 9, 2), 2, 2, 0), ((2, 8, 8, 2), 3, 1, 1),
    ((2, 5, 5, 1), 3, 2, 0), ((1, 1, 1, 2), 3, 2, 1)])
def test_matches_nnx_max_pool(shape, window, stride, pad):
  rng = np.random.default_rng(0)
  # Small integers after a ReLU: many ties, where the gradient's choice matters.
  x = jax.nn.relu(jnp.asarray(rng.integers(-2, 3, shape), jnp.float32))
  pads = ((pad, pad), (pad, pad))
  ours = lambda x: pooling.max_pool(x, (window, window), (stride, stride), pads)
  ref = lambda x: nnx.max_pool(x, (window, window), (stride, stride), pads)
  np.testing.assert_array_equal(ours(x), ref(x))
  ct = jnp.asarray(rng.standard_normal(ref(x).shape), jnp.float32)
  g = jax.grad(lambda x: jnp.sum(ours(x) * ct))(x)
  g_ref = jax.grad(lambda x: jnp.sum(ref(x) * ct))(x)
  # Same pixel chosen per window; overlapping windows may sum in another order.
  np.testing.assert_array_equal(g != 0, g_ref != 0)
  np.testing.assert_allclose(g, g_ref, rtol=1e-6, atol=1e-6)
