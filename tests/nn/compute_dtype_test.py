"""config.binary_compute_dtype: layers with ±1 input and kernel compute their float
±1 product on bfloat16 operands accumulated in float32. The forward is the same integer
(exactly), the straight-through gradients round to bfloat16, and every other layer
ignores it (issue 16, item 5)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from bnnjax import models
from bnnjax import nn
from bnnjax.nn import layers
from bnnjax.train import trainer
from configs import common


def test_which_dtype():
  xnor = nn.method_spec("xnor")
  assert xnor.compute_dtype == "auto"
  assert layers.binary_compute_dtype(xnor, "cpu") is None
  assert layers.binary_compute_dtype(xnor, "gpu") is None  # docs/gpu.md: measured
  assert layers.binary_compute_dtype(xnor, "tpu") == jnp.bfloat16
  assert layers.binary_compute_dtype(nn.method_spec("xnor", compute_dtype="bfloat16"),
                                     "gpu") == jnp.bfloat16
  bf16 = nn.method_spec("xnor", compute_dtype="bfloat16")
  assert layers.binary_compute_dtype(bf16, "cpu") == jnp.bfloat16
  f32 = nn.method_spec("xnor", compute_dtype="float32")
  assert layers.binary_compute_dtype(f32, "gpu") is None
  # a float operand (BWN's input, full precision, multi-bit): never
  for spec in (nn.method_spec("bwn", compute_dtype="bfloat16"),
               nn.method_spec("fp", compute_dtype="bfloat16"),
               nn.method_spec("xnor", kernel_quantizer="dorefa",
                              compute_dtype="bfloat16")):
    assert layers.binary_compute_dtype(spec, "gpu") is None


def test_bad_values_name_the_field():
  with pytest.raises(ValueError, match=r"compute_dtype='float16'; allowed values are "
                                       r"\['auto', 'float32', 'bfloat16'\]"):
    nn.QuantSpec(kernel_quantizer="ste_sign", compute_dtype="float16")
  c = common.base_config()
  c.binary_compute_dtype = "float16"
  with pytest.raises(ValueError, match="binary_compute_dtype"):
    trainer.set_up(c)
  c.binary_compute_dtype = "bfloat16"
  assert trainer.quant_spec(c).compute_dtype == "bfloat16"


def _operand_dtypes(fn, *args):
  jaxpr = jax.make_jaxpr(fn)(*args)
  return [(tuple(str(v.aval.dtype) for v in e.invars), str(e.outvars[0].aval.dtype))
          for e in jaxpr.eqns if e.primitive.name in ("dot_general", "conv_general_dilated")]


@pytest.mark.parametrize("method", ["xnor", "xnorpp_2", "bonn", "xnor_cf_2"])
@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_bfloat16_forward_equals_float32_and_gradients_are_close(method, kind):
  out = {}
  for dtype in ("float32", "bfloat16"):
    spec = nn.method_spec(method, compute="float", compute_dtype=dtype)
    if kind == "conv":  # 300 channels: tap sums beyond bfloat16's 256 exact integers
      layer = nn.QuantConv(300, 8, 3, spec=spec, input_size=(5, 5), rngs=nnx.Rngs(0))
      x = jax.random.normal(jax.random.key(1), (2, 5, 5, 300))
    else:
      layer = nn.QuantDense(300, 8, spec=spec, rngs=nnx.Rngs(0))
      x = jax.random.normal(jax.random.key(1), (2, 300))
    graphdef, params = nnx.split(layer)
    f = lambda p, v: nnx.merge(graphdef, p)(v)
    loss = lambda p, v: jnp.sum(f(p, v) ** 2)
    out[dtype] = (jax.jit(f)(params, x), jax.jit(jax.grad(loss, (0, 1)))(params, x),
                  _operand_dtypes(f, params, x))
  (y32, g32, ops32), (y16, g16, ops16) = out["float32"], out["bfloat16"]
  assert y16.dtype == jnp.float32
  np.testing.assert_array_equal(y16, y32)
  assert ops32 and all(ins == ("float32", "float32") for ins, _ in ops32)
  assert ops16 and all(ins == ("bfloat16", "bfloat16") and o == "float32"
                       for ins, o in ops16)
  for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
    assert a.dtype == b.dtype
    scale = float(jnp.max(jnp.abs(b))) or 1.0
    np.testing.assert_allclose(a / scale, b / scale, atol=2e-2)


def test_a_training_step_has_the_same_loss_in_bfloat16():
  """The whole model: the same loss and logits (the forward is exact), gradients
  within bfloat16 rounding."""
  x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 12, 12, 3)), jnp.float32)
  y = jnp.asarray([0, 1, 2, 3])
  out = {}
  for dtype in ("float32", "bfloat16"):
    spec = nn.method_spec("xnor", compute="float", compute_dtype=dtype)
    model = models.get_model("resnet18", num_classes=5, input_shape=(12, 12, 3),
                             spec=spec, rngs=nnx.Rngs(0), width=8)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest):
      # a copy of the batch statistics, which train=True updates inside the trace
      logits = nnx.merge(graphdef, params, jax.tree.map(lambda a: a, rest))(x, train=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    out[dtype] = jax.jit(jax.value_and_grad(loss))(params, rest)
  (l32, g32), (l16, g16) = out["float32"], out["bfloat16"]
  assert float(l16) == float(l32)
  n32 = optax.global_norm(g32)
  assert float(optax.global_norm(jax.tree.map(jnp.subtract, g16, g32))) < 0.05 * float(n32)
