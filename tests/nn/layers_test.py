"""QuantConv / QuantDense against direct formulas of docs/xnor.md, docs/cross_filter.md,
docs/xnorpp.md."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from bnnjax import nn
from bnnjax import quant

DN = ("NHWC", "HWIO", "NHWC")


def conv(x, w, strides=(1, 1), padding="SAME"):
  """The reference conv, at the precision the layers state for a float operand
  (``layers.matmul_precision``): a GPU's default for float32 is TF32."""
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=DN,
                                  precision=lax.Precision.HIGHEST)


def sgn(x):
  return jnp.where(x >= 0, 1.0, -1.0).astype(x.dtype)


@pytest.fixture
def x():
  return jax.random.normal(jax.random.key(0), (2, 9, 9, 4))


def make_conv(method, strides=1, padding="SAME", out=8, **kw):
  spec = method if isinstance(method, nn.QuantSpec) else nn.method_spec(method)
  return nn.QuantConv(4, out, 3, strides=strides, padding=padding, spec=spec,
                      input_size=(9, 9), rngs=nnx.Rngs(0), **kw)


def test_fp_is_plain_conv(x):
  layer = make_conv("fp", use_bias=True)
  layer.bias[...] = jnp.arange(8.0)
  np.testing.assert_allclose(layer(x), conv(x, layer.kernel[...]) + jnp.arange(8.0),
                             rtol=1e-6)
  assert type(layer.kernel) is nnx.Param


@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_bwn_and_xnor_follow_formula(x, strides, padding):
  bwn = make_conv("bwn", strides, padding)
  w = bwn.kernel[...]
  alpha = quant.xnor_weight_scale(w)
  s = (strides, strides)
  # Float input: the per-shape lowering sums in another order than XLA's conv.
  np.testing.assert_allclose(bwn(x), conv(x, sgn(w), s, padding) * alpha, rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(bwn(x), conv(x, alpha * sgn(w), s, padding), rtol=1e-5, atol=1e-5)
  xnor = make_conv("xnor", strides, padding)
  k_map = quant.activation_scale(x, (3, 3), s, padding)
  np.testing.assert_allclose(
      xnor(x), conv(sgn(x), sgn(w), s, padding) * k_map * alpha, rtol=1e-6)


def test_bw_cf_1_is_exactly_bwn(x):
  np.testing.assert_array_equal(make_conv("bw_cf_1")(x), make_conv("bwn")(x))
  np.testing.assert_array_equal(make_conv("xnor_cf_1")(x), make_conv("xnor")(x))


@pytest.mark.parametrize("n", [2, 4, 8])
def test_cross_filter_layers_share_alpha(x, n):
  layer = make_conv(f"xnor_cf_{n}")
  w = layer.kernel[...]
  a = quant.cross_filter_scale(w, n)
  np.testing.assert_allclose(
      layer(x), conv(sgn(x), sgn(w)) * quant.activation_scale(x, (3, 3)) * a, rtol=1e-6)
  assert len(np.unique(np.asarray(a))) == 8 // n


def test_cross_filter_group_size_must_divide_filters():
  with pytest.raises(ValueError, match=r"group_size=3.*c_out=8"):
    make_conv("bw_cf_3")
  with pytest.raises(ValueError, match=r"group_size=3.*c_out=8"):
    nn.QuantDense(4, 8, spec=nn.method_spec("bw_cf", group_size=3), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("strides", [1, 2])
def test_pad_value_one_pads_binary_input_with_plus_one(x, strides):
  spec = nn.method_spec("xnorpp_1", pad_value=1)
  layer = make_conv(spec, strides)
  w = layer.kernel[...]
  s = (strides, strides)
  pads = lax.padtype_to_pads((9, 9), (3, 3), s, "SAME")
  xp = jnp.pad(sgn(x), ((0, 0), *pads, (0, 0)), constant_values=1.0)
  expected = conv(xp, sgn(w), s, "VALID") * layer.gamma_alpha[...]
  np.testing.assert_array_equal(layer(x), expected)
  # And it differs from zero padding at the border only.
  zero = make_conv("xnorpp_1", strides)
  diff = np.asarray(layer(x) != zero(x))
  assert diff.any() and not diff[:, 1:-1, 1:-1].any()


EXPECTED_GAMMA_SHAPES = {
    1: {"gamma_alpha": (8,)},
    2: {"gamma_alpha": (5, 5, 8)},
    3: {"gamma_alpha": (8,), "gamma_beta": (5, 5)},
    4: {"gamma_alpha": (8,), "gamma_beta": (5,), "gamma_gamma": (5,)},
}


@pytest.mark.parametrize("case", [1, 2, 3, 4])
def test_xnorpp_gamma_shapes_and_fold(x, case):
  layer = make_conv(f"xnorpp_{case}", strides=2)  # 9x9 -> 5x5
  factors = nnx.state(layer, nn.ScaleFactor)
  shapes = {k: v.shape for k, v in nnx.to_flat_state(factors)}
  assert {k[-1]: s for k, s in shapes.items()} == EXPECTED_GAMMA_SHAPES[case]
  # Random factors, so the fold is checked on non-trivial values.
  keys = iter(jax.random.split(jax.random.key(case), 3))
  for name in EXPECTED_GAMMA_SHAPES[case]:
    var = getattr(layer, name)
    var[...] = jax.random.uniform(next(keys), var.shape, minval=0.5, maxval=1.5)
  a = layer.gamma_alpha[...]
  explicit = {1: lambda: a,
              2: lambda: a,
              3: lambda: jnp.einsum("o,hw->hwo", a, layer.gamma_beta[...]),
              4: lambda: jnp.einsum("o,h,w->hwo", a, layer.gamma_beta[...],
                                    layer.gamma_gamma[...])}[case]()
  folded = layer.folded_scale()
  np.testing.assert_allclose(folded, explicit, rtol=1e-6)
  # Inference with the single folded tensor gives identical outputs.
  binary = conv(sgn(x), sgn(layer.kernel[...]), (2, 2))
  np.testing.assert_array_equal(layer(x), binary * folded)


def test_xnorpp_spatial_cases_need_input_size(x):
  with pytest.raises(ValueError, match="input_size"):
    nn.QuantConv(4, 8, 3, spec=nn.method_spec("xnorpp_3"), rngs=nnx.Rngs(0))
  layer = make_conv("xnorpp_2")
  with pytest.raises(ValueError, match="input_size"):
    layer(x[:, :8, :8])


def test_latent_weights_selected_by_type():
  class Two(nnx.Module):
    def __init__(self):
      self.first = nn.QuantConv(1, 4, 3, rngs=nnx.Rngs(0))
      self.binary = nn.QuantConv(4, 4, 3, spec=nn.method_spec("xnorpp_1"), rngs=nnx.Rngs(1))
  model = Two()
  latent = nnx.to_flat_state(nnx.state(model, nn.LatentWeight))
  assert [k for k, _ in latent] == [("binary", "kernel")]
  assert isinstance(model.binary.kernel, nnx.Param)  # still a Param for optimizers


def test_bwn_kernel_gradient_is_xnor_net_gradient():
  """Autodiff through alpha gives (1/n) sign(W_i) Σ_j g_j sign(W_j) + alpha g_i 1{|W_i|<=1}."""
  layer = nn.QuantDense(6, 3, use_bias=False, spec=nn.method_spec("bwn"), rngs=nnx.Rngs(0))
  layer.kernel[...] = layer.kernel[...] * 2.0  # some weights beyond the clip
  xin = jax.random.normal(jax.random.key(1), (5, 6))
  target = jax.random.normal(jax.random.key(2), (5, 3))
  loss_of_wtilde = lambda wt: jnp.sum((xin @ wt - target) ** 2)
  w = layer.kernel[...]
  alpha = quant.xnor_weight_scale(w)
  g = jax.grad(loss_of_wtilde)(alpha * sgn(w))  # dL/dW~
  n = w.shape[0]
  expected = (sgn(w) * jnp.sum(g * sgn(w), axis=0) / n
              + alpha * g * (jnp.abs(w) <= 1))
  grads = nnx.grad(lambda m: jnp.sum((m(xin) - target) ** 2))(layer)
  np.testing.assert_allclose(grads.kernel[...], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["fp", "bwn", "xnor", "bw_cf_2", "xnor_cf_4",
                                    "xnorpp_1", "xnorpp_2", "xnorpp_3", "xnorpp_4"])
def test_dense_every_method(method):
  layer = nn.QuantDense(6, 8, spec=nn.method_spec(method), rngs=nnx.Rngs(0))
  xin = jax.random.normal(jax.random.key(3), (4, 6))
  y = jax.jit(lambda x: layer(x))(xin)
  assert y.shape == (4, 8)
  spec = layer.spec
  xq = sgn(xin) if spec.binary_input else xin
  wq = sgn(layer.kernel[...]) if spec.binary_kernel else layer.kernel[...]
  ref = xq @ wq
  if spec.activation_scale:
    ref = ref * jnp.mean(jnp.abs(xin), -1, keepdims=True)
  if layer.folded_scale() is not None:
    ref = ref * layer.folded_scale().reshape(-1)
  np.testing.assert_allclose(y, ref + layer.bias[...], rtol=1e-5, atol=1e-6)


def test_layers_work_in_bfloat16():
  layer = make_conv("xnor")
  xb = jax.random.normal(jax.random.key(4), (1, 9, 9, 4)).astype(jnp.bfloat16)
  assert layer(xb).dtype == jnp.bfloat16
