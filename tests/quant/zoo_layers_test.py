"""The zoo's quantizers in QuantConv / QuantDense, and the refusal of the bit-packed
path and export for quantizers that are not ±1 signs (docs/quantizers.md)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnnjax import nn
from bnnjax import packed
from bnnjax import quant

# (input quantizer, its kwargs, kernel quantizer, its kwargs)
PAIRS = [
    ("ste_heaviside", {}, "magnitude_aware_sign", {}),
    ("dorefa", {"k_bit": 2}, "dorefa", {"k_bit": 2, "mode": "weights"}),
    ("ste_tern", {"threshold": 0.3}, "ste_tern", {"ternary_weight_networks": True}),
    ("ste_sign", {}, "magnitude_aware_sign", {"clip": None}),
]


def _spec(iq, ikw, kq, kkw, **extra):
  return nn.QuantSpec(input_quantizer=iq, input_quantizer_kwargs=ikw, kernel_quantizer=kq,
                      kernel_quantizer_kwargs=kkw, **extra)


@pytest.mark.parametrize("iq,ikw,kq,kkw", PAIRS)
def test_dense_forward_is_the_product_of_quantized_operands_and_backward_runs(iq, ikw, kq,
                                                                               kkw):
  spec = _spec(iq, ikw, kq, kkw)
  layer = nn.QuantDense(6, 3, spec=spec, rngs=nnx.Rngs(0))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 6)), jnp.float32)
  q_in, q_k = quant.get_quantizer(iq, **ikw), quant.get_quantizer(kq, **kkw)
  graphdef, params = nnx.split(layer, nnx.Param)

  @jax.jit
  def run(params, x):
    layer = nnx.merge(graphdef, params)
    reference = q_in(x) @ q_k(layer.kernel[...]) + layer.bias[...]
    grads = jax.grad(lambda p, x: jnp.sum(nnx.merge(graphdef, p)(x) ** 2),
                     argnums=(0, 1))(params, x)
    return layer(x), reference, grads
  y, reference, (g_params, g_x) = run(params, x)
  np.testing.assert_allclose(y, reference, rtol=1e-6, atol=1e-6)
  g_k = g_params["kernel"][...]
  assert np.all(np.isfinite(g_k)) and np.any(g_k != 0)
  assert np.all(np.isfinite(g_x)) and np.any(g_x != 0)


@pytest.mark.parametrize("iq,ikw,kq,kkw", PAIRS[:3])
def test_conv_forward_and_backward(iq, ikw, kq, kkw):
  spec = _spec(iq, ikw, kq, kkw, weight_scale="xnor")  # BWN's α on top of q_k(W)
  layer = nn.QuantConv(3, 4, 3, spec=spec, rngs=nnx.Rngs(1))
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 5, 3)), jnp.float32)
  graphdef, params = nnx.split(layer, nnx.Param)

  @jax.jit
  def run(params, x):
    f = lambda p: jnp.sum(nnx.merge(graphdef, p)(x) ** 2)
    return nnx.merge(graphdef, params)(x), jax.grad(f)(params)
  y, g = run(params, x)
  assert y.shape == (2, 5, 5, 4) and np.all(np.isfinite(y))
  g_k = g["kernel"][...]
  assert np.all(np.isfinite(g_k)) and np.any(g_k != 0)
  assert not layer._packed((5, 5))  # auto: the float path for these quantizers


@pytest.mark.parametrize("field,name,kw", [
    ("kernel_quantizer", "ste_tern", {}), ("kernel_quantizer", "magnitude_aware_sign", {}),
    ("kernel_quantizer", "dorefa", {"mode": "weights"}),
    ("input_quantizer", "ste_heaviside", {}), ("input_quantizer", "dorefa", {})])
def test_compute_packed_with_a_quantizer_that_is_not_a_sign_is_refused(field, name, kw):
  fields = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign", field: name,
            field + "_kwargs": kw}
  with pytest.raises(ValueError, match=rf"QuantSpec.{field}='{name}' is not a ±1 sign.*"
                                       r"compute='packed'.*\['approx_sign'"):
    nn.QuantSpec(compute="packed", **fields)
  assert not nn.QuantSpec(compute="auto", **fields).sign_operands
  nn.QuantSpec(compute="float", **fields)  # the float path takes any quantizer


def test_compute_packed_with_signs_uses_the_packed_path():
  spec = nn.QuantSpec(input_quantizer="approx_sign", kernel_quantizer="swish_sign",
                      compute="packed")
  assert spec.sign_operands
  assert nn.QuantDense(4, 2, spec=spec, rngs=nnx.Rngs(0))._packed(None)


class _Net(nnx.Module):
  def __init__(self, spec):
    self.dense = nn.QuantDense(6, 3, spec=spec, rngs=nnx.Rngs(0))

  def __call__(self, x, train=False):
    return self.dense(x)


@pytest.mark.parametrize("field,spec", [
    ("kernel_quantizer", nn.QuantSpec(kernel_quantizer="ste_tern", weight_scale="xnor")),
    ("kernel_quantizer", nn.QuantSpec(input_quantizer="ste_sign",
                                      kernel_quantizer="magnitude_aware_sign")),
    ("input_quantizer", nn.QuantSpec(input_quantizer="dorefa", kernel_quantizer="ste_sign")),
])
def test_packed_export_refuses_quantizers_that_are_not_signs(field, spec):
  name = getattr(spec, field)
  with pytest.raises(ValueError, match=rf"QuantSpec.{field}='{name}' of QuantDense\(6 -> 3\)"
                                       r" is not a ±1 sign.*packed export"):
    packed.pack_model(_Net(spec))


def test_packed_export_takes_every_sign_quantizer():
  for name in quant.sign_quantizers():
    pm = packed.pack_model(_Net(nn.QuantSpec(input_quantizer=name, kernel_quantizer=name)))
    assert len(packed.packed_layers(pm)) == 1
