"""The three PTQ schemes (docs/ptq.md#quantization-schemes) against hand-computed
values, under jit."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnjax import ptq

BITS = (2, 3, 8)


@functools.lru_cache(maxsize=None)
def _jitted(scheme, bits, axis):
  return jax.jit(functools.partial(ptq.quantize, scheme=scheme, bits=bits, axis=axis))


def q_jit(x, scheme, bits, axis=None):
  return _jitted(scheme, bits, axis)(x)


# ---------------------------------------------------------------- per tensor, by hand
X_ASYM = np.array([-1.0, -0.31, 0.4, 2.0], np.float32)
# min -1, max 2. 2b: Δ = 1, z = 1. 3b: Δ = 3/7, z = round(7/3) = 2.
# 8b: Δ = 3/255, z = 85; -0.31/Δ = -26.35 -> -26, 0.4/Δ = 34.
ASYM = {
    2: ([0, 1, 1, 3], [-1.0, 0.0, 0.0, 2.0]),
    3: ([0, 1, 3, 7], np.array([-2, -1, 1, 5]) * 3 / 7),
    8: ([0, 59, 119, 255], np.array([-85, -26, 34, 170]) * 3 / 255),
}
X_SYM = np.array([-1.2, -0.31, 0.4, 2.0], np.float32)
# max|x| = 2. 2b: x·1/2 = -.6, -.155, .2, 1. 3b: x·3/2 = -1.8, -.465, .6, 3.
# 8b: x·127/2 = -76.2, -19.685, 25.4, 127.
SYM = {
    2: ([-1, 0, 0, 1], [-2.0, 0.0, 0.0, 2.0]),
    3: ([-2, 0, 1, 3], np.array([-2, 0, 1, 3]) * 2 / 3),
    8: ([-76, -20, 25, 127], np.array([-76, -20, 25, 127]) * 2 / 127),
}
X_POW2 = np.array([-1.2, -0.31, 0.4, 2.0, 0.05], np.float32)
# e_max = round(log2 2) = 1. 2b: e_min = 1, |x| < 1 -> 0, 1.2 -> 2^0 clipped to 2^1.
# 3b: e_min = -1, |x| < 1/4 -> 0; log2: 1.2 -> 0, .31 -> -1.69 -> -2 -> clip -1,
# .4 -> -1.32 -> -1. 8b: e_min = -125; .31 -> 2^-2, .05 -> -4.32 -> 2^-4.
# code = sign·(e - e_min + 1).
POW2 = {
    2: ([-1, 0, 0, 1, 0], [-2.0, 0.0, 0.0, 2.0, 0.0]),
    3: ([-2, -1, 1, 3, 0], [-1.0, -0.5, 0.5, 2.0, 0.0]),
    8: ([-126, -124, 125, 127, 122], [-1.0, -0.25, 0.5, 2.0, 0.0625]),
}
PER_TENSOR = {"asymmetric": (X_ASYM, ASYM), "symmetric": (X_SYM, SYM),
              "power_of_two": (X_POW2, POW2)}


@pytest.mark.parametrize("scheme,bits", itertools.product(ptq.SCHEMES, BITS))
def test_per_tensor_by_hand(scheme, bits):
  x, table = PER_TENSOR[scheme]
  codes, values = table[bits]
  q = q_jit(x, scheme, bits)
  np.testing.assert_array_equal(q.codes, codes)
  np.testing.assert_allclose(q.values, values, rtol=1e-6, atol=1e-7)
  assert q.scale.shape == (1,) and q.values.dtype == jnp.float32
  assert q.codes.dtype == jnp.int32


def test_per_tensor_scale_parameters():
  q = q_jit(X_ASYM, "asymmetric", 3)
  np.testing.assert_allclose(q.scale, [3 / 7], rtol=1e-6)
  np.testing.assert_array_equal(q.zero_point, [2])
  q = q_jit(X_SYM, "symmetric", 3)
  np.testing.assert_allclose(q.scale, [2 / 3], rtol=1e-6)
  np.testing.assert_array_equal(q.zero_point, [0])
  q = q_jit(X_POW2, "power_of_two", 3)
  np.testing.assert_array_equal(q.scale, [2.0])  # 2^e_max


# --------------------------------------------------------------- per channel, by hand
# Columns are channels (axis=-1), as the filters of a Flax dense kernel.
XC_ASYM = np.array([[-1.0, 0.6], [0.4, 1.0], [2.0, 3.6]], np.float32)
# col 0 as X_ASYM. col 1: min .6, max 3.6, range 3. 2b: Δ = 1, z = round(-.6) = -1,
# codes round(x) - 1 = 0, 0, 3, x̂ = q + 1 (z rounds, so the grid shifts up).
# 3b: Δ = 3/7, z = round(-1.4) = -1; x/Δ = 1.4, 2.33, 8.4 -> codes 0, 1, 7.
# 8b: Δ = 3/255, z = -51; x/Δ = 51, 85, 306 -> codes 0, 34, 255: exact.
ASYM_C = {
    2: ([[0, 0], [1, 0], [3, 3]], [[-1.0, 1.0], [0.0, 1.0], [2.0, 4.0]]),
    3: ([[0, 0], [3, 1], [7, 7]],
        np.array([[-2, 1], [1, 2], [5, 8]]) * 3 / 7),
    8: ([[0, 0], [119, 34], [255, 255]], [[-1.0, 0.6], [0.4, 1.0], [2.0, 3.6]]),
}
XC_SYM = np.array([[-1.2, 0.3], [0.4, -0.9], [2.0, 0.5]], np.float32)
# col 0: max 2; col 1: max .9. 2b col 1: x/.9 = .33, -1, .56. 3b col 1: x·3/.9 = 1, -3,
# 1.67. 8b: col 0 x·63.5 = -76.2, 25.4, 127; col 1 x·127/.9 = 42.3, -127, 70.6.
SYM_C = {
    2: ([[-1, 0], [0, -1], [1, 1]], [[-2.0, 0.0], [0.0, -0.9], [2.0, 0.9]]),
    3: ([[-2, 1], [1, -3], [3, 2]], [[-4 / 3, 0.3], [2 / 3, -0.9], [2.0, 0.6]]),
    8: ([[-76, 42], [25, -127], [127, 71]],
        np.array([[-76, 42], [25, -127], [127, 71]]) * np.array([2 / 127, 0.9 / 127])),
}
XC_POW2 = np.array([[-1.2, 0.3], [0.4, -0.05], [2.0, 0.1]], np.float32)
# col 0: e_max = 1; col 1: e_max = round(log2 .3 = -1.74) = -2.
# 2b col 1: e_min = -2, |x| < 2^-3 -> 0. 3b col 1: e_min = -4, |x| < 2^-5 -> 0;
# .05 -> -4.32 -> 2^-4, .1 -> -3.32 -> 2^-3. 8b: as 3b (nothing is clipped).
POW2_C = {
    2: ([[-1, 1], [0, 0], [1, 0]], [[-2.0, 0.25], [0.0, 0.0], [2.0, 0.0]]),
    3: ([[-2, 3], [1, -1], [3, 2]], [[-1.0, 0.25], [0.5, -0.0625], [2.0, 0.125]]),
    8: ([[-126, 127], [125, -125], [127, 126]],
        [[-1.0, 0.25], [0.5, -0.0625], [2.0, 0.125]]),
}
PER_CHANNEL = {"asymmetric": (XC_ASYM, ASYM_C), "symmetric": (XC_SYM, SYM_C),
               "power_of_two": (XC_POW2, POW2_C)}


@pytest.mark.parametrize("scheme,bits", itertools.product(ptq.SCHEMES, BITS))
def test_per_channel_by_hand(scheme, bits):
  x, table = PER_CHANNEL[scheme]
  codes, values = table[bits]
  q = q_jit(x, scheme, bits, axis=-1)
  np.testing.assert_array_equal(q.codes, codes)
  np.testing.assert_allclose(q.values, values, rtol=1e-6, atol=1e-7)
  assert q.scale.shape == (1, 2) and q.axis == 1 and q.num_scales == 2


@pytest.mark.parametrize("scheme", ptq.SCHEMES)
def test_per_channel_equals_each_channel_per_tensor(scheme):
  k = jax.random.normal(jax.random.key(0), (3, 3, 4, 5)) * jnp.arange(1.0, 6.0)
  q = q_jit(k, scheme, 4, axis=-1)
  assert q.scale.shape == (1, 1, 1, 5)
  for c in range(5):
    qc = ptq.quantize(k[..., c], scheme=scheme, bits=4)
    np.testing.assert_array_equal(q.codes[..., c], qc.codes)
    np.testing.assert_allclose(q.values[..., c], qc.values, rtol=1e-6)
  q0 = q_jit(k, scheme, 4, axis=0)  # any kept axis
  assert q0.scale.shape == (3, 1, 1, 1)


# ---------------------------------------------------------------------- properties
# Eager calls from here on: the ops are cached per shape, so sweeping every bit-width
# costs no compilation (the jitted path is checked above).
def _random(key, shape=(3, 3, 8, 6)):
  k1, k2 = jax.random.split(jax.random.key(key))
  # channels of different scales and a heavy tail, like trained kernels
  return (jax.random.t(k1, 3.0, shape) * jnp.exp(jax.random.normal(k2, shape[-1:])))


@pytest.mark.parametrize("scheme,axis", itertools.product(ptq.SCHEMES, (None, -1)))
def test_codes_in_range_and_values_decode(scheme, axis):
  for bits in range(2, 9):
    q = ptq.quantize(_random(bits), scheme=scheme, bits=bits, axis=axis)
    lo, hi = ptq.code_range(scheme, bits)
    assert int(q.codes.min()) >= lo and int(q.codes.max()) <= hi, bits
    assert hi - lo + 1 <= 2**bits
    np.testing.assert_array_equal(
        q.values, ptq.dequantize(q.codes, q.scale, q.zero_point, scheme=scheme,
                                 bits=bits))
    assert bool(jnp.all(jnp.isfinite(q.values)))


@pytest.mark.parametrize("scheme,axis", itertools.product(ptq.SCHEMES, (None, -1)))
def test_quantizing_twice_changes_nothing(scheme, axis):
  for bits in range(2, 9):
    q1 = ptq.quantize(_random(10 + bits), scheme=scheme, bits=bits, axis=axis)
    q2 = ptq.quantize(q1.values, scheme=scheme, bits=bits, axis=axis)
    np.testing.assert_array_equal(q2.codes, q1.codes, err_msg=f"bits={bits}")
    np.testing.assert_allclose(q2.values, q1.values, rtol=1e-6, atol=0)


@pytest.mark.parametrize("axis", (None, -1))
def test_power_of_two_outputs_are_powers_of_two_or_zero(axis):
  for bits in range(2, 9):
    v = np.asarray(ptq.quantize(_random(20 + bits), scheme="power_of_two", bits=bits,
                                axis=axis).values)
    mantissa, _ = np.frexp(v[v != 0])
    np.testing.assert_array_equal(np.abs(mantissa), 0.5)
    # at most 2^(n-1) - 1 magnitudes per channel, spanning e_min..e_max
    mags = np.abs(v.reshape(-1, v.shape[-1]) if axis == -1 else v.reshape(-1, 1))
    for c in range(mags.shape[1]):
      m = np.unique(mags[:, c][mags[:, c] > 0])
      assert m.size <= 2**(bits - 1) - 1
      assert np.log2(m.max() / m.min()) <= 2**(bits - 1) - 2


@pytest.mark.parametrize("scheme", ptq.SCHEMES)
def test_per_channel_equals_each_channel_per_tensor(scheme):
  # jitted: two new shapes compile faster as two programs than op by op
  k = jax.random.normal(jax.random.key(0), (3, 3, 4, 5)) * jnp.arange(1.0, 6.0)
  q = q_jit(k, scheme, 4, axis=-1)
  assert q.scale.shape == (1, 1, 1, 5)
  for c in range(5):
    qc = q_jit(k[..., c], scheme, 4)
    np.testing.assert_array_equal(q.codes[..., c], qc.codes)
    np.testing.assert_allclose(q.values[..., c], qc.values, rtol=1e-6)
  assert q_jit(k, scheme, 4, axis=0).scale.shape == (3, 1, 1, 1)


DEGENERATE = {
    "zeros": jnp.zeros((4, 3)),
    "constant": jnp.full((4, 3), 0.7),
    "negative constant": jnp.full((4, 3), -2.5),
    "single": jnp.array([0.7]),
    "scalar": jnp.float32(-0.3),
    "zero channel": jnp.zeros((4, 3)).at[:, 1:].set(jnp.array([1.0, -2.0])),
}  # few shapes: each new shape costs op compilations


@pytest.mark.parametrize("scheme", ptq.SCHEMES)
def test_degenerate_tensors_give_finite_results(scheme):
  for bits, (name, x) in itertools.product(BITS, DEGENERATE.items()):
    for axis in ((None, -1) if x.ndim else (None,)):
      q = ptq.quantize(x, scheme=scheme, bits=bits, axis=axis)
      where = (name, bits, axis)
      assert q.values.shape == x.shape, where
      assert bool(jnp.all(jnp.isfinite(q.values))), where
      assert bool(jnp.all(jnp.isfinite(q.scale))), where
      if name == "zeros":
        np.testing.assert_array_equal(q.values, 0.0)
        np.testing.assert_array_equal(q.codes, 0)
      if name == "zero channel" and axis == -1:
        np.testing.assert_array_equal(q.values[:, 0], 0.0)
      if name not in ("zeros", "zero channel"):
        # one value only: exact, or for power of two the nearest power (in log2)
        want = x if scheme != "power_of_two" else jnp.sign(x) * 2.0**jnp.round(
            jnp.log2(jnp.abs(x)))
        np.testing.assert_allclose(q.values, want, rtol=1e-6, err_msg=str(where))


def test_errors_name_the_argument():
  x = jnp.ones((3,))
  with pytest.raises(ValueError, match=r"scheme='log'.*asymmetric"):
    ptq.quantize(x, scheme="log", bits=4)
  for bits in (1, 9, 4.0, True, None):
    with pytest.raises(ValueError, match=r"bits=.*2 to 8"):
      ptq.quantize(x, scheme="symmetric", bits=bits)
  with pytest.raises(ValueError, match=r"axis=1"):
    ptq.quantize(x, scheme="symmetric", bits=4, axis=1)
  with pytest.raises(ValueError, match="bits"):
    ptq.code_range("asymmetric", 12)


def test_integer_input_is_quantized_as_float():
  q = ptq.quantize(jnp.array([-2, 0, 4]), scheme="symmetric", bits=3)
  assert q.values.dtype == jnp.float32
  np.testing.assert_allclose(q.values, [-8 / 3, 0.0, 4.0], rtol=1e-6)  # -1.5 -> -2


@pytest.mark.parametrize("scheme,axis", itertools.product(ptq.SCHEMES, (None, -1)))
def test_numpy_path_equals_jax_path(scheme, axis):
  # quantize_params quantizes on the host with numpy: the same codes, and values equal
  # up to float32 rounding (XLA may divide by a reciprocal).
  from bnnjax.ptq.quantizers import quantize_arrays
  for bits in range(2, 9):
    x = np.asarray(_random(30 + bits))
    q = ptq.quantize(x, scheme=scheme, bits=bits, axis=axis)
    reduce = tuple(range(3)) if axis == -1 else tuple(range(4))
    got = quantize_arrays(x, bits, scheme=scheme, axes=reduce, xp=np)
    for a, b in zip(got, (q.values, q.codes, q.scale, q.zero_point)):
      assert a.dtype == b.dtype
      if a.dtype == np.int32:
        np.testing.assert_array_equal(a, b, err_msg=f"bits={bits}")
      else:
        np.testing.assert_allclose(a, b, rtol=3e-7, atol=0, err_msg=f"bits={bits}")
