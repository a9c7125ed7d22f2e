"""Cross-filter compression where a batch norm follows every binary conv (the zoo's NIN):
the shared scale α_g > 0 is a per-channel factor that the next batch norm divides out,
so every group size n computes the same loss and gradients up to batch norm's ε. This
is why NIN runs cannot show an effect of sharing (docs/reproduction.md#cross-filter-table-3)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.models import common


def _loss_and_grads(method, n, x, y):
  model = models.get_model("nin", num_classes=10, input_shape=(16, 16, 1),
                           spec=nn.method_spec(method, group_size=n), rngs=nnx.Rngs(0),
                           width_mult=0.0625)

  def loss(model):
    logits = model(x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
  value, grads = nnx.value_and_grad(loss)(model)
  return float(value), jax.tree.leaves(nnx.state(grads, nnx.Param))


@pytest.mark.parametrize("method", ["xnor_cf", "bw_cf"])
def test_group_size_cancels_in_batch_norm_up_to_epsilon(method, monkeypatch):
  x = jax.random.normal(jax.random.key(0), (8, 16, 16, 1))
  y = jnp.arange(8) % 10

  def gap(epsilon):
    monkeypatch.setattr(common, "BN_EPSILON", epsilon)
    l1, g1 = _loss_and_grads(method, 1, x, y)
    l2, g2 = _loss_and_grads(method, 2, x, y)
    rel = max(float(np.linalg.norm(a - b) / np.linalg.norm(a)) for a, b in zip(g1, g2))
    return abs(l1 - l2), rel

  loss_gap, grad_gap = gap(0.0)
  assert loss_gap < 1e-5 and grad_gap < 1e-4, (loss_gap, grad_gap)
  # With a large ε the channels' α_g no longer cancel: the check can fail.
  loss_gap, grad_gap = gap(1.0)
  assert grad_gap > 1e-2, grad_gap
