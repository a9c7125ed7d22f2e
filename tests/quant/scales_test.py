"""Scaling factors: XNOR per filter, cross-filter (docs/cross_filter.md) and XNOR's K map."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from bnnjax import quant


def _kernel(shape, seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


@pytest.mark.parametrize("shape", [(3, 3, 5, 8), (12, 6), (5, 5, 1, 4)])
def test_xnor_weight_scale_is_mean_abs_per_filter(shape):
  w = np.asarray(_kernel(shape))
  expected = np.array([np.abs(w[..., o]).mean() for o in range(shape[-1])])
  got = quant.xnor_weight_scale(w)
  assert got.shape == (shape[-1],)
  np.testing.assert_allclose(got, expected, rtol=1e-6)


@pytest.mark.parametrize("n", [1, 2, 4, 8])
def test_cross_filter_scale_is_least_squares_optimum(n):
  w = np.asarray(_kernel((3, 3, 4, 8), seed=n), np.float64)
  got = np.asarray(quant.cross_filter_scale(w, n))
  b = np.where(w >= 0, 1.0, -1.0)
  for g in range(8 // n):
    sl = slice(g * n, (g + 1) * n)
    np.testing.assert_allclose(got[sl], got[g * n])  # shared within the group
    obj = lambda a: np.sum((w[..., sl] - a * b[..., sl]) ** 2)
    best = optimize.minimize_scalar(obj, bounds=(0, 5), method="bounded",
                                    options={"xatol": 1e-10}).x
    np.testing.assert_allclose(got[g * n], best, rtol=1e-5)
    # And it is a minimum: nudging it either way costs more.
    assert obj(got[g * n]) <= min(obj(got[g * n] * 1.001), obj(got[g * n] * 0.999))


@pytest.mark.parametrize("shape,n", [((3, 3, 4, 8), 2), ((3, 3, 4, 8), 8), ((10, 12), 3)])
def test_cross_filter_equals_from_filterwise(shape, n):
  w = _kernel(shape, seed=3)
  np.testing.assert_allclose(
      quant.cross_filter_scale(w, n),
      quant.cross_filter_from_filterwise(quant.xnor_weight_scale(w), n), rtol=1e-6)


def test_cross_filter_one_is_xnor():
  w = _kernel((3, 3, 4, 6))
  np.testing.assert_array_equal(quant.cross_filter_scale(w, 1), quant.xnor_weight_scale(w))


def test_cross_filter_bad_group_size_names_both_numbers():
  with pytest.raises(ValueError, match=r"group_size=3.*c_out=8"):
    quant.cross_filter_scale(jnp.ones((3, 3, 2, 8)), 3)
  with pytest.raises(ValueError, match=r"group_size=3.*c_out=8"):
    quant.cross_filter_from_filterwise(jnp.ones(8), 3)
  with pytest.raises(ValueError, match="positive integer"):
    quant.cross_filter_scale(jnp.ones((2, 8)), 0)


def _k_by_loop(x, ksize, strides, padding):
  """XNOR-Net's K by an explicit loop over output positions."""
  x = np.asarray(x, np.float64)
  n, h, w, _ = x.shape
  kh, kw = ksize
  sh, sw = strides
  a = np.abs(x).mean(-1)
  if padding == "SAME":
    ho, wo = -(-h // sh), -(-w // sw)
    ph = max((ho - 1) * sh + kh - h, 0)
    pw = max((wo - 1) * sw + kw - w, 0)
    top, left = ph // 2, pw // 2
  else:
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    top = left = 0
  out = np.zeros((n, ho, wo, 1))
  for b, i, j in itertools.product(range(n), range(ho), range(wo)):
    total = 0.0
    for di, dj in itertools.product(range(kh), range(kw)):
      r, c = i * sh + di - top, j * sw + dj - left
      if 0 <= r < h and 0 <= c < w:
        total += a[b, r, c]
    out[b, i, j, 0] = total / (kh * kw)
  return out


@pytest.mark.parametrize("strides", [(1, 1), (2, 2)])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("ksize,hw", [((3, 3), (7, 8)), ((1, 1), (5, 5)), ((5, 3), (9, 6))])
def test_activation_scale_matches_loop(strides, padding, ksize, hw):
  x = jax.random.normal(jax.random.key(7), (2, *hw, 3))
  got = jax.jit(quant.activation_scale, static_argnums=(1, 2, 3))(x, ksize, strides, padding)
  expected = _k_by_loop(x, ksize, strides, padding)
  assert got.shape == expected.shape
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_activation_scale_differentiable():
  x = jax.random.normal(jax.random.key(2), (1, 4, 4, 2))
  g = jax.jit(jax.grad(lambda x: quant.activation_scale(x, (3, 3)).sum()))(x)
  assert g.shape == x.shape and bool(jnp.all(jnp.isfinite(g)))
