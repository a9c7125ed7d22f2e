"""The loss hook's registry and the l2 term against a hand computation."""

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax.train import loss_terms
from configs import common


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
  (term,) = loss_terms.build_loss_terms(model, c)
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
    loss_terms.build_loss_terms(Two(), c)
