"""BONN losses against hand-computed values and closed-form gradients."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import losses

# Dense kernel: filters are columns. Filter 0 = [0.0, 0.3] (a zero weight: k >= 0
# mode), filter 1 = [-0.5, 2.0] (a negative weight).
K = np.array([[0.0, -0.5], [0.3, 2.0]], np.float32)
W = np.array([1.0, 0.5], np.float32)       # modulation per input row
MU = np.array([0.2, 1.0], np.float32)
LOG_SIGMA = np.array([0.0, math.log(2.0)], np.float32)
NU = 0.1


def test_kernel_loss_by_hand():
  # reconstruction: f0 (1-0)^2 + (1-0.15)^2 = 1.7225; f1 (-1+0.5)^2 + (1-1)^2 = 0.25
  # prior: f0 ((0-.2)^2 + (.3-.2)^2)/1 = 0.05; f1 ((-.5+1)^2 + (2-1)^2)/4 = 0.3125
  # log det: D_i = 2: f0 2*log(1) = 0; f1 2*log(4)
  expected = 1.7225 + 0.25 + NU * (0.05 + 0.3125 + 2 * math.log(4.0))
  got = jax.jit(lambda *a: losses.bayesian_kernel_loss(*a, nu=NU))(K, W, MU, LOG_SIGMA)
  assert float(got) == pytest.approx(expected, rel=1e-6)


def test_kernel_loss_conv_modulation_broadcasts_over_channels():
  k = jax.random.normal(jax.random.key(0), (3, 3, 2, 4))
  w = jax.random.uniform(jax.random.key(1), (3, 3))
  mu = jnp.full((4,), 0.5)
  ls = jnp.zeros(4)
  got = losses.bayesian_kernel_loss(k, w, mu, ls, nu=0.0)
  expected = jnp.sum((jnp.where(k >= 0, 1.0, -1.0) - w[:, :, None, None] * k) ** 2)
  assert float(got) == pytest.approx(float(expected), rel=1e-6)
  scalar = losses.bayesian_kernel_loss(k, jnp.float32(2.0), mu, ls, nu=0.0)
  assert float(scalar) == pytest.approx(
      float(jnp.sum((jnp.where(k >= 0, 1.0, -1.0) - 2.0 * k) ** 2)), rel=1e-6)
  with pytest.raises(ValueError, match="modulation"):
    losses.bayesian_kernel_loss(k, jnp.ones(3), mu, ls, nu=0.0)


def test_kernel_loss_closed_form_gradients():
  grads = jax.jit(jax.grad(lambda *a: losses.bayesian_kernel_loss(*a, nu=NU),
                           argnums=(0, 1, 2, 3)))(K, W, MU, LOG_SIGMA)
  k, w, mu, ls = (np.asarray(v, np.float64) for v in (K, W, MU, LOG_SIGMA))
  k_hat = np.where(k >= 0, 1.0, -1.0)
  s = np.where(k >= 0, 1.0, -1.0)  # which mode each weight belongs to
  diff = k - s * mu[None, :]
  var = np.exp(2 * ls)[None, :]
  resid = k_hat - w[:, None] * k
  d_k = -2 * w[:, None] * resid + NU * 2 * diff / var
  d_w = np.sum(-2 * k * resid, axis=1)
  d_mu = NU * np.sum(-2 * s * diff / var, axis=0)
  d_ls = NU * (np.sum(-2 * diff ** 2 / var, axis=0) + 2 * k.shape[0])
  for got, want in zip(grads, (d_k, d_w, d_mu, d_ls)):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def _plain_kernel_loss(k, w, mu, ls, nu):
  """Eq. 7/9 written out, differentiated by autodiff (the loss's own backward is
  hand-written and reuses sums kept by its forward pass)."""
  w = w if w.ndim == 0 else w.reshape(w.shape + (1,) * (k.ndim - w.ndim))
  k_hat = jax.lax.stop_gradient(jnp.where(k >= 0, 1.0, -1.0))
  diff = jnp.where(k >= 0, k - mu, k + mu)
  return (jnp.sum((k_hat - w * k) ** 2)
          + nu * (jnp.sum(diff ** 2 * jnp.exp(-2 * ls)) + k.size // k.shape[-1]
                  * jnp.sum(2 * ls)))


@pytest.mark.parametrize("w_shape", [(3, 3), ()], ids=["per_tap", "scalar"])
def test_kernel_loss_conv_gradients_equal_autodiffs(w_shape):
  keys = jax.random.split(jax.random.key(3), 4)
  k = 0.1 * jax.random.normal(keys[0], (3, 3, 5, 4))
  k = k.at[0, 0, 0, 0].set(0.0)  # a zero weight: the k >= 0 mode
  w = jax.random.uniform(keys[1], w_shape, minval=5.0, maxval=15.0)
  mu = jax.random.uniform(keys[2], (4,), minval=0.02, maxval=0.2)
  ls = jax.random.normal(keys[3], (4,))
  args = (k, w, mu, ls)
  value, grads = jax.jit(jax.value_and_grad(
      lambda *a: losses.bayesian_kernel_loss(*a, nu=NU), argnums=(0, 1, 2, 3)))(*args)
  want_value, want = jax.value_and_grad(
      lambda *a: _plain_kernel_loss(*a, NU), argnums=(0, 1, 2, 3))(*args)
  assert float(value) == pytest.approx(float(want_value), rel=1e-6)
  for got, ref in zip(grads, want):
    assert got.shape == ref.shape and got.dtype == ref.dtype
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.max(jnp.abs(ref))))


def test_kernel_loss_nu_may_be_traced_and_differentiated():
  k = 0.1 * jax.random.normal(jax.random.key(5), (3, 3, 4, 2))
  w, mu, ls = jnp.full((3, 3), 10.0), jnp.array([0.05, 0.1]), jnp.array([0.3, -0.2])
  nus = jnp.array([0.0, 1e-4, 0.5])
  got = jax.vmap(lambda nu: losses.bayesian_kernel_loss(k, w, mu, ls, nu=nu))(nus)
  want = jnp.stack([_plain_kernel_loss(k, w, mu, ls, nu) for nu in nus])
  np.testing.assert_allclose(got, want, rtol=1e-6)
  d_nu = jax.grad(lambda nu: losses.bayesian_kernel_loss(k, w, mu, ls, nu=nu))(0.3)
  want_d = jax.grad(lambda nu: _plain_kernel_loss(k, w, mu, ls, nu))(0.3)
  assert float(d_nu) == pytest.approx(float(want_d), rel=1e-5)


def test_kernel_loss_bfloat16_kernel_sums_in_float32():
  k = 0.1 * jax.random.normal(jax.random.key(4), (3, 3, 8, 4))
  w, mu, ls = jnp.full((3, 3), 10.0), jnp.full((4,), 0.08), jnp.zeros(4)
  value, g = jax.value_and_grad(lambda k: losses.bayesian_kernel_loss(
      k, w, mu, ls, nu=NU))(k.astype(jnp.bfloat16))
  assert value.dtype == jnp.float32 and g.dtype == jnp.bfloat16
  k32 = k.astype(jnp.bfloat16).astype(jnp.float32)  # the same weights
  assert float(value) == pytest.approx(float(_plain_kernel_loss(k32, w, mu, ls, NU)),
                                       rel=1e-6)


F = np.array([[1.0, 2.0], [0.0, -1.0]], np.float32)
Y = np.array([1, 0])
C = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], np.float32)
LS = np.array([[0.0, 0.0], [math.log(2.0), 0.0], [0.0, 0.0]], np.float32)


def test_feature_loss_by_hand():
  # ex 0: class 1, d = [0, 1]: ||d||^2 = 1; dim 0: 0/4 + log 4; dim 1: 1/1 + 0
  # ex 1: class 0, d = [0, -1]: ||d||^2 = 1; dim 1: 1/1
  got = jax.jit(losses.bayesian_feature_loss)(F, Y, C, LS)
  np.testing.assert_allclose(got, [1 + math.log(4.0) + 1, 1 + 1], rtol=1e-6)


def test_feature_loss_gradient_wrt_sigma():
  g = jax.grad(lambda ls: losses.bayesian_feature_loss(F, Y, C, ls).sum())(LS)
  # d/dls [d^2 exp(-2 ls) + 2 ls] = -2 d^2 exp(-2 ls) + 2, only on the rows used
  expected = np.zeros_like(LS)
  expected[1] = [-2 * 0 / 4 + 2, -2 * 1 + 2]
  expected[0] = [2, -2 * 1 + 2]
  np.testing.assert_allclose(g, expected, rtol=1e-6, atol=1e-7)


def test_update_centers_by_hand():
  new = jax.jit(losses.update_centers)(C, F, Y, 0.5)
  # class 0: (1*[0,0] - [0,-1]) / 2 = [0, .5] -> [0, -.25]
  # class 1: ([1,1] - [1,2]) / 2 = [0, -.5] -> [1, 1.25]; class 2 absent: unchanged
  np.testing.assert_allclose(new, [[0.0, -0.25], [1.0, 1.25], [5.0, 5.0]], rtol=1e-6)
  assert np.array_equal(np.asarray(new)[2], C[2])


def test_update_centers_several_examples_per_class():
  f = np.array([[2.0], [4.0], [9.0]], np.float32)
  y = np.array([0, 0, 1])
  c = np.array([[0.0], [1.0]], np.float32)
  new = losses.update_centers(c, f, y, 1.0)
  # class 0: (2*0 - 6) / 3 = -2 -> 2; class 1: (1 - 9) / 2 = -4 -> 5
  np.testing.assert_allclose(new, [[2.0], [5.0]])
  g = jax.grad(lambda f: losses.update_centers(c, f, y, 1.0).sum())(f)
  np.testing.assert_array_equal(g, 0.0)  # outside the gradient
