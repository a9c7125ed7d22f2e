"""Sign quantizers: forward exactly ±1 with sign(0)=+1, backward equal to
docs/sign.md#straight-through-gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import quant

CLIP = 1.0
# A grid with 0, ±clip, values on both sides of the clip and of |x| = 1.
GRID = np.array([-3.0, -1.5, -1.0, -0.999, -0.5, -1e-3, 0.0, 1e-3, 0.25, 0.5,
                 0.999, 1.0, 1.001, 2.0, 3.0], np.float32)


def analytic_grad(name, x, **kw):
  x = np.asarray(x, np.float64)
  if name == "ste_sign":
    return (np.abs(x) <= kw.get("clip", 1.0)).astype(np.float64)
  if name == "approx_sign":
    return (2 - 2 * np.abs(x)) * (np.abs(x) <= 1)
  if name == "swish_sign":
    b = kw.get("beta", 5.0)
    return b * (2 - b * x * np.tanh(b * x / 2)) / (1 + np.cosh(b * x))
  if name == "identity_sign":
    return np.ones_like(x)
  raise AssertionError(name)


CASES = [("ste_sign", {}), ("ste_sign", {"clip": 0.5}), ("approx_sign", {}),
         ("swish_sign", {}), ("swish_sign", {"beta": 2.0}), ("identity_sign", {})]


@pytest.mark.parametrize("name,kw", CASES)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_forward_is_sign_with_zero_to_plus_one(name, kw, dtype):
  q = quant.get_quantizer(name, **kw)
  x = jnp.asarray(GRID, dtype)
  y = jax.jit(q)(x)
  assert y.dtype == dtype
  expected = np.where(np.asarray(x, np.float32) >= 0, 1.0, -1.0)
  np.testing.assert_array_equal(np.asarray(y, np.float32), expected)
  assert float(q(jnp.zeros((), dtype))) == 1.0
  assert float(q(-jnp.zeros((), dtype))) == 1.0  # -0.0 >= 0 too


@pytest.mark.parametrize("name,kw", CASES)
def test_grad_equals_analytic_backward(name, kw):
  q = quant.get_quantizer(name, **kw)
  x = jnp.asarray(GRID)
  if name == "ste_sign":  # include ±clip exactly
    x = jnp.concatenate([x, jnp.array([kw.get("clip", 1.0), -kw.get("clip", 1.0)])])
  # A non-uniform upstream gradient checks that g is multiplied, not replaced.
  g_up = jnp.linspace(0.5, 2.0, x.shape[0])
  grad = jax.jit(jax.grad(lambda x: jnp.sum(q(x) * g_up)))(x)
  np.testing.assert_allclose(grad, g_up * analytic_grad(name, x, **kw),
                             rtol=1e-5, atol=1e-6)


def test_ste_clip_boundary_passes_gradient():
  g = jax.grad(lambda x: quant.ste_sign(x, clip=0.5).sum())(jnp.array([0.5, -0.5, 0.5001]))
  np.testing.assert_array_equal(g, [1.0, 1.0, 0.0])


@pytest.mark.parametrize("name,kw", CASES)
def test_bfloat16_grad(name, kw):
  q = quant.get_quantizer(name, **kw)
  x = jnp.asarray(GRID, jnp.bfloat16)
  grad = jax.grad(lambda x: jnp.sum(q(x).astype(jnp.float32)))(x)
  assert grad.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(grad, np.float32),
                             analytic_grad(name, np.asarray(x, np.float32), **kw),
                             rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("name", quant.sign_quantizers())
def test_vmap_and_jit_grad_agree(name):
  q = quant.get_quantizer(name)
  x = jax.random.normal(jax.random.key(0), (4, 7)) * 1.5
  per_row = jax.vmap(jax.grad(lambda r: jnp.sum(q(r) * r)))(x)
  whole = jax.jit(jax.grad(lambda x: jnp.sum(q(x) * x)))(x)
  np.testing.assert_allclose(per_row, whole, rtol=1e-6)


def test_matches_fake_quant_reference_where_ste_is_identity():
  # qwix-style reference: x + stop_gradient(sign(x) - x) has the identity gradient.
  x = jax.random.normal(jax.random.key(1), (64,))
  ref = lambda x: x + jax.lax.stop_gradient(quant.sign(x) - x)
  np.testing.assert_array_equal(quant.identity_sign(x), ref(x))
  np.testing.assert_array_equal(jax.grad(lambda x: (quant.identity_sign(x) ** 2 * x).sum())(x),
                                jax.grad(lambda x: (ref(x) ** 2 * x).sum())(x))


def test_unknown_name_lists_allowed():
  with pytest.raises(ValueError, match="ste_sign"):
    quant.get_quantizer("sgn")
