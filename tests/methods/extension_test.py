"""A new method is one definition plus its registration: a test-only method (a learned
layer-wide scale ``s``, initialised at ``mean|W|``) trains through QuantConv and is
counted by the model summary without any change to the package."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax import lax

from bnnjax import analysis
from bnnjax import methods
from bnnjax import nn


class LearnedScalar(methods.Method):
  """``y = (sign(I) ⊛ sign(W)) · s`` with one learned scalar ``s`` per layer."""

  names = ("lscalar",)
  weight_scale = "lscalar"

  def preset(self, name, number, *, input_quantizer, kernel_quantizer, pad_value):
    return dict(input_quantizer=input_quantizer, kernel_quantizer=kernel_quantizer,
                weight_scale=self.weight_scale, pad_value=pad_value)

  def init_params(self, spec, kernel, out_hw):
    return {"lscalar_s": nn.ScaleFactor(jnp.mean(jnp.abs(kernel)))}

  def folded_scale(self, spec, layer):
    return layer.lscalar_s[...]

  def scale_mults(self, spec, shape):
    return shape.pixels * shape.o


@pytest.fixture
def lscalar():
  method = methods.register(LearnedScalar())
  yield method
  methods.unregister(method)


class Net(nnx.Module):
  def __init__(self, spec):
    self.conv = nn.QuantConv(2, 4, 3, spec=spec, rngs=nnx.Rngs(0))

  def __call__(self, x):
    return self.conv(x)


def test_new_method_trains_through_quantconv_and_is_summarised(lscalar):
  spec = nn.method_spec("LScalar")
  assert methods.for_spec(spec) is lscalar and spec.binary_input and spec.binary_kernel
  model = Net(spec)
  conv = model.conv
  w = conv.kernel[...]
  np.testing.assert_allclose(conv.lscalar_s[...], jnp.mean(jnp.abs(w)), rtol=1e-6)
  x = jax.random.normal(jax.random.key(1), (2, 5, 5, 2))
  sgn = lambda a: jnp.where(a >= 0, 1.0, -1.0)
  ref = lax.conv_general_dilated(sgn(x), sgn(w), (1, 1), "SAME",
                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
  np.testing.assert_allclose(model(x), ref * conv.lscalar_s[...], rtol=1e-6)

  # One SGD step on a split model, as the trainer runs it: s and the kernel move.
  graphdef, params = nnx.split(model, nnx.Param)
  tx = optax.sgd(1e-3)
  loss = lambda p: jnp.mean((nnx.merge(graphdef, p)(x) - 1.0) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  new = optax.apply_updates(params, tx.update(grads, tx.init(params))[0])
  assert float(new["conv"]["lscalar_s"][...]) != float(conv.lscalar_s[...])
  assert float(loss(new)) < float(loss(params))

  s = analysis.summary(model, (5, 5, 2), print_fn=None).layers[0]
  assert s.method == "lscalar"
  assert s.params_by_bits == {1: 3 * 3 * 2 * 4, 32: 1}  # sign(W) and s
  assert s.scale_mults == 5 * 5 * 4 and s.k_mults == 0
  assert s.speedup == pytest.approx(64 * 18 / (18 + 64))  # XNOR-Net's, the default


def test_unregistered_method_is_unknown(lscalar):
  methods.unregister(lscalar)
  with pytest.raises(ValueError, match="not a known method"):
    methods.resolve("lscalar")
  with pytest.raises(ValueError, match="weight_scale='lscalar'"):
    nn.QuantSpec(kernel_quantizer="ste_sign", weight_scale="lscalar")
  methods.register(lscalar)  # the fixture unregisters it again
