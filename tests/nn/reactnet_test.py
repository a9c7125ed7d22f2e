"""ReActNet's RSign and RPReLU (docs/reactnet.md) against hand-computed values and
gradients: RSign's straight-through gradient reaches its shift, RPReLU's pieces."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from bnnjax import nn
from bnnjax.train import optim

# Two channels; x chosen so that x + b hits each case: far below, inside and above
# the STE window |x + b| <= 1, and x + b = 0 exactly (sign(0) = +1).
X = jnp.array([[-2.0, 0.5],
               [-0.25, -1.5],
               [0.5, 3.0],
               [1.5, -0.5]])
B = jnp.array([0.5, -1.0])
# x + b:      [[-1.5, -0.5], [0.25, -2.5], [1.0, 2.0], [2.0, -1.5]]


def _with(module, **values):
  for name, value in values.items():
    getattr(module, name)[...] = jnp.asarray(value, jnp.float32)
  return module


def _grads(module, x, g):
  """``(∂L/∂x, ∂L/∂params)`` of ``L = Σ g · module(x)``."""
  graphdef, params = nnx.split(module)

  def loss(params, x):
    return jnp.sum(g * nnx.merge(graphdef, params)(x))
  return jax.jit(jax.grad(loss, argnums=(1, 0)))(params, x)


def test_learnable_bias_adds_a_per_channel_shift():
  m = _with(nn.LearnableBias(2), bias=B)
  np.testing.assert_array_equal(m(X), X + B)
  assert isinstance(m.bias, nn.ThresholdShift)
  np.testing.assert_array_equal(nn.LearnableBias(3).bias[...], jnp.zeros(3))  # init 0
  x4 = jnp.ones((1, 2, 2, 2))  # NHWC: the last axis is the channel
  np.testing.assert_array_equal(m(x4)[0, 1, 1], 1 + B)


def test_rsign_is_sign_of_shifted_input_with_sign_zero_plus_one():
  m = _with(nn.RSign(2), bias=B)
  want = jnp.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [1.0, -1.0]])
  np.testing.assert_array_equal(m(X), want)
  np.testing.assert_array_equal(jax.jit(lambda x: m(x))(X), want)
  # x = α = −b exactly: sign(0) = +1 (the paper's strict '>' would give −1).
  np.testing.assert_array_equal(m(jnp.array([[-0.5, 1.0]])), jnp.array([[1.0, 1.0]]))
  # Initialised at b = 0 it is the plain sign.
  np.testing.assert_array_equal(nn.RSign(2)(X), jnp.where(X >= 0, 1.0, -1.0))


def test_rsign_ste_gradient_reaches_the_shift():
  """∂/∂x = ∂/∂b = the STE mask of x + b: ``ste_sign``'s 1{|x + b| <= 1}, summed over
  the positions of each channel for b."""
  g = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]])
  gx, gp = _grads(_with(nn.RSign(2), bias=B), X, g)
  mask = jnp.array([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0], [0.0, 0.0]])  # |x+b| <= 1
  np.testing.assert_array_equal(gx, g * mask)
  np.testing.assert_array_equal(gp["bias"][...], jnp.array([3.0 + 5.0, 2.0]))


def test_rsign_with_approx_sign_uses_its_surrogate_at_the_shifted_input():
  g = jnp.ones_like(X)
  m = _with(nn.RSign(2, quantizer="approx_sign"), bias=B)
  gx, gp = _grads(m, X, g)
  z = np.asarray(X + B)
  want = np.where(np.abs(z) <= 1, 2 - 2 * np.abs(z), 0.0)  # Bi-Real's 2 − 2|z|
  np.testing.assert_allclose(gx, want, rtol=1e-6)
  np.testing.assert_allclose(gp["bias"][...], want.sum(0), rtol=1e-6)
  # 2 − 2·0.25 = 1.5 and 2 − 2·1 = 0 in channel 0; 2 − 2·0.5 = 1 in channel 1.
  np.testing.assert_allclose(gp["bias"][...], [1.5, 1.0], rtol=1e-6)


def test_rprelu_values_by_hand():
  m = _with(nn.RPReLU(2), gamma=[0.5, -1.0], beta=[0.25, -0.5], zeta=[0.1, 0.2])
  x = jnp.array([[2.0, 0.0], [0.5, -3.0], [-1.5, -1.0]])
  # channel 0: x > 0.5 → x − 0.5 + 0.1; else 0.25·(x − 0.5) + 0.1
  # channel 1: x > −1 → x + 1 + 0.2;   else −0.5·(x + 1) + 0.2
  want = jnp.array([[1.6, 1.2],
                    [0.1, 1.2],      # x = γ: the β branch, 0 + ζ (continuous)
                    [-0.4, 0.2]])
  np.testing.assert_allclose(m(x), want, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(lambda x: m(x))(x), want, rtol=1e-6)


def test_rprelu_gradients_by_hand():
  m = _with(nn.RPReLU(2), gamma=[0.5, -1.0], beta=[0.25, -0.5], zeta=[0.1, 0.2])
  x = jnp.array([[2.0, 0.0], [0.5, -3.0], [-1.5, -1.0]])
  g = jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
  gx, gp = _grads(m, x, g)
  slope = jnp.array([[1.0, 1.0], [0.25, -0.5], [0.25, -0.5]])  # 1 or β (x <= γ: β)
  np.testing.assert_allclose(gx, g * slope, rtol=1e-6)
  np.testing.assert_allclose(gp["gamma"][...], -(g * slope).sum(0), rtol=1e-6)
  np.testing.assert_allclose(gp["zeta"][...], g.sum(0), rtol=1e-6)
  # ∂/∂β = x − γ where x <= γ: channel 0: 3·0 + 5·(−2); channel 1: 4·(−2) + 6·0.
  np.testing.assert_allclose(gp["beta"][...], [-10.0, -8.0], rtol=1e-6)


def test_rprelu_init_is_prelu_and_special_cases():
  x = jax.random.normal(jax.random.key(0), (3, 5, 5, 4))
  m = nn.RPReLU(4)
  np.testing.assert_array_equal(m.beta[...], jnp.full(4, 0.25))
  np.testing.assert_array_equal(m.gamma[...], jnp.zeros(4))
  np.testing.assert_array_equal(m.zeta[...], jnp.zeros(4))
  np.testing.assert_allclose(m(x), jnp.where(x > 0, x, 0.25 * x), rtol=1e-6)
  np.testing.assert_array_equal(nn.RPReLU(4, slope_init=0.0)(x), jax.nn.relu(x))
  identity = _with(nn.RPReLU(4), beta=jnp.ones(4))
  np.testing.assert_allclose(identity(x), x, rtol=1e-6)
  # Smooth away from the kink: numerical gradients agree (inputs at least 0.1 from γ,
  # central differences of step 1e-2 never cross it).
  gamma = jnp.array([0.3, -0.2, 0.1, 0.0])
  shifted = _with(nn.RPReLU(4), gamma=gamma, zeta=[1.0, 0.0, -1.0, 2.0])
  away = gamma + jnp.sign(x) * (0.1 + jnp.abs(x))
  check_grads(lambda x: shifted(x), (away,), order=1, modes=("rev",), eps=1e-2)


def test_own_parameter_types_selected_by_type_never_decayed():
  shift, rprelu = nn.LearnableBias(4), nn.RPReLU(4)
  assert type(shift.bias) is nn.ThresholdShift
  assert type(rprelu.gamma) is nn.ThresholdShift and type(rprelu.zeta) is nn.ThresholdShift
  assert type(rprelu.beta) is nn.PReLUSlope
  for v in (shift.bias, rprelu.gamma, rprelu.beta, rprelu.zeta):
    assert isinstance(v, nnx.Param) and not optim.decays(v)
  # Not decayed because of their type, whatever their rank.
  assert not optim.decays(nn.ThresholdShift(jnp.zeros((3, 3))))
  assert not optim.decays(nn.PReLUSlope(jnp.zeros((3, 3))))
  labels = optim.param_labels(nnx.state(rprelu, nnx.Param),
                              {"ThresholdShift": 1e-3, "PReLUSlope": 1e-4})
  assert labels["gamma"] == "ThresholdShift" and labels["beta"] == "PReLUSlope"


def test_bad_arguments_name_the_field():
  with pytest.raises(ValueError, match="num_features=0"):
    nn.RPReLU(0)
  with pytest.raises(ValueError, match="num_features=2.5"):
    nn.LearnableBias(2.5)
  with pytest.raises(ValueError, match="'foo'.*allowed"):
    nn.RSign(2, quantizer="foo")
  with pytest.raises(ValueError, match="quantizer='ste_heaviside' is not a ±1 sign"):
    nn.RSign(2, quantizer="ste_heaviside")
