"""Larq's quantizer zoo (docs/quantizers.md): ste_heaviside, magnitude_aware_sign,
ste_tern and DoReFa — forward values and gradient masks against hand-computed
numbers, under jit, in float32 and bfloat16."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import quant


def _values_and_grad(name, x, g=None, **kw):
  """``q(x)`` and ``d/dx Σ q(x)·g`` (``g = 1`` by default), in one jitted call."""
  q = quant.get_quantizer(name, **kw)
  x = jnp.asarray(x)
  g = jnp.ones_like(x) if g is None else jnp.asarray(g, x.dtype)

  @jax.jit
  def run(x, g):
    y, vjp = jax.vjp(q, x)
    return y, vjp(g)[0]
  return run(x, g)


# Every case: (name, hyper-parameters, x, expected q(x), expected dq/dx·1).
CASES = [
    # ste_heaviside: H(x) = 1{x > 0} (H(0) = 0), gradient 1{|x| <= clip}.
    ("ste_heaviside", {}, [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5],
     [0, 0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0]),
    ("ste_heaviside", {"clip": 0.5}, [-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5],
     [0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]),
    ("ste_heaviside", {"clip": None}, [-2.0, 0.0, 3.0], [0, 0, 1], [1, 1, 1]),
    # ste_tern, Δ = 0.05: |x| >= Δ keeps its sign, |x| < Δ goes to 0.
    ("ste_tern", {}, [-1.5, -0.5, -0.05, -0.04, 0.0, 0.04, 0.05, 0.5, 1.5],
     [-1, -1, -1, 0, 0, 0, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 1, 0]),
    ("ste_tern", {"threshold": 0.3, "clip": 0.5}, [-0.6, -0.3, -0.29, 0.0, 0.29, 0.3, 0.6],
     [-1, -1, 0, 0, 0, 1, 1], [0, 1, 1, 1, 1, 1, 0]),
    ("ste_tern", {"threshold": 0.0}, [-0.5, 0.0, 0.5], [-1, 0, 1], [1, 1, 1]),
    # TWN: Δ = 0.7 · mean|x| = 0.7 · 2.4 / 5 = 0.336.
    ("ste_tern", {"ternary_weight_networks": True}, [-1.0, -0.2, 0.1, 0.3, 0.8],
     [-1, 0, 0, 0, 1], [1, 1, 1, 1, 1]),
    # DoReFa activations, k = 2 (n = 3): round(3·clip(x, 0, 1)) / 3, half to even
    # (0.5·3 = 1.5 -> 2); gradient 1{0 <= x <= 1}, both ends included.
    ("dorefa", {}, [-0.5, 0.0, 0.1, 0.2, 0.5, 0.9, 1.0, 1.5],
     [0, 0, 0, 1 / 3, 2 / 3, 1, 1, 1], [0, 1, 1, 1, 1, 1, 1, 0]),
    # k = 1 (n = 1): round(0.5) = 0 (half to even).
    ("dorefa", {"k_bit": 1}, [0.25, 0.5, 0.75], [0, 0, 1], [1, 1, 1]),
    # k = 4 (n = 15): 0.5·15 = 7.5 -> 8.
    ("dorefa", {"k_bit": 4}, [0.5, 0.2], [8 / 15, 3 / 15], [1, 1]),
    # DoReFa weights, k = 2: t = tanh(x) = [-0.96403, -0.46212, 0, 0.46212, 0.76159],
    # m = max|t| = 0.96403, u = t / (2m) + 1/2 = [0, 0.26032, 0.5, 0.73968, 0.89501],
    # round(3u) = [0, 1, 2, 2, 3] -> 2·i/3 − 1; gradient (1 − t²) / m.
    ("dorefa", {"mode": "weights"}, [-2.0, -0.5, 0.0, 0.5, 1.0],
     [-1, -1 / 3, 1 / 3, 1 / 3, 1],
     [0.0732871, 0.8157938, 1.0373148, 0.8157938, 0.4356456]),
    # k = 3 (n = 7): round(7u) = [0, 2, 4, 5, 6] (3.5 -> 4).
    ("dorefa", {"k_bit": 3, "mode": "weights"}, [-2.0, -0.5, 0.0, 0.5, 1.0],
     [-1, -3 / 7, 1 / 7, 3 / 7, 5 / 7],
     [0.0732871, 0.8157938, 1.0373148, 0.8157938, 0.4356456]),
]
IDS = [f"{n}-{kw}" for n, kw, *_ in CASES]


def _upstream(n):
  """A non-uniform upstream gradient, exact in bfloat16: the test checks that ``g``
  is multiplied by the mask, not replaced."""
  return 0.5 + 0.25 * (np.arange(n) % 7)


@pytest.mark.parametrize("name,kw,x,expected,mask", CASES, ids=IDS)
def test_forward_and_gradient_float32(name, kw, x, expected, mask):
  g = _upstream(len(x))
  y, grad = _values_and_grad(name, np.asarray(x, np.float32), g, **kw)
  assert y.dtype == jnp.float32 and grad.dtype == jnp.float32
  # Weights' 2·(i/n) − 1 is rounded twice in float32: within an ulp of 1.
  np.testing.assert_allclose(y, np.asarray(expected, np.float32), rtol=0, atol=1.2e-7)
  np.testing.assert_allclose(grad, np.asarray(mask) * g, rtol=1e-5, atol=0)


@pytest.mark.parametrize("name,kw,x,expected,mask", CASES, ids=IDS)
def test_bfloat16_keeps_dtype_and_values(name, kw, x, expected, mask):
  g = _upstream(len(x))
  xb = jnp.asarray(np.asarray(x, np.float32), jnp.bfloat16)
  y, grad = _values_and_grad(name, xb, g, **kw)
  assert y.dtype == jnp.bfloat16 and grad.dtype == jnp.bfloat16
  # Each level is the float32 level rounded once to bfloat16.
  want = np.asarray(jnp.asarray(np.asarray(expected, np.float32), jnp.bfloat16), np.float32)
  np.testing.assert_array_equal(np.asarray(y, np.float32), want)
  np.testing.assert_allclose(np.asarray(grad, np.float32), np.asarray(mask) * g, rtol=1e-2,
                             atol=1e-2)


# ------------------------------------------------------------- magnitude_aware_sign
def test_magnitude_aware_sign_per_output_channel():
  # Columns are output channels: a = mean|x| over rows = [2, 0.5, 1].
  x = np.array([[-1.0, 0.5, 0.0], [3.0, -0.5, 2.0]], np.float32)
  g = np.array([[1.0, 2.0, 0.5], [1.0, 1.0, 1.0]], np.float32)
  y, grad = _values_and_grad("magnitude_aware_sign", x, g)
  np.testing.assert_array_equal(y, [[-2.0, 0.5, 1.0], [2.0, -0.5, 1.0]])  # sign(0) = +1
  # g · a_o · 1{|x| <= 1}: the scale is a constant (no gradient through the mean).
  np.testing.assert_array_equal(grad, [[2.0, 1.0, 0.5], [0.0, 0.5, 0.0]])
  _, grad_c = _values_and_grad("magnitude_aware_sign", x, clip=0.5)
  np.testing.assert_array_equal(grad_c, [[0.0, 0.5, 1.0], [0.0, 0.5, 0.0]])


def test_magnitude_aware_sign_conv_kernel_layout():
  # (kh, kw, c_in, c_out) = (1, 1, 3, 2): a_0 = mean(1, 2, 3) = 2, a_1 = 0.5.
  w = np.zeros((1, 1, 3, 2), np.float32)
  w[0, 0, :, 0] = [1.0, -2.0, 3.0]
  w[0, 0, :, 1] = [-0.25, 0.5, 0.75]
  for dtype in (jnp.float32, jnp.bfloat16):
    y, grad = _values_and_grad("magnitude_aware_sign", jnp.asarray(w, dtype))
    assert y.dtype == dtype
    y, grad = np.asarray(y, np.float32), np.asarray(grad, np.float32)
    np.testing.assert_array_equal(y[0, 0, :, 0], [2.0, -2.0, 2.0])
    np.testing.assert_array_equal(y[0, 0, :, 1], [-0.5, 0.5, 0.5])
    np.testing.assert_array_equal(grad[0, 0, :, 0], [2.0, 0.0, 0.0])  # |w| <= 1 passes
    np.testing.assert_array_equal(grad[0, 0, :, 1], [0.5, 0.5, 0.5])


# ------------------------------------------------------------------------- ste_tern
def test_twn_threshold_is_scale_invariant_and_whole_tensor():
  w = np.random.default_rng(0).normal(size=(3, 3, 4, 8)).astype(np.float32)
  delta = 0.7 * float(np.mean(np.abs(w)))

  @jax.jit
  def run(w):
    return (quant.ste_tern(w, ternary_weight_networks=True),
            quant.ste_tern(3.0 * w, ternary_weight_networks=True),
            quant.ste_tern(w, threshold=delta))
  t, t_scaled, t_fixed = run(w)
  np.testing.assert_array_equal(t, t_scaled)
  np.testing.assert_array_equal(t, t_fixed)
  assert set(np.unique(np.asarray(t))) == {-1.0, 0.0, 1.0}


def test_tern_threshold_compared_in_input_dtype():
  # bf16(0.3) = 0.30078125: x equal to it is at the threshold and goes to +1.
  x = jnp.asarray([0.30078125, 0.298828125], jnp.bfloat16)
  np.testing.assert_array_equal(np.asarray(quant.ste_tern(x, threshold=0.3), np.float32),
                                [1.0, 0.0])


# --------------------------------------------------------------------------- dorefa
def test_dorefa_levels_count():
  x = np.linspace(-0.5, 1.5, 4001, dtype=np.float32)
  for k in (1, 3):
    levels = np.unique(_values_and_grad("dorefa", x, k_bit=k)[0])
    # Exactly the correctly rounded i/n (XLA's x·(1/n) would give 7·fl(1/7) > 1).
    np.testing.assert_array_equal(levels, (np.arange(2 ** k) / (2 ** k - 1)).astype(np.float32))
    w_levels = np.unique(_values_and_grad("dorefa", x - 0.5, k_bit=k, mode="weights")[0])
    assert len(w_levels) == 2 ** k and w_levels.min() == -1.0 and w_levels.max() == 1.0


def test_dorefa_weights_all_zero_tensor_is_not_normed():
  # divide_no_nan: u = 1/2 -> round(1.5) = 2 -> 2·2/3 − 1 = 1/3 for k = 2; no gradient.
  y, grad = _values_and_grad("dorefa", np.zeros(4, np.float32), mode="weights")
  np.testing.assert_allclose(y, np.full(4, 1 / 3, np.float32), rtol=2e-7)
  np.testing.assert_array_equal(grad, np.zeros(4))


def test_dorefa_weights_gradient_matches_autodiff_of_larq_chain():
  # Larq: 2·(round_ste(n·(tanh(x) / (2·stop_grad(max|tanh x|)) + 1/2)) / n) − 1.
  def chain(x, n=3):
    t = jnp.tanh(x)
    u = t / (2 * jax.lax.stop_gradient(jnp.max(jnp.abs(t)))) + 0.5
    r = u * n + jax.lax.stop_gradient(jnp.round(u * n) - u * n)
    return 2 * r / n - 1
  x = np.random.default_rng(1).normal(size=(5, 7)).astype(np.float32)
  g = np.random.default_rng(2).normal(size=(5, 7)).astype(np.float32)
  y, grad = _values_and_grad("dorefa", x, g, mode="weights")

  @jax.jit
  def reference(x):
    return chain(x), jax.grad(lambda x: jnp.sum(chain(x) * g))(x)
  y_ref, grad_ref = reference(x)
  np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(grad, grad_ref, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------- hyper-parameters
@pytest.mark.parametrize("name,kw,match", [
    ("dorefa", {"k_bit": 0}, "k_bit=0.*1..16"),
    ("dorefa", {"k_bit": 2.5}, "k_bit=2.5"),
    ("dorefa", {"k_bit": True}, "k_bit=True"),
    ("dorefa", {"mode": "weight"}, "mode='weight'.*activations.*weights"),
    ("ste_tern", {"threshold": -0.1}, "threshold=-0.1.*>= 0"),
    ("ste_tern", {"ternary_weight_networks": 1}, "ternary_weight_networks=1"),
    ("ste_heaviside", {"clip": 0}, "clip=0.*> 0"),
    ("magnitude_aware_sign", {"clip": -1.0}, "clip=-1.0"),
    ("swish_sign", {"beta": 0.0}, "beta=0.0"),
])
def test_bad_hyper_parameter_names_it(name, kw, match):
  with pytest.raises(ValueError, match=match):
    quant.get_quantizer(name, **kw)
  with pytest.raises(ValueError, match=match):  # the functions check too
    getattr(quant, name)(jnp.ones(3), **kw)
